//! Exact-string redaction of credential values from untrusted output.
//!
//! Airlock runs agent-written (potentially hostile) Python with production
//! credentials. Everything that leaves an execution — stdout, stderr, the
//! result JSON, error messages, text fed to an LLM — passes through a
//! [`Redactor`] built from that execution's credentials, which replaces every
//! occurrence of every value (and of its common encodings) with
//! `[REDACTED:NAME]`.
//!
//! # Last line of defence, not the first
//!
//! Exact-string matching can only find what it knows how to spell. A script
//! that wants to exfiltrate a secret can always out-encode a fixed list of
//! encodings: XOR with a constant, a Caesar shift other than ROT13,
//! splitting the value across two lines, printing one character per line, gzip+base64, emitting it as
//! timing or as the length of a list, or sending it over the network before
//! any output exists. No scanner of output can stop that. The real controls
//! must therefore come first: credentials scoped to least privilege and short
//! lifetimes, egress restrictions in the sandbox, never giving a script a
//! credential it does not need, auditing what was run. This crate exists to
//! stop the *accidental* and the *lazy* leak — a traceback that echoes a
//! connection string, a debug `print(os.environ)`, an HTTP client logging an
//! `Authorization` header, a value that ends up base64'd in a Basic-auth
//! header or percent-encoded in a URL — from being stored in the database,
//! shown in the admin UI or fed back to a model. Treat a clean redaction
//! report as "nothing obvious leaked", never as "nothing leaked".
//!
//! # What is matched
//!
//! For every credential value of at least [`MIN_SECRET_CHARS`] characters
//! (shorter ones are reported by [`Redactor::skipped`] and left alone):
//!
//! * the raw bytes, and the value reversed (by code point and by byte);
//! * hex, any letter case;
//! * base64, standard and URL-safe alphabets, padded or not, with the value
//!   at any of the three byte alignments inside a larger encoded blob. The
//!   characters that depend only on the value are searched; the one boundary
//!   character on each side that partially encodes the value, and trailing
//!   `=` padding, are absorbed into the replaced span;
//! * base32, RFC 4648 standard and "extended hex" alphabets, any letter case,
//!   at any of the five byte alignments (boundary characters absorbed as for
//!   base64);
//! * rot13 of the value's ASCII letters;
//! * UTF-16, little and big endian: the raw code units and their hex;
//! * percent-encoding: every byte encoded, Python `quote` / `quote(safe='')`
//!   / `quote_plus`, JavaScript `encodeURIComponent` / `encodeURI`, and
//!   `application/x-www-form-urlencoded`; escapes in either hex case;
//! * JSON string escaping (non-ASCII raw or as `\uXXXX` in either case,
//!   optional `\/`), and a JSON string embedded in a JSON string;
//! * backslash-escaped bytes as in Python's `repr(bytes)` (`\xNN`).
//!
//! Overlapping matches (of one or several credentials) are merged into one
//! replaced span, so no part of any matched value survives. A merged span is
//! labelled with the credential whose match in it is longest; ties go to the
//! longer value, then to the lexicographically smaller name. One marker is
//! one replacement in the counts.
//!
//! # API
//!
//! * [`Redactor::new`] builds the matchers once per execution (two
//!   Aho-Corasick automata over all forms of all values; run time is linear
//!   in the input).
//! * [`Redactor::redact`] works on bytes (output need not be UTF-8);
//!   [`Redactor::redact_str`] is the `&str` convenience.
//! * [`Redactor::stream`] returns a [`StreamRedactor`] whose concatenated
//!   output equals one-shot redaction of the concatenated input.
//! * [`Redactor::redact_truncate`] redacts, then cuts to a byte cap without
//!   splitting a marker or a UTF-8 character and without leaving a trailing
//!   prefix of any searched form.
//! * Every call reports [`RedactionCount`]s per credential name. Values never
//!   appear in counts, in `Debug` output or in errors.
//!
//! # Known limits
//!
//! Anything not listed above is not caught: other encodings (compression,
//! XOR, ...), a value split by line wrapping (e.g. MIME base64
//! at 76 columns) or by interleaved text, partial percent-encoding that
//! matches none of the listed sets, nested encodings other than JSON in
//! JSON, and fragments shorter than the full value (except a truncated tail
//! in [`Redactor::redact_truncate`]). Letter case matters for the raw,
//! reversed, base64 and JSON forms. A credential *name* is printed in the
//! marker and is therefore assumed not to be secret.

