//! E-mail addresses: a local part, `@`, and a domain of at least two labels whose last is
//! alphabetic, so that `user at example dot com` and `pkg@1.2.3` are not addresses.
//!
//! Owns the pattern only; whether and where a match is flagged is the scan's.

/// An e-mail address around the `@` at `at`, its local part starting no earlier than
/// `line_start`; returns where the address starts and where it ends.
pub(super) fn match_email(bytes: &[u8], at: usize, line_start: usize) -> Option<(usize, usize)> {
    // Local parts are at most 64 characters (RFC 5321).
    let mut local_start = at;
    while local_start > line_start
        && at - local_start < 64
        && is_email_local_byte(bytes[local_start - 1])
    {
        local_start -= 1;
    }
    while local_start < at && bytes[local_start] == b'.' {
        local_start += 1;
    }
    if local_start == at || bytes[at - 1] == b'.' {
        return None;
    }
    let mut cursor = at + 1;
    let mut n_labels = 0;
    let mut last_label = (cursor, cursor);
    loop {
        let label_start = cursor;
        while cursor < bytes.len()
            && (bytes[cursor].is_ascii_alphanumeric() || bytes[cursor] == b'-')
        {
            cursor += 1;
        }
        if cursor == label_start {
            break;
        }
        n_labels += 1;
        last_label = (label_start, cursor);
        if cursor + 1 < bytes.len()
            && bytes[cursor] == b'.'
            && bytes[cursor + 1].is_ascii_alphanumeric()
        {
            cursor += 1;
            continue;
        }
        break;
    }
    let top_level_label = &bytes[last_label.0..last_label.1];
    if n_labels >= 2
        && top_level_label.len() >= 2
        && top_level_label.iter().all(u8::is_ascii_alphabetic)
    {
        return Some((local_start, last_label.1));
    }
    None
}

fn is_email_local_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}
