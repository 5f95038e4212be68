//! Generation of the encoded forms under which a secret value is searched.
//!
//! Every function here is pure: value in, byte patterns out. The patterns are
//! as secret as the value itself and must never be logged.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;

/// One byte pattern derived from a secret value.
#[derive(Clone)]
pub(crate) struct Form {
    /// The bytes to look for.
    pub bytes: Vec<u8>,
    /// Matched ASCII-case-insensitively (hex digits, percent escapes).
    pub case_insensitive: bool,
    /// A base64 window whose first character is preceded, in a real
    /// encoding, by one character that partially encodes the value.
    pub b64_left: bool,
    /// A base64 window whose last character is followed, in a real encoding,
    /// by one character that partially encodes the value (and possibly by
    /// `=` padding).
    pub b64_right: bool,
}

impl Form {
    fn plain(bytes: Vec<u8>) -> Form {
        Form {
            bytes,
            case_insensitive: false,
            b64_left: false,
            b64_right: false,
        }
    }

    /// A raw-like form, matched in any case with `ignore_case`.
    pub fn cased(bytes: Vec<u8>, ignore_case: bool) -> Form {
        Form {
            case_insensitive: ignore_case,
            ..Form::plain(bytes)
        }
    }

    fn ci(bytes: Vec<u8>) -> Form {
        Form {
            case_insensitive: true,
            ..Form::plain(bytes)
        }
    }
}

/// Characters of both base64 alphabets (standard and URL-safe).
pub(crate) fn is_b64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// All forms of `value`. May contain duplicates; the matcher drops them.
/// With `ignore_case`, the raw and reversed forms match in any ASCII case.
/// With `for_view`, forms that the canonical view decodes back to another
/// form (`%XX` escapes, JSON `\uXXXX`, `\xNN`) are left out.
pub(crate) fn forms(value: &str, ignore_case: bool, for_view: bool) -> Vec<Form> {
    let raw = value.as_bytes();
    let cased = |bytes: Vec<u8>| Form::cased(bytes, ignore_case);
    let mut out = vec![cased(raw.to_vec())];

    // Reversed: by code point (Python `s[::-1]`) and by byte.
    let rev_chars: String = value.chars().rev().collect();
    out.push(cased(rev_chars.into_bytes()));
    let mut rev_bytes = raw.to_vec();
    rev_bytes.reverse();
    out.push(cased(rev_bytes));

    // Hex; matched case-insensitively, so lower, upper and mixed case.
    out.push(Form::ci(data_encoding::HEXLOWER.encode(raw).into_bytes()));

    base64_forms(raw, &mut out);
    base32_forms(raw, &mut out);

    // rot13 (Python `codecs.encode(v, "rot13")`), when the value has letters.
    let rot13: Vec<u8> = raw
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' => (b - b'a' + 13) % 26 + b'a',
            b'A'..=b'Z' => (b - b'A' + 13) % 26 + b'A',
            b => b,
        })
        .collect();
    if rot13 != raw {
        out.push(Form::plain(rot13));
    }

    // UTF-16 (little and big endian): the raw code units, and their hex
    // (Python `v.encode("utf-16-le").hex()`), hex matched case-insensitively.
    for le in [true, false] {
        let mut units = Vec::with_capacity(2 * raw.len());
        for u in value.encode_utf16() {
            units.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        out.push(Form::ci(
            data_encoding::HEXLOWER.encode(&units).into_bytes(),
        ));
        out.push(Form::plain(units));
    }

    // Percent-encoding; case-insensitive so `%2f` and `%2F` both match. The
    // view decodes the escapes, so for it only `+` for a space differs.
    for set in PERCENT_SETS
        .iter()
        .filter(|set| !for_view || (set.plus && value.contains(' ')))
    {
        let enc = percent_encode(raw, set.safe, set.plus);
        if enc != raw {
            out.push(Form::ci(enc));
        }
    }

    // JSON string escaping, as emitted by serde_json / JSON.stringify
    // (non-ASCII raw), Python json.dumps (ensure_ascii, lowercase \u),
    // uppercase \u, and PHP-style escaped slashes; plus a JSON string
    // embedded in another JSON string.
    let mut json = Vec::new();
    for (ascii, upper, slash) in [
        (false, false, false),
        (true, false, false),
        (true, true, false),
        (false, false, true),
        (true, false, true),
    ] {
        // The view decodes `\uXXXX`: the ASCII-only variants are the others.
        if !(for_view && ascii) {
            json.push(json_escape(value, ascii, upper, slash));
        }
    }
    json.push(json_escape(&json[0], false, false, false));
    json.push(json_escape(
        &json_escape(value, true, false, false),
        false,
        false,
        false,
    ));
    for j in json {
        if j.as_bytes() != raw {
            out.push(Form::plain(j.into_bytes()));
        }
    }

    // Backslash-escaped bytes, as in Python's `repr(bytes)` / C literals
    // (the view decodes `\xNN`; `\\`, `\n`, `\r`, `\t` stay).
    let esc = backslash_escape(raw);
    let view_decodes = for_view
        && !raw
            .iter()
            .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t'));
    if esc != raw && !view_decodes {
        out.push(Form::plain(esc));
    }

    out
}