#![forbid(unsafe_code)]

mod forms;
mod stream;

pub use stream::StreamRedactor;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use serde::Serialize;

use forms::is_b64_char;

/// Values with fewer characters (Unicode scalar values) than this are not
/// redacted; their names are reported by [`Redactor::skipped`].
pub const MIN_SECRET_CHARS: usize = 4;

/// How many times one credential was replaced in one piece of output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RedactionCount {
    /// Credential name (never the value).
    pub name: String,
    /// Number of `[REDACTED:name]` markers emitted for it.
    pub count: u64,
}

/// Redacted output plus what was replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redacted {
    /// The output with every match replaced by `[REDACTED:NAME]`.
    pub bytes: Vec<u8>,
    /// Per-name replacement counts, sorted by name, zero counts omitted.
    pub counts: Vec<RedactionCount>,
}

/// Error from [`Redactor::try_new`]. Never contains secret material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedactError {
    reason: String,
}

impl fmt::Display for RedactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot build redaction matcher: {}", self.reason)
    }
}

impl std::error::Error for RedactError {}

/// One searched byte pattern (secret material: never printed).
struct Pattern {
    bytes: Vec<u8>,
    /// Index into `Redactor::names` (the secret's rank).
    secret: u32,
    case_insensitive: bool,
    b64_left: bool,
    b64_right: bool,
}

struct Matcher {
    ac: AhoCorasick,
    /// Automaton pattern id -> index into `Redactor::patterns`.
    ids: Vec<u32>,
}

/// A raw match, widened by base64 boundary characters.
#[derive(Clone, Copy)]
struct Component {
    start: usize,
    end: usize,
    /// Length of the pattern matched (without boundary characters).
    len: usize,
    secret: u32,
}

/// A merged, replaced span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub secret: u32,
    best_len: usize,
}

/// A marker's position in redacted output.
#[derive(Clone, Copy)]
struct MarkerPos {
    start: usize,
    end: usize,
    secret: u32,
}

