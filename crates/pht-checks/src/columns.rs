//! Character columns of flagged positions, counted incrementally.
//!
//! Owns turning a byte offset into a 1-based character column. It does not track lines (the
//! readers do, and hand over the line's start). Counting from the line start for every position
//! would make a hostile file with one enormous line and many findings quadratic; positions come in
//! increasing order, so each one continues from the last.

/// Remembers the last position it counted so the next one on the same line continues from there.
#[derive(Debug, Default)]
pub(crate) struct ColumnCounter {
    line_start: usize,
    offset: usize,
    /// Characters in `line_start..offset`.
    n_chars: u64,
}

impl ColumnCounter {
    /// The 1-based character column of `offset` in the line starting at `line_start` (UTF-8
    /// continuation bytes do not count).
    pub(crate) fn column_at(&mut self, bytes: &[u8], line_start: usize, offset: usize) -> u64 {
        if line_start != self.line_start || offset < self.offset {
            self.line_start = line_start;
            self.offset = line_start;
            self.n_chars = 0;
        }
        self.n_chars += count_chars(&bytes[self.offset..offset]);
        self.offset = offset;
        self.n_chars + 1
    }
}

fn count_chars(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&byte| byte & 0xC0 != 0x80).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_and_continue_or_restart() {
        let text = "é ü x\nab c".as_bytes();
        let mut column_counter = ColumnCounter::default();
        assert_eq!(column_counter.column_at(text, 0, 5), 4);
        assert_eq!(column_counter.column_at(text, 0, 6), 5);
        // Going back on the same line recounts.
        assert_eq!(column_counter.column_at(text, 0, 2), 2);
        // A new line starts over.
        assert_eq!(column_counter.column_at(text, 8, 11), 4);
    }
}