/// Byte ranges of every run of `n` consecutive characters of `text` (UTF-8;
/// bytes that are not count as one character each). None when the text has
/// no more than `n` characters: the whole value is searched anyway.
pub(crate) fn char_windows(text: &[u8], n: usize) -> Vec<(usize, usize)> {
    let bounds: Vec<usize> = (0..text.len())
        .filter(|&i| (text[i] & 0xC0) != 0x80)
        .chain([text.len()])
        .collect();
    let chars = bounds.len() - 1;
    if n == 0 || chars <= n {
        return Vec::new();
    }
    (0..=chars - n)
        .map(|i| (bounds[i], bounds[i + n]))
        .collect()
}

/// Base64 windows for the value embedded at byte offset 0, 1 and 2 (mod 3)
/// inside a larger encoded blob, in the standard and URL-safe alphabets.
///
/// With `k` unknown bytes before the value, the encoded characters covering
/// bits `[6j, 6j+6)` of the stream depend only on the value when that range
/// lies within `[8k, 8(k+n))`. That window is the pattern; the characters
/// just outside it that depend partly on the value are absorbed at match
/// time (see `b64_left` / `b64_right`). Padding is irrelevant to the window:
/// it only follows the right boundary character, and is absorbed with it.
fn base64_forms(raw: &[u8], out: &mut Vec<Form>) {
    let n = raw.len();
    for k in 0..3usize {
        let mut buf = vec![0u8; k];
        buf.extend_from_slice(raw);
        let enc = STANDARD_NO_PAD.encode(&buf);
        let start = (8 * k).div_ceil(6);
        let end = 8 * (k + n) / 6;
        if end <= start {
            continue;
        }
        let window = enc.as_bytes()[start..end].to_vec();
        // Boundary characters exist where the window edge is not on a byte edge.
        let b64_left = start * 6 != 8 * k;
        let b64_right = end * 6 != 8 * (k + n);
        let url: Vec<u8> = window
            .iter()
            .map(|&b| match b {
                b'+' => b'-',
                b'/' => b'_',
                b => b,
            })
            .collect();
        let differs = url != window;
        out.push(Form {
            b64_left,
            b64_right,
            ..Form::plain(window)
        });
        if differs {
            out.push(Form {
                b64_left,
                b64_right,
                ..Form::plain(url)
            });
        }
    }
}

/// Base32 windows (RFC 4648 standard and "extended hex" alphabets) for the
/// value embedded at byte offset 0..5 (mod 5) inside a larger encoded blob;
/// the same window logic as [`base64_forms`] with 5 bits per character.
/// Matched case-insensitively (lower-case base32 decodes too); the characters
/// just outside a window that depend partly on the value are absorbed like
/// base64's (both alphabets are alphanumeric).
fn base32_forms(raw: &[u8], out: &mut Vec<Form>) {
    let n = raw.len();
    for encoding in [
        &data_encoding::BASE32_NOPAD,
        &data_encoding::BASE32HEX_NOPAD,
    ] {
        for k in 0..5usize {
            let mut buf = vec![0u8; k];
            buf.extend_from_slice(raw);
            let enc = encoding.encode(&buf);
            let start = (8 * k).div_ceil(5);
            let end = 8 * (k + n) / 5;
            if end <= start {
                continue;
            }
            out.push(Form {
                b64_left: start * 5 != 8 * k,
                b64_right: end * 5 != 8 * (k + n),
                ..Form::ci(enc.as_bytes()[start..end].to_vec())
            });
        }
    }
}

