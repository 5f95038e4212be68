//! The canonical view of a piece of output: what a reader sees once
//! whitespace, invisible characters, compatibility forms and escapes are out
//! of the way, with a map from every view byte back to the original bytes.
//!
//! The view drops ASCII and Unicode whitespace and zero-width / format
//! characters, folds every other character with NFKC (fullwidth `Ａ` → `A`),
//! and decodes `\uXXXX` (JSON surrogate pairs joined), `\UXXXXXXXX`,
//! `\u{X…}`, `\xNN`, `%NN`, `&#N;`, `&#xN;` and the named entities `&amp;`
//! `&lt;` `&gt;` `&quot;` `&apos;` `&nbsp;`. A decoded escape is one unit: any
//! match touching it replaces the whole escape. Bytes that are not UTF-8 are
//! kept as they are.

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// A run of view bytes and where it came from.
#[derive(Clone, Copy, Debug)]
struct Seg {
    /// First view byte of the run.
    view: u32,
    /// First original byte.
    orig: u32,
    /// Original length of a unit (escape, folded character); 0 for a
    /// one-to-one run, whose length is the distance to the next run.
    unit_len: u32,
}

/// The canonical text of an input and its map back to the input.
pub(crate) struct View {
    pub text: Vec<u8>,
    segs: Vec<Seg>,
}

impl View {
    /// The original byte range that the view bytes `[a, b)` came from.
    pub fn orig_range(&self, a: usize, b: usize) -> (usize, usize) {
        let first = self.seg_of(a);
        let start = match first.unit_len {
            0 => first.orig as usize + (a - first.view as usize),
            _ => first.orig as usize,
        };
        let last = self.seg_of(b - 1);
        let end = match last.unit_len {
            0 => last.orig as usize + (b - last.view as usize),
            n => (last.orig + n) as usize,
        };
        (start, end)
    }

    fn seg_of(&self, p: usize) -> Seg {
        let i = self.segs.partition_point(|s| s.view as usize <= p);
        self.segs[i.saturating_sub(1)]
    }
}

/// Bytes that are copied to the view as they are.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x80 {
        t[b] = !matches!(
            b as u8,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'\\' | b'&' | b'%'
        );
        b += 1;
    }
    t
};

struct Builder {
    text: Vec<u8>,
    segs: Vec<Seg>,
    /// Original offset that would continue the current one-to-one run.
    next_orig: Option<usize>,
}

impl Builder {
    fn copy(&mut self, orig: usize, bytes: &[u8]) {
        if self.next_orig != Some(orig) {
            self.segs.push(Seg {
                view: self.text.len() as u32,
                orig: orig as u32,
                unit_len: 0,
            });
        }
        self.text.extend_from_slice(bytes);
        self.next_orig = Some(orig + bytes.len());
    }

    fn unit(&mut self, orig: usize, orig_len: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return self.skip();
        }
        self.segs.push(Seg {
            view: self.text.len() as u32,
            orig: orig as u32,
            unit_len: orig_len as u32,
        });
        self.text.extend_from_slice(bytes);
        self.next_orig = None;
    }

    fn skip(&mut self) {
        self.next_orig = None;
    }
}

/// The canonical view of `input`.
pub(crate) fn view(input: &[u8]) -> View {
    let mut b = Builder {
        text: Vec::with_capacity(input.len()),
        segs: Vec::new(),
        next_orig: None,
    };
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if PLAIN[c as usize] {
            let run = input[i..].iter().take_while(|&&x| PLAIN[x as usize]).count();
            b.copy(i, &input[i..i + run]);
            i += run;
            continue;
        }
        let decoded = match c {
            b'\\' => backslash(&input[i..]),
            b'&' => entity(&input[i..]),
            b'%' => percent(&input[i..]),
            _ => None,
        };
        if let Some((len, bytes)) = decoded {
            let folded = fold_bytes(&bytes);
            b.unit(i, len, &folded);
            i += len;
            continue;
        }
        if c < 0x80 {
            if c.is_ascii_whitespace() || c == 0x0b {
                b.skip();
            } else {
                b.copy(i, &input[i..i + 1]);
            }
            i += 1;
            continue;
        }
        match next_char(&input[i..]) {
            Some((ch, len)) => {
                match fold_char(ch) {
                    Folded::Same => b.copy(i, &input[i..i + len]),
                    Folded::Gone => b.skip(),
                    Folded::To(s) => b.unit(i, len, s.as_bytes()),
                }
                i += len;
            }
            None => {
                b.copy(i, &input[i..i + 1]);
                i += 1;
            }
        }
    }
    View {
        text: b.text,
        segs: b.segs,
    }
}

/// The canonical text of `bytes` (for patterns).
pub(crate) fn canonical(bytes: &[u8]) -> Vec<u8> {
    view(bytes).text
}

enum Folded {
    Same,
    Gone,
    To(String),
}

/// Zero-width and formatting characters that render as nothing.
fn invisible(ch: char) -> bool {
    matches!(ch,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E0FFF}')
}

