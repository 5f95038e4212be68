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

use std::cell::RefCell;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Marks a run that is one unit (escape, folded character) in `Seg::orig`.
const UNIT: u32 = 1 << 31;

/// A run of view bytes and where it came from: the first view byte, and the
/// first original byte (with [`UNIT`] set for a unit, whose original length
/// is in `View::unit_lens`). A one-to-one run lasts until the next run.
type Seg = (u32, u32);

/// The canonical text of an input and its map back to the input.
pub(crate) struct View {
    pub text: Vec<u8>,
    segs: Vec<Seg>,
    /// (index into `segs`, original length) of every unit, in order.
    unit_lens: Vec<(u32, u32)>,
    /// Original ranges of the decoded escapes, in order. Only they depend on
    /// the bytes around them: a value whose first or last bytes an escape
    /// took in is not in the view as it is, so the caller searches their
    /// neighbourhood in the original too.
    pub escapes: Vec<(usize, usize)>,
    /// Length of the original.
    orig_end: usize,
}

thread_local! {
    /// Buffers of the last view built on this thread, zeroed, for the next
    /// one (a fresh megabyte costs more in page faults than the scan).
    static SPARE: RefCell<(Vec<u8>, Vec<Seg>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Drop for View {
    fn drop(&mut self) {
        let mut text = std::mem::take(&mut self.text);
        let mut segs = std::mem::take(&mut self.segs);
        if text.capacity() > 64 << 20 {
            return;
        }
        // The view is unredacted output: nothing of it outlives its use.
        text.fill(0);
        text.clear();
        segs.clear();
        SPARE.with(|s| *s.borrow_mut() = (text, segs));
    }
}

impl View {
    /// The original byte range that the view bytes `[a, b)` came from.
    pub fn orig_range(&self, a: usize, b: usize) -> (usize, usize) {
        let (_, (view, orig)) = self.seg_of(a);
        let start = if orig & UNIT == 0 {
            orig as usize + (a - view as usize)
        } else {
            (orig & !UNIT) as usize
        };
        let (j, (view, orig)) = self.seg_of(b - 1);
        let end = if orig & UNIT == 0 {
            orig as usize + (b - view as usize)
        } else {
            (orig & !UNIT) as usize + self.unit_len(j) as usize
        };
        (start, end)
    }

    /// [`View::orig_range`], taking in up to `lead` original bytes that the
    /// view dropped just before the start, and `trail` just after the end.
    pub fn orig_range_taking(
        &self,
        a: usize,
        b: usize,
        lead: usize,
        trail: usize,
    ) -> (usize, usize) {
        let (mut start, mut end) = self.orig_range(a, b);
        if lead > 0 {
            let floor = if a == 0 {
                0
            } else {
                self.orig_range(a - 1, a).1
            };
            start = start.saturating_sub(lead).max(floor);
        }
        if trail > 0 {
            let ceil = if b < self.text.len() {
                self.orig_range(b, b + 1).0
            } else {
                self.orig_end
            };
            end = (end + trail).min(ceil);
        }
        (start, end)
    }

    fn seg_of(&self, p: usize) -> (usize, Seg) {
        let i = self
            .segs
            .partition_point(|s| s.0 as usize <= p)
            .saturating_sub(1);
        (i, self.segs[i])
    }

    fn unit_len(&self, seg: usize) -> u32 {
        let k = self.unit_lens.partition_point(|u| (u.0 as usize) < seg);
        self.unit_lens[k].1
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
    unit_lens: Vec<(u32, u32)>,
    escapes: Vec<(usize, usize)>,
    /// Original offset that would continue the current one-to-one run.
    next_orig: usize,
}

impl Builder {
    #[inline(always)]
    fn start_run(&mut self, orig: usize) {
        if self.next_orig != orig {
            self.segs.push((self.text.len() as u32, orig as u32));
        }
    }

    fn unit(&mut self, orig: usize, orig_len: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return self.skip();
        }
        self.unit_lens
            .push((self.segs.len() as u32, orig_len as u32));
        self.segs.push((self.text.len() as u32, orig as u32 | UNIT));
        self.text.extend_from_slice(bytes);
        self.next_orig = usize::MAX;
    }

    #[inline(always)]
    fn skip(&mut self) {
        self.next_orig = usize::MAX;
    }
}

/// The canonical view of `input` (at most 2 GiB: outputs are capped far
/// below that).
pub(crate) fn view(input: &[u8]) -> View {
    build(input, true)
}

fn build(input: &[u8], decode: bool) -> View {
    let (text, segs) = SPARE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut b = Builder {
        text,
        segs,
        unit_lens: Vec::new(),
        escapes: Vec::new(),
        next_orig: usize::MAX,
    };
    b.text.reserve(input.len());
    let n = input.len();
    let mut i = 0;
    while i < n {
        let c = input[i];
        if PLAIN[c as usize] {
            b.start_run(i);
            b.text.push(c);
            i += 1;
            while i < n && PLAIN[input[i] as usize] {
                b.text.push(input[i]);
                i += 1;
            }
            b.next_orig = i;
            continue;
        }
        if matches!(c, b' ' | b'\n' | b'\t' | b'\r' | 0x0b | 0x0c) {
            b.skip();
            i += 1;
            continue;
        }
        let decoded = match c {
            _ if !decode => None,
            b'\\' => backslash(&input[i..]),
            b'&' => entity(&input[i..]),
            b'%' => percent(&input[i..]),
            _ => None,
        };
        if let Some((len, bytes)) = decoded {
            b.escapes.push((i, i + len));
            let folded = fold_bytes(&bytes);
            b.unit(i, len, &folded);
            i += len;
            continue;
        }
        if c < 0x80 {
            b.start_run(i);
            b.text.push(c);
            i += 1;
            b.next_orig = i;
            continue;
        }
        match next_char(&input[i..]) {
            Some((ch, len)) => {
                match fold_char(ch) {
                    Folded::Same => {
                        b.start_run(i);
                        b.text.extend_from_slice(&input[i..i + len]);
                        b.next_orig = i + len;
                    }
                    Folded::Gone => b.skip(),
                    Folded::To(s) => b.unit(i, len, s.as_bytes()),
                }
                i += len;
            }
            None => {
                b.start_run(i);
                b.text.push(c);
                i += 1;
                b.next_orig = i;
            }
        }
    }
    View {
        text: std::mem::take(&mut b.text),
        segs: std::mem::take(&mut b.segs),
        unit_lens: b.unit_lens,
        escapes: b.escapes,
        orig_end: input.len(),
    }
}

/// True when the view copies `bytes` as they are.
pub(crate) fn is_plain(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| PLAIN[b as usize])
}

/// `bytes` with whitespace and invisible characters dropped and NFKC
/// applied, but no escape decoded: how a value that contains something like
/// an escape (`%41`, `\\u0041`) looks in the view of text that spaced it out
/// (the spaces break the escape, so the view does not decode it).
pub(crate) fn squeezed(bytes: &[u8]) -> Vec<u8> {
    if is_plain(bytes) {
        return bytes.to_vec();
    }
    build(bytes, false).text.clone()
}

/// How many bytes at the start and at the end of `bytes` the view drops.
pub(crate) fn dropped_edges(bytes: &[u8]) -> (u32, u32) {
    if is_plain(bytes) {
        return (0, 0);
    }
    let v = view(bytes);
    if v.text.is_empty() {
        return (bytes.len() as u32, 0);
    }
    let (first, _) = v.orig_range(0, 1);
    let (_, last) = v.orig_range(v.text.len() - 1, v.text.len());
    (first as u32, (bytes.len() - last) as u32)
}

/// The canonical text of `bytes` (for patterns).
pub(crate) fn canonical(bytes: &[u8]) -> Vec<u8> {
    if is_plain(bytes) {
        return bytes.to_vec();
    }
    view(bytes).text.clone()
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
        String::from_utf8(view(s.as_bytes()).text.clone()).unwrap()
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
