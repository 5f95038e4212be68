//! Compressed data written as base64: runs of base64 (line breaks allowed, as
//! in MIME) that decode to a gzip or zlib stream are inflated,
//! within fixed bounds, so that the caller can look for values inside.

use std::io::Read;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use flate2::read::{GzDecoder, ZlibDecoder};

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

/// Characters of both base64 alphabets.
const B64: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
        b += 1;
    }
    t
};

#[inline(always)]
fn is_b64(b: u8) -> bool {
    B64[b as usize]
}

/// Every run of base64 characters in `input` (MIME line breaks allowed)
/// that starts like base64 of a gzip (`H4sI`) or zlib (`eJ`, `eN`, `eA`, `eF`:
/// the four compression levels' headers) stream, inflated; `budget` bounds
/// the bytes inflated in all. A raw deflate stream has no header to spot and
/// is not tried.
pub(crate) fn inflated(input: &[u8], budget: &mut u64) -> Vec<Blob> {
    let mut out = Vec::new();
    let mut chars = Vec::new();
    let mut from = 0;
    let mut starts: Vec<usize> = [&b"H4sI"[..], b"eJ", b"eN", b"eA", b"eF"]
        .iter()
        .flat_map(|needle| memchr::memmem::find_iter(input, needle))
        .collect();
    starts.sort_unstable();
    for start in starts {
        if *budget == 0 {
            break;
        }
        if start < from || (start > 0 && is_b64(input[start - 1])) {
            continue; // inside a run already seen, or not where one starts
        }
        let (end, total, breaks) = run_extent(input, start);
        from = end;
        if total < MIN_RUN_CHARS {
            continue;
        }
        chars.clear();
        if breaks {
            chars.extend(input[start..end].iter().filter(|&&b| is_b64(b)));
        } else {
            chars.extend_from_slice(&input[start..start + total]);
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

/// The end of the base64 run that starts at `start` (padding included), the
/// number of base64 characters in it, and whether it has line breaks.
fn run_extent(input: &[u8], start: usize) -> (usize, usize, bool) {
    // MIME wraps at a fixed width: the first line sets it, and a line break
    // continues the run only after a line of exactly that width.
    let mut width: Option<usize> = None;
    let (mut i, mut line, mut total, mut breaks) = (start, 0, 0, false);
    while i < input.len() {
        let run = input[i..].iter().take_while(|&&b| is_b64(b)).count();
        line += run;
        total += run;
        i += run;
        let brk = match (input.get(i), input.get(i + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(b'\n'), _) => 1,
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
        breaks = true;
        i += brk;
    }
    let mut end = i;
    while end < input.len() && input[end] == b'=' && end - i < 2 {
        end += 1;
    }
    (end, total, breaks)
}

/// The gzip or zlib stream in `raw` (by its header), inflated up to the
/// bounds; `None` when it yields nothing.
fn inflate(raw: &[u8], budget: &mut u64) -> Option<Vec<u8>> {
    let limit = MAX_INFLATED_PER_RUN.min(*budget);
    let mut data = Vec::new();
    // A truncated or corrupt stream may still have yielded the value before
    // the error: whatever came out is kept.
    let _ = if raw.starts_with(&[0x1f, 0x8b, 0x08]) {
        GzDecoder::new(raw).take(limit).read_to_end(&mut data)
    } else {
        ZlibDecoder::new(raw).take(limit).read_to_end(&mut data)
    };
    *budget = budget.saturating_sub(data.len() as u64);
    (!data.is_empty()).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn finds_gzip_and_zlib_runs_at_every_level() {
        let secret = b"the-secret-value-123";
        let mut blobs = vec![gz(secret)];
        for level in [0, 1, 6, 9] {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::new(level));
            z.write_all(secret).unwrap();
            blobs.push(z.finish().unwrap());
        }
        for blob in blobs {
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
        let big: Vec<u8> = (0..300u32).flat_map(u32::to_le_bytes).collect();
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
