//! Bodies Outlook kept only as compressed RTF (`PidTagRtfCompressed`): decompressed, then turned
//! into the HTML it encapsulates or its text by `coffer_extract::rtf`.

/// The decompressed text may be at most this large, and at most this many times the compressed
/// size (LZFu expands by well under that): a header claiming more is refused, not allocated.
const MAX_RTF: u32 = 64 << 20;
const MAX_EXPANSION: u32 = 32;

use coffer_extract::rtf::{RtfBody, convert};

/// The body a compressed RTF property holds; None when it is not readable.
pub fn body(compressed: &[u8]) -> Option<RtfBody> {
    let header = compressed.get(..16)?;
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap_or_default());
    let (size, raw, kind) = (word(0), word(4), word(8));
    let stored = (compressed.len() - 16) as u32;
    let sane = raw <= MAX_RTF
        && size as usize + 4 == compressed.len()
        && match kind {
            0x75465A4C => raw <= stored.saturating_mul(MAX_EXPANSION).max(4096),
            0x414C454D => raw <= stored,
            _ => false,
        };
    if !sane {
        return None;
    }
    let rtf = compressed_rtf::decompress_rtf(compressed).ok()?;
    Some(convert(&rtf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_claiming_more_than_the_data_can_hold_is_refused_not_allocated() {
        let mut data = vec![0u8; 32];
        data[0..4].copy_from_slice(&28u32.to_le_bytes());
        data[4..8].copy_from_slice(&(1u32 << 30).to_le_bytes());
        data[8..12].copy_from_slice(&0x75465A4Cu32.to_le_bytes());
        assert_eq!(body(&data), None);
        assert_eq!(body(&data[..8]), None);
        data[8..12].copy_from_slice(&0x414C454Du32.to_le_bytes());
        data[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(body(&data), None, "uncompressed, but longer than what follows");
    }
}