fn fold_char(ch: char) -> Folded {
    if ch.is_whitespace() || invisible(ch) {
        return Folded::Gone;
    }
    if is_nfkc_quick(std::iter::once(ch)) == IsNormalized::Yes {
        return Folded::Same;
    }
    let s: String = std::iter::once(ch)
        .nfkc()
        .filter(|c| !c.is_whitespace() && !invisible(*c))
        .collect();
    if s.is_empty() {
        Folded::Gone
    } else {
        Folded::To(s)
    }
}

/// Decoded escape bytes, folded like the text around them when they are
/// UTF-8 (a `\xNN` or `%NN` byte that is not is kept as it is).
fn fold_bytes(bytes: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let mut out = String::with_capacity(s.len());
            for ch in s.chars() {
                match fold_char(ch) {
                    Folded::Same => out.push(ch),
                    Folded::Gone => {}
                    Folded::To(t) => out.push_str(&t),
                }
            }
            out.into_bytes()
        }
        Err(_) => bytes.to_vec(),
    }
}

fn next_char(buf: &[u8]) -> Option<(char, usize)> {
    let len = match buf[0] {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(buf.get(..len)?).ok()?;
    s.chars().next().map(|c| (c, len))
}

fn hex_value(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

fn char_bytes(cp: u32) -> Option<Vec<u8>> {
    char::from_u32(cp).map(|c| c.to_string().into_bytes())
}

/// `\uXXXX` (a surrogate pair as one), `\UXXXXXXXX`, `\u{X…}`, `\xNN`.
fn backslash(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    match buf.get(1)? {
        b'x' => Some((4, vec![hex_value(buf.get(2..4)?)? as u8])),
        b'U' => Some((10, char_bytes(hex_value(buf.get(2..10)?)?)?)),
        b'u' if buf.get(2) == Some(&b'{') => {
            let close = buf.iter().take(10).position(|&b| b == b'}')?;
            Some((close + 1, char_bytes(hex_value(&buf[3..close])?)?))
        }
        b'u' => {
            let unit = hex_value(buf.get(2..6)?)?;
            if (0xD800..0xDC00).contains(&unit) {
                let low = match buf.get(6..8) {
                    Some(b"\\u") => hex_value(buf.get(8..12)?)?,
                    _ => return None,
                };
                if !(0xDC00..0xE000).contains(&low) {
                    return None;
                }
                let cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                return Some((12, char_bytes(cp)?));
            }
            Some((6, char_bytes(unit)?))
        }
        _ => None,
    }
}

/// `&#N;`, `&#xN;` and a few named entities.
fn entity(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let semi = buf.iter().take(12).position(|&b| b == b';')?;
    let body = &buf[1..semi];
    let bytes = match body {
        b"amp" => b"&".to_vec(),
        b"lt" => b"<".to_vec(),
        b"gt" => b">".to_vec(),
        b"quot" => b"\"".to_vec(),
        b"apos" => b"'".to_vec(),
        b"nbsp" => Vec::new(),
        [b'#', b'x' | b'X', hex @ ..] => char_bytes(hex_value(hex)?)?,
        [b'#', dec @ ..] if !dec.is_empty() && dec.iter().all(u8::is_ascii_digit) => {
            char_bytes(std::str::from_utf8(dec).ok()?.parse().ok()?)?
        }
        _ => return None,
    };
    Some((semi + 1, bytes))
}

/// `%NN`.
fn percent(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    Some((3, vec![hex_value(buf.get(1..3)?)? as u8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        String::from_utf8(view(s.as_bytes()).text).unwrap()
    }

    #[test]
    fn drops_whitespace_and_invisibles_and_folds() {
        assert_eq!(text("a b\n c\r\n\td"), "abcd");
        assert_eq!(text("s\u{200B}e\u{FEFF}c\u{00AD}r"), "secr");
        assert_eq!(text("ｓｅｃｒｅｔ１"), "secret1");
        assert_eq!(text("a\u{3000}b\u{00A0}c"), "abc");
        assert_eq!(text("é"), "é");
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(text(r"\u0073\u0065c"), "sec");
        assert_eq!(text(r"\ud83d\ude00!"), "😀!");
        assert_eq!(text(r"\x41\x42 \U00000043 \u{44}"), "ABCD");
        assert_eq!(text("&#115;&#x65;&amp;&lt;&nbsp;x"), "se&<x");
        assert_eq!(text("%41%4a%zz"), "AJ%zz");
        assert_eq!(text(r"\uff21"), "A");
        // Incomplete escapes stay as they are.
        assert_eq!(text(r"\u12 &foo; \q"), r"\u12&foo;\q");
    }

    #[test]
    fn maps_back_to_original_spans() {
        let input = "x: s e\u{200B}c&#114;\\u0065t!";
        let v = view(input.as_bytes());
        let t = std::str::from_utf8(&v.text).unwrap();
        let a = t.find("secret").unwrap();
        let (s, e) = v.orig_range(a, a + 6);
        assert_eq!(&input[s..e], "s e\u{200B}c&#114;\\u0065t");
        let (s, e) = v.orig_range(0, 1);
        assert_eq!(&input[s..e], "x");
    }

    #[test]
    fn invalid_utf8_is_kept() {
        let v = view(b"a\xff b\xc3");
        assert_eq!(v.text, b"a\xffb\xc3");
    }
}