/// Matchers for one execution's credentials. Build once, use for every
/// stream of that execution. `Send + Sync`.
pub struct Redactor {
    /// Credential names by rank (longer value first, then name, then value).
    names: Vec<String>,
    /// `[REDACTED:NAME]` per rank.
    markers: Vec<Vec<u8>>,
    skipped: Vec<String>,
    patterns: Vec<Pattern>,
    /// Pattern indices by first byte (both cases for case-insensitive ones),
    /// in rank order; used for the truncated-tail check.
    by_first_byte: Vec<Vec<u32>>,
    cs: Option<Matcher>,
    ci: Option<Matcher>,
    max_pattern_len: usize,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets: Vec<String> = self.names.iter().map(|n| format!("{n}=***")).collect();
        f.debug_struct("Redactor")
            .field("secrets", &secrets)
            .field("skipped", &self.skipped)
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl Redactor {
    /// Builds the matchers for `secrets` (name, value).
    ///
    /// # Panics
    ///
    /// Only if the automaton cannot be built (pattern set beyond
    /// Aho-Corasick's size limits, i.e. gigabytes of secrets) — failing
    /// closed rather than running unredacted. Use [`Redactor::try_new`] to
    /// handle that case.
    pub fn new<I, N, V>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        match Self::try_new(secrets) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Redactor::new`] but returns an error instead of panicking.
    pub fn try_new<I, N, V>(secrets: I) -> Result<Redactor, RedactError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        let mut active: Vec<(String, String)> = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        for (name, value) in secrets {
            let (name, value) = (name.into(), value.into());
            if value.chars().count() < MIN_SECRET_CHARS {
                skipped.push(name);
            } else {
                active.push((name, value));
            }
        }
        skipped.sort();
        skipped.dedup();
        // Rank: longer value first, then name, then value (determinism).
        active.sort_by(|a, b| {
            b.1.len()
                .cmp(&a.1.len())
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| a.1.cmp(&b.1))
        });
        active.dedup();

        let mut patterns: Vec<Pattern> = Vec::new();
        let mut seen: HashSet<(Vec<u8>, bool)> = HashSet::new();
        for (rank, (_, value)) in active.iter().enumerate() {
            for form in forms::forms(value) {
                let key_bytes = if form.case_insensitive {
                    form.bytes.to_ascii_lowercase()
                } else {
                    form.bytes.clone()
                };
                if !seen.insert((key_bytes, form.case_insensitive)) {
                    continue;
                }
                patterns.push(Pattern {
                    bytes: form.bytes,
                    secret: rank as u32,
                    case_insensitive: form.case_insensitive,
                    b64_left: form.b64_left,
                    b64_right: form.b64_right,
                });
            }
        }

        let mut by_first_byte: Vec<Vec<u32>> = vec![Vec::new(); 256];
        for (i, p) in patterns.iter().enumerate() {
            let b = p.bytes[0];
            if p.case_insensitive && b.is_ascii_alphabetic() {
                by_first_byte[b.to_ascii_lowercase() as usize].push(i as u32);
                by_first_byte[b.to_ascii_uppercase() as usize].push(i as u32);
            } else {
                by_first_byte[b as usize].push(i as u32);
            }
        }

        let cs = build_matcher(&patterns, false)?;
        let ci = build_matcher(&patterns, true)?;
        let max_pattern_len = patterns.iter().map(|p| p.bytes.len()).max().unwrap_or(0);
        let markers = active
            .iter()
            .map(|(n, _)| format!("[REDACTED:{n}]").into_bytes())
            .collect();
        Ok(Redactor {
            names: active.into_iter().map(|(n, _)| n).collect(),
            markers,
            skipped,
            patterns,
            by_first_byte,
            cs,
            ci,
            max_pattern_len,
        })
    }

    /// Names of credentials too short to redact (sorted, deduplicated).
    pub fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    /// True when no credential is redacted (redaction is the identity).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Length of the longest searched pattern, in bytes.
    pub fn max_pattern_len(&self) -> usize {
        self.max_pattern_len
    }

    /// Redacts `input`.
    pub fn redact(&self, input: &[u8]) -> Redacted {
        let mut counts = vec![0u64; self.names.len()];
        let mut bytes = Vec::with_capacity(input.len());
        if self.is_empty() {
            bytes.extend_from_slice(input);
        } else {
            let spans = self.scan(input);
            self.emit(input, &spans, &mut bytes, &mut counts, None);
        }
        Redacted {
            bytes,
            counts: self.counts_to_vec(&counts),
        }
    }

    /// Redacts a string. Replacing ASCII-only or whole-UTF-8-value matches in
    /// valid UTF-8 keeps it valid; should it ever not, invalid sequences are
    /// replaced by U+FFFD (never by original bytes).
    pub fn redact_str(&self, s: &str) -> (String, Vec<RedactionCount>) {
        let r = self.redact(s.as_bytes());
        let text = match String::from_utf8(r.bytes) {
            Ok(t) => t,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        (text, r.counts)
    }

    /// Redacts `input`, then truncates the result to at most `cap` bytes.
    ///
    /// The cut never falls inside a marker or inside a UTF-8 sequence. If the
    /// kept text ends with a fragment (at least 4 bytes) that is a prefix of
    /// any searched form, the fragment is replaced by that credential's
    /// marker — or, when the marker would not fit under `cap`, dropped. This
    /// tail check runs even when the output fits under `cap`, because the
    /// input itself may have been cut by an upstream capture limit (a value
    /// split at the end of a capped pipe). The returned flag is true when the
    /// redacted output was longer than `cap`. Nothing else is appended; the
    /// caller adds its own truncation notice. Counts cover only the markers
    /// present in the returned bytes.
    pub fn redact_truncate(&self, input: &[u8], cap: usize) -> (Redacted, bool) {
        let mut counts = vec![0u64; self.names.len()];
        let mut out = Vec::with_capacity(input.len());
        let mut markers = Vec::new();
        if self.is_empty() {
            out.extend_from_slice(input);
        } else {
            let spans = self.scan(input);
            self.emit(input, &spans, &mut out, &mut counts, Some(&mut markers));
        }
        let truncated = out.len() > cap;
        let mut c = cap.min(out.len());
        let mut tail_marker: Option<u32> = None;
        loop {
            // Never inside a marker.
            if let Some(m) = markers.iter().find(|m| m.start < c && c < m.end) {
                c = m.start;
            }
            c = utf8_floor(&out, c, 0);
            let floor = markers
                .iter()
                .rev()
                .find(|m| m.end <= c)
                .map_or(0, |m| m.end);
            match self.find_fragment(&out, floor, c) {
                None => break,
                Some((start, secret)) => {
                    let t = utf8_floor(&out, start, floor);
                    if t + self.markers[secret as usize].len() <= cap {
                        c = t;
                        tail_marker = Some(secret);
                        break;
                    }
                    c = t;
                }
            }
        }
        out.truncate(c);
        let mut counts = vec![0u64; self.names.len()];
        for m in markers.iter().filter(|m| m.end <= c) {
            counts[m.secret as usize] += 1;
        }
        if let Some(secret) = tail_marker {
            out.extend_from_slice(&self.markers[secret as usize]);
            counts[secret as usize] += 1;
        }
        (
            Redacted {
                bytes: out,
                counts: self.counts_to_vec(&counts),
            },
            truncated,
        )
    }

    /// A streaming redactor over this redactor's matchers.
    pub fn stream(&self) -> StreamRedactor<'_> {
        StreamRedactor::new(self)
    }

    // ----- internals -------------------------------------------------------

    /// Bytes a streaming redactor must hold back: a match may start up to
    /// `max_pattern_len - 1` bytes before the end, be widened one byte to the
    /// left, and its right widening may look up to 3 bytes past its end.
    pub(crate) fn holdback(&self) -> usize {
        self.max_pattern_len + 3
    }

    /// All merged spans in `buf`, sorted and non-overlapping.
    pub(crate) fn scan(&self, buf: &[u8]) -> Vec<Span> {
        let mut comps: Vec<Component> = Vec::new();
        for m in [&self.cs, &self.ci].into_iter().flatten() {
            for hit in m.ac.find_overlapping_iter(buf) {
                let p = &self.patterns[m.ids[hit.pattern().as_usize()] as usize];
                let (mut start, mut end) = (hit.start(), hit.end());
                if p.b64_left && start > 0 && is_b64_char(buf[start - 1]) {
                    start -= 1;
                }
                if p.b64_right && end < buf.len() && is_b64_char(buf[end]) {
                    end += 1;
                    let mut pad = 0;
                    while pad < 2 && end < buf.len() && buf[end] == b'=' {
                        end += 1;
                        pad += 1;
                    }
                }
                comps.push(Component {
                    start,
                    end,
                    len: hit.end() - hit.start(),
                    secret: p.secret,
                });
            }
        }
        comps.sort_unstable_by_key(|c| (c.start, c.end, c.secret));
        let mut spans: Vec<Span> = Vec::new();
        for c in comps {
            if let Some(last) = spans.last_mut() {
                if c.start < last.end {
                    last.end = last.end.max(c.end);
                    if c.len > last.best_len || (c.len == last.best_len && c.secret < last.secret) {
                        last.best_len = c.len;
                        last.secret = c.secret;
                    }
                    continue;
                }
            }
            spans.push(Span {
                start: c.start,
                end: c.end,
                secret: c.secret,
                best_len: c.len,
            });
        }
        spans
    }

    /// Appends `buf` to `out` with `spans` (all within `buf`) replaced.
    fn emit(
        &self,
        buf: &[u8],
        spans: &[Span],
        out: &mut Vec<u8>,
        counts: &mut [u64],
        mut markers: Option<&mut Vec<MarkerPos>>,
    ) {
        let mut pos = 0;
        for s in spans {
            out.extend_from_slice(&buf[pos..s.start]);
            let start = out.len();
            out.extend_from_slice(&self.markers[s.secret as usize]);
            if let Some(m) = markers.as_deref_mut() {
                m.push(MarkerPos {
                    start,
                    end: out.len(),
                    secret: s.secret,
                });
            }
            counts[s.secret as usize] += 1;
            pos = s.end;
        }
        out.extend_from_slice(&buf[pos..]);
    }

    pub(crate) fn emit_counted(
        &self,
        buf: &[u8],
        spans: &[Span],
        out: &mut Vec<u8>,
        counts: &mut [u64],
    ) {
        self.emit(buf, spans, out, counts, None);
    }

    pub(crate) fn secret_count(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn counts_to_vec(&self, counts: &[u64]) -> Vec<RedactionCount> {
        let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
        for (i, &c) in counts.iter().enumerate() {
            if c > 0 {
                *by_name.entry(self.names[i].as_str()).or_default() += c;
            }
        }
        by_name
            .into_iter()
            .map(|(name, count)| RedactionCount {
                name: name.to_string(),
                count,
            })
            .collect()
    }

    /// Earliest `s` in `[floor, c - 4]` such that `out[s..c]` is a prefix of
    /// some pattern; returns the (possibly base64-widened) start and secret.
    fn find_fragment(&self, out: &[u8], floor: usize, c: usize) -> Option<(usize, u32)> {
        if c < floor + MIN_SECRET_CHARS || self.max_pattern_len == 0 {
            return None;
        }
        let lo = floor.max(c.saturating_sub(self.max_pattern_len));
        for s in lo..=c - MIN_SECRET_CHARS {
            let tail = &out[s..c];
            for &pi in &self.by_first_byte[out[s] as usize] {
                let p = &self.patterns[pi as usize];
                if p.bytes.len() < tail.len() {
                    continue;
                }
                let head = &p.bytes[..tail.len()];
                let eq = if p.case_insensitive {
                    head.eq_ignore_ascii_case(tail)
                } else {
                    head == tail
                };
                if eq {
                    let mut start = s;
                    if p.b64_left && start > floor && is_b64_char(out[start - 1]) {
                        start -= 1;
                    }
                    return Some((start, p.secret));
                }
            }
        }
        None
    }
}

fn build_matcher(patterns: &[Pattern], ci: bool) -> Result<Option<Matcher>, RedactError> {
    let (ids, pats): (Vec<u32>, Vec<&[u8]>) = patterns
        .iter()
        .enumerate()
        .filter(|(_, p)| p.case_insensitive == ci)
        .map(|(i, p)| (i as u32, p.bytes.as_slice()))
        .unzip();
    if pats.is_empty() {
        return Ok(None);
    }
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        // A redactor is built per execution and scans at most a few MiB: the
        // contiguous NFA builds in a fifth of the DFA's time (~40 µs instead of
        // ~200 µs for one credential) and scans as fast here, since the
        // prefilter does most of the work.
        .kind(Some(AhoCorasickKind::ContiguousNFA))
        .ascii_case_insensitive(ci)
        .build(pats)
        .map_err(|e| RedactError {
            // aho-corasick's build errors describe sizes/ids, never patterns.
            reason: e.to_string(),
        })?;
    Ok(Some(Matcher { ac, ids }))
}

/// Moves `c` back (not below `floor`) so it does not split a UTF-8 sequence:
/// at most 3 steps over continuation bytes.
fn utf8_floor(buf: &[u8], mut c: usize, floor: usize) -> usize {
    let mut steps = 0;
    while c > floor && c < buf.len() && (buf[c] & 0xC0) == 0x80 && steps < 3 {
        c -= 1;
        steps += 1;
    }
    c
}

#[cfg(test)]
mod tests;
