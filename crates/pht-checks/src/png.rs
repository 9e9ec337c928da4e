//! PNG figures: the signature, a walk over the chunk structure, and the places where data can
//! hide besides the pixels (text chunks, bytes after the image end).
//!
//! Owns reading PNG chunk headers. It does not decode images (pixels need a human eye, which is
//! why every figure goes to review) and does not verify chunk CRCs (a corrupt CRC hides nothing
//! a reviewer would not see).

/// The eight bytes every PNG starts with.
pub(crate) const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// What the chunk walk found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PngFacts {
    pub(crate) n_chunks: u64,
    /// `tEXt`, `zTXt` and `iTXt` chunks: metadata a reviewer cannot see in an image viewer.
    pub(crate) n_text_chunks: u64,
    /// Bytes after the `IEND` chunk.
    pub(crate) n_trailing_bytes: u64,
    /// Why the structure is broken, if it is.
    pub(crate) structure_problem: Option<&'static str>,
}

/// Walks the chunks of a PNG whose signature has been checked.
pub(crate) fn inspect_png(bytes: &[u8]) -> PngFacts {
    let mut png_facts = PngFacts::default();
    let mut offset = PNG_SIGNATURE.len();
    loop {
        let Some(header) = bytes.get(offset..offset + 8) else {
            png_facts.structure_problem = Some("the image ends without an IEND chunk");
            return png_facts;
        };
        let data_length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let chunk_type = &header[4..8];
        if !chunk_type.iter().all(u8::is_ascii_alphabetic) {
            png_facts.structure_problem = Some("a chunk has an invalid type");
            return png_facts;
        }
        if png_facts.n_chunks == 0 && chunk_type != b"IHDR" {
            png_facts.structure_problem = Some("the first chunk is not IHDR");
            return png_facts;
        }
        let chunk_end = offset + 8 + data_length + 4;
        if chunk_end > bytes.len() {
            png_facts.structure_problem = Some("a chunk runs past the end of the file");
            return png_facts;
        }
        png_facts.n_chunks += 1;
        if matches!(chunk_type, b"tEXt" | b"zTXt" | b"iTXt") {
            png_facts.n_text_chunks += 1;
        }
        offset = chunk_end;
        if chunk_type == b"IEND" {
            png_facts.n_trailing_bytes = (bytes.len() - offset) as u64;
            return png_facts;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A structurally valid PNG (IHDR, one tEXt per entry of `texts`, IDAT, IEND); CRCs are
    /// zero because nothing here checks them.
    pub(crate) fn tiny_png(texts: &[&str]) -> Vec<u8> {
        fn chunk(png: &mut Vec<u8>, chunk_type: &[u8; 4], data: &[u8]) {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(chunk_type);
            png.extend_from_slice(data);
            png.extend_from_slice(&[0, 0, 0, 0]);
        }
        let mut png = PNG_SIGNATURE.to_vec();
        chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
        for text in texts {
            chunk(&mut png, b"tEXt", text.as_bytes());
        }
        chunk(
            &mut png,
            b"IDAT",
            &[0x78, 0x9c, 0x63, 0x60, 0, 0, 0, 2, 0, 1],
        );
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn a_well_formed_png_has_no_problem() {
        let png_facts = inspect_png(&tiny_png(&["Software\0matplotlib"]));
        assert_eq!(
            png_facts,
            PngFacts {
                n_chunks: 4,
                n_text_chunks: 1,
                n_trailing_bytes: 0,
                structure_problem: None
            }
        );
    }

    #[test]
    fn bytes_after_iend_are_counted() {
        let mut png = tiny_png(&[]);
        png.extend_from_slice(b"id,bsn\n1,111222333\n");
        assert_eq!(inspect_png(&png).n_trailing_bytes, 19);
    }

    #[test]
    fn png_without_iend_is_a_structure_problem() {
        let png = tiny_png(&[]);
        assert_eq!(
            inspect_png(&png[..png.len() - 12]).structure_problem,
            Some("the image ends without an IEND chunk")
        );
    }

    #[test]
    fn truncated_png_is_a_structure_problem() {
        let png = tiny_png(&[]);
        // Drops IEND (12 bytes) and the last two bytes of IDAT's CRC.
        let truncated = &png[..png.len() - 14];
        assert_eq!(
            inspect_png(truncated).structure_problem,
            Some("a chunk runs past the end of the file")
        );
    }
}