struct PercentSet {
    /// Bytes besides ASCII alphanumerics left unencoded.
    safe: &'static [u8],
    /// Space becomes `+`.
    plus: bool,
}

const PERCENT_SETS: &[PercentSet] = &[
    // Every byte encoded.
    PercentSet {
        safe: b"",
        plus: false,
    },
    // Python urllib.parse.quote (safe='/').
    PercentSet {
        safe: b"_.-~/",
        plus: false,
    },
    // Python quote(safe='').
    PercentSet {
        safe: b"_.-~",
        plus: false,
    },
    // Python quote_plus.
    PercentSet {
        safe: b"_.-~",
        plus: true,
    },
    // JavaScript encodeURIComponent.
    PercentSet {
        safe: b"-_.!~*'()",
        plus: false,
    },
    // JavaScript encodeURI.
    PercentSet {
        safe: b"-_.!~*'();/?:@&=+$,#",
        plus: false,
    },
    // application/x-www-form-urlencoded (WHATWG, Java URLEncoder).
    PercentSet {
        safe: b"*-._",
        plus: true,
    },
];

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn percent_encode(raw: &[u8], safe: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() * 3);
    for &b in raw {
        // An empty safe set means "encode every byte", alphanumerics included.
        let keep = !safe.is_empty() && (b.is_ascii_alphanumeric() || safe.contains(&b));
        if keep {
            out.push(b);
        } else if b == b' ' && plus {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[(b >> 4) as usize],
                HEX_UPPER[(b & 15) as usize],
            ]);
        }
    }
    out
}

pub(crate) fn json_escape(s: &str, ascii: bool, upper: bool, slash: bool) -> String {
    let plain = |b: u8| {
        b >= 0x20 && b != b'"' && b != b'\\' && !(slash && b == b'/') && !(ascii && b >= 0x7f)
    };
    if s.bytes().all(plain) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '/' if slash => out.push_str("\\/"),
            c if (c as u32) < 0x20 || (ascii && (c as u32) >= 0x7f) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    if upper {
                        out.push_str(&format!("\\u{unit:04X}"));
                    } else {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn backslash_escape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() * 2);
    for &b in raw {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(forms: &[Form], s: &str) -> bool {
        forms.iter().any(|f| f.bytes == s.as_bytes())
    }

    #[test]
    fn percent_sets_match_python() {
        let v = "a b/c+d~é";
        // quote(v)
        assert_eq!(
            percent_encode(v.as_bytes(), b"_.-~/", false),
            b"a%20b/c%2Bd~%C3%A9"
        );
        // quote_plus(v)
        assert_eq!(
            percent_encode(v.as_bytes(), b"_.-~", true),
            b"a+b%2Fc%2Bd~%C3%A9"
        );
        assert_eq!(percent_encode(b"ab", b"", false), b"%61%62");
    }

    #[test]
    fn json_escape_variants() {
        let v = "p\"w\\é/😀";
        assert_eq!(json_escape(v, false, false, false), "p\\\"w\\\\é/😀");
        assert_eq!(
            json_escape(v, true, false, true),
            "p\\\"w\\\\\\u00e9\\/\\ud83d\\ude00"
        );
        assert_eq!(
            json_escape(v, true, true, false),
            "p\\\"w\\\\\\u00E9/\\uD83D\\uDE00"
        );
    }

    #[test]
    fn base64_windows_and_flags() {
        let f = forms("abcd", false, false);
        // k=0: "YWJjZA" -> window "YWJjZ" (5 chars, right boundary 'A').
        assert!(has(&f, "YWJjZ"));
        let w0 = f.iter().find(|x| x.bytes == b"YWJjZ").unwrap();
        assert!(!w0.b64_left && w0.b64_right);
        assert!(has(&f, "61626364"));
    }

    #[test]
    fn char_windows_cover_every_run() {
        let t = "abcdéfgh".as_bytes();
        let got: Vec<&str> = char_windows(t, 6)
            .into_iter()
            .map(|(a, b)| std::str::from_utf8(&t[a..b]).unwrap())
            .collect();
        assert_eq!(got, ["abcdéf", "bcdéfg", "cdéfgh"]);
        assert!(char_windows(b"abcdef", 6).is_empty());
    }

    #[test]
    fn backslash_escape_bytes() {
        assert_eq!(backslash_escape("é\\\n".as_bytes()), b"\\xc3\\xa9\\\\\\n");
    }
}
