//! Compressed data written as base64: runs of base64 (line breaks allowed, as
//! in MIME) that decode to a gzip, zlib or raw deflate stream are inflated,
//! within fixed bounds, so that the caller can look for values inside.

use std::io::Read;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};

/// Shortest run tried: the smallest gzip stream is 20 bytes (28 characters);
/// a raw deflate stream of an 8-character value is ~10 bytes.
const MIN_RUN_CHARS: usize = 16;
/// At most this many bytes are inflated from one run (a bomb stops here).
const MAX_INFLATED_PER_RUN: u64 = 1 << 20;
/// At most this many bytes are inflated from one piece of output.
pub(crate) const BUDGET_PER_CALL: u64 = 8 << 20;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// A base64 run in the input that inflated to `data`.
pub(crate) struct Blob {
    pub start: usize,
    pub end: usize,
    pub data: Vec<u8>,
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Every run of base64 characters in `input` (a line break between two
/// characters continues a run) that decodes to compressed data, inflated;
/// `budget` bounds the bytes inflated in all.
pub(crate) fn inflated(input: &[u8], budget: &mut u64) -> Vec<Blob> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() && *budget > 0 {
        if !is_b64(input[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let mut chars = Vec::new();
        // MIME wraps at a fixed width: the first line sets it, and a line
        // break continues the run only after a line of exactly that width.
        let mut width: Option<usize> = None;
        let mut line = 0;
        while i < input.len() {
            let b = input[i];
            if is_b64(b) {
                chars.push(b);
                line += 1;
                i += 1;
                continue;
            }
            let brk = match (b, input.get(i + 1)) {
                (b'\r', Some(b'\n')) => 2,
                (b'\n', _) => 1,
                _ => break,
            };
            let wraps = match width {
                None => line >= MIN_RUN_CHARS,
                Some(w) => line == w,
            };
            if !wraps || !input.get(i + brk).copied().is_some_and(is_b64) {
                break;
            }
            width = Some(line);
            line = 0;
            i += brk;
        }
        let mut end = i;
        while end < input.len() && input[end] == b'=' && end - i < 2 {
            end += 1;
        }
        i = end;
        if chars.len() < MIN_RUN_CHARS {
            continue;
        }
        let engine = if chars.iter().any(|&c| c == b'-' || c == b'_') {
            &URL
        } else {
            &STD
        };
        let Ok(raw) = engine.decode(&chars) else {
            continue;
        };
        if let Some(data) = inflate(&raw, budget) {
            out.push(Blob { start, end, data });
        }
    }
    out
}

/// gzip, zlib or raw deflate, by the stream's header; `None` when `raw` is
/// none of them or yields nothing.
fn inflate(raw: &[u8], budget: &mut u64) -> Option<Vec<u8>> {
    let limit = MAX_INFLATED_PER_RUN.min(*budget);
    let mut data = Vec::new();
    let res = if raw.starts_with(&[0x1f, 0x8b, 0x08]) {
        GzDecoder::new(raw).take(limit).read_to_end(&mut data)
    } else if raw.len() >= 2
        && raw[0] & 0x0f == 8
        && raw[0] >> 4 <= 7
        && (u16::from(raw[0]) << 8 | u16::from(raw[1])) % 31 == 0
    {
        ZlibDecoder::new(raw).take(limit).read_to_end(&mut data)
    } else {
        DeflateDecoder::new(raw).take(limit).read_to_end(&mut data)
    };
    *budget = budget.saturating_sub(data.len() as u64);
    // A truncated or corrupt stream may still have yielded the value: keep
    // whatever came out.
    let _ = res;
    (!data.is_empty()).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn finds_gzip_zlib_and_deflate_runs() {
        let secret = b"the-secret-value-123";
        let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
        z.write_all(secret).unwrap();
        let mut d = DeflateEncoder::new(Vec::new(), Compression::fast());
        d.write_all(secret).unwrap();
        for blob in [gz(secret), z.finish().unwrap(), d.finish().unwrap()] {
            let text = format!("data: {} end", STANDARD.encode(&blob));
            let mut budget = BUDGET_PER_CALL;
            let found = inflated(text.as_bytes(), &mut budget);
            assert!(found.iter().any(|b| b.data == secret), "{text}");
            let b = found.iter().find(|b| b.data == secret).unwrap();
            assert_eq!(&text[b.start..b.end], STANDARD.encode(&blob));
        }
    }

    #[test]
    fn mime_wrapped_runs_join() {
        let big: Vec<u8> = (0..300u32).flat_map(|i| i.to_le_bytes()).collect();
        let enc = STANDARD.encode(gz(&big));
        let wrapped: Vec<String> = enc
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let text = format!("x\n{}\ny", wrapped.join("\r\n"));
        let mut budget = BUDGET_PER_CALL;
        let found = inflated(text.as_bytes(), &mut budget);
        assert!(found.iter().any(|b| b.data == big));
    }

    #[test]
    fn bombs_are_bounded() {
        let bomb = gz(&vec![b'a'; 8 << 20]);
        let text = STANDARD.encode(bomb);
        let mut budget = BUDGET_PER_CALL;
        let found = inflated(text.as_bytes(), &mut budget);
        assert_eq!(found[0].data.len() as u64, MAX_INFLATED_PER_RUN);
        let mut small = 10;
        let found = inflated(text.as_bytes(), &mut small);
        assert_eq!(found[0].data.len(), 10);
        assert_eq!(small, 0);
    }
}
