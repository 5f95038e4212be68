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

mod blobs;
mod canon;
mod forms;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use serde::Serialize;

use forms::{is_b64_char, Form};

/// Values with fewer characters (Unicode scalar values) than this are not
/// redacted; their names are reported by [`Redactor::skipped`].
pub const MIN_SECRET_CHARS: usize = 4;

/// Values with fewer characters than this are matched in their exact forms
/// only: the canonical view and partial runs of shorter values would hit
/// ordinary text. It is also the floor for a partial run's length.
pub const MIN_CANONICAL_CHARS: usize = 8;

/// Default for [`Options::partial_chars`].
pub const DEFAULT_PARTIAL_CHARS: usize = 16;

/// What a [`Redactor`] looks for besides the exact forms of each value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Also scan the canonical view of every input (whitespace and invisible
    /// characters removed, NFKC, escapes decoded; see the crate docs).
    pub canonical: bool,
    /// Redact every run of at least this many consecutive characters of a
    /// value (capped at half the value, never below [`MIN_CANONICAL_CHARS`]);
    /// `None` matches whole values only.
    pub partial_chars: Option<usize>,
    /// Inflate gzip / zlib / deflate data written as base64 and look inside.
    pub compressed: bool,
    /// Match every value in any ASCII letter case. Without it, only values
    /// whose letters are all of one case (hex tokens, UUIDs) are.
    pub ignore_case: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            canonical: true,
            partial_chars: Some(DEFAULT_PARTIAL_CHARS),
            compressed: true,
            ignore_case: false,
        }
    }
}

impl Options {
    /// Exact forms of whole values only (the matcher before the canonical
    /// one; benchmarks compare against it).
    pub fn exact_only() -> Self {
        Options {
            canonical: false,
            partial_chars: None,
            compressed: false,
            ignore_case: false,
        }
    }
}

/// How many times one credential was replaced in one piece of output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RedactionCount {
    /// Credential name (never the value).
    pub name: String,
    /// Number of `[REDACTED:name]` markers emitted for it.
    pub count: u64,
    /// How many of those replaced only part of the value (a run of its
    /// characters, not the whole value in any form).
    pub partial: u64,
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

/// One piece of one output stream, in the order the pieces were written
/// (see [`Redactor::redact_outputs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Index of the stream.
    pub stream: usize,
    /// Bytes of that stream, following its previous piece.
    pub len: usize,
}

/// One searched byte pattern (secret material: never printed).
struct Pattern {
    bytes: Vec<u8>,
    /// Index into `Redactor::names` (the secret's rank).
    secret: u32,
    case_insensitive: bool,
    b64_left: bool,
    b64_right: bool,
    partial: bool,
}

struct Matcher {
    ac: AhoCorasick,
    /// Automaton pattern id -> index into `PatternSet::patterns`.
    ids: Vec<u32>,
}

/// Patterns searched in one kind of text (the input, or its canonical view).
#[derive(Default)]
struct PatternSet {
    patterns: Vec<Pattern>,
    seen: HashSet<(Vec<u8>, bool)>,
    cs: Option<Matcher>,
    ci: Option<Matcher>,
}

/// A match, widened by base64 boundary characters.
#[derive(Clone, Copy, Debug)]
struct Component {
    start: usize,
    end: usize,
    /// Length of the pattern matched (without boundary characters).
    len: usize,
    secret: u32,
    partial: bool,
}

impl Component {
    /// Which of two components labels a span: a whole value over a partial
    /// run, then the longer match, then the higher-ranked secret.
    fn better_than(&self, o: &Component) -> bool {
        (!self.partial, self.len, std::cmp::Reverse(self.secret))
            > (!o.partial, o.len, std::cmp::Reverse(o.secret))
    }
}

/// A merged, replaced span.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
    /// The component that names it.
    best: Component,
}

/// A marker's position in redacted output.
#[derive(Clone, Copy)]
struct MarkerPos {
    start: usize,
    end: usize,
    secret: u32,
    partial: bool,
}

/// Matchers for one execution's credentials. Build once, use for every
/// output of that execution. `Send + Sync`.
pub struct Redactor {
    /// Credential names by rank (longer value first, then name, then value).
    names: Vec<String>,
    /// `[REDACTED:NAME]` per rank.
    markers: Vec<Vec<u8>>,
    skipped: Vec<String>,
    exact: PatternSet,
    canon: Option<PatternSet>,
    compressed: bool,
    /// Whole-value exact patterns by first byte (both cases for
    /// case-insensitive ones), in rank order; for the truncated-tail check.
    by_first_byte: Vec<Vec<u32>>,
    max_pattern_len: usize,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets: Vec<String> = self.names.iter().map(|n| format!("{n}=***")).collect();
        f.debug_struct("Redactor")
            .field("secrets", &secrets)
            .field("skipped", &self.skipped)
            .field("patterns", &self.exact.patterns.len())
            .field(
                "canonical_patterns",
                &self.canon.as_ref().map_or(0, |c| c.patterns.len()),
            )
            .finish()
    }
}

/// True when the value's letters are all of one case (or it has none that
/// have case): changing their case gives no other secret.
fn case_free(value: &str) -> bool {
    !(value.chars().any(char::is_lowercase) && value.chars().any(char::is_uppercase))
}

impl Redactor {
    /// Builds the matchers for `secrets` (name, value) with the default
    /// [`Options`].
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
        Self::with_options(secrets, &Options::default())
    }

    /// Like [`Redactor::new`], with `options`.
    ///
    /// # Panics
    ///
    /// As [`Redactor::new`].
    pub fn with_options<I, N, V>(secrets: I, options: &Options) -> Redactor
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        match Self::try_with_options(secrets, options) {
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
        Self::try_with_options(secrets, &Options::default())
    }

    /// Like [`Redactor::with_options`] but returns an error instead of
    /// panicking.
    pub fn try_with_options<I, N, V>(secrets: I, options: &Options) -> Result<Redactor, RedactError>
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

        let mut exact = PatternSet::default();
        let mut canon = PatternSet::default();
        // Whole values of every secret first, so that a run of one value
        // that is another whole value is labelled as that value.
        let mut partials: Vec<(u32, Vec<Form>)> = Vec::new();
        for (rank, (_, value)) in active.iter().enumerate() {
            let rank = rank as u32;
            let chars = value.chars().count();
            let ci = options.ignore_case || case_free(value);
            let whole = forms::forms(value, ci);
            let deep = chars >= MIN_CANONICAL_CHARS;
            if options.canonical && deep {
                canon.add_canonical(rank, &whole);
            }
            exact.add(rank, whole);
            if let (Some(p), true) = (options.partial_chars, deep) {
                let n = p.min(chars / 2).max(MIN_CANONICAL_CHARS);
                partials.push((rank, forms::partial_windows(value, n, ci)));
            }
        }
        for (rank, windows) in partials {
            if options.canonical {
                canon.add_canonical(rank, &windows);
            }
            exact.add(rank, windows);
        }

        let mut by_first_byte: Vec<Vec<u32>> = vec![Vec::new(); 256];
        for (i, p) in exact.patterns.iter().enumerate().filter(|(_, p)| !p.partial) {
            let b = p.bytes[0];
            if p.case_insensitive && b.is_ascii_alphabetic() {
                by_first_byte[b.to_ascii_lowercase() as usize].push(i as u32);
                by_first_byte[b.to_ascii_uppercase() as usize].push(i as u32);
            } else {
                by_first_byte[b as usize].push(i as u32);
            }
        }

        exact.build()?;
        let canon = if canon.patterns.is_empty() {
            None
        } else {
            canon.build()?;
            Some(canon)
        };
        let max_pattern_len = exact
            .patterns
            .iter()
            .chain(canon.iter().flat_map(|c| c.patterns.iter()))
            .map(|p| p.bytes.len())
            .max()
            .unwrap_or(0);
        let markers = active
            .iter()
            .map(|(n, _)| format!("[REDACTED:{n}]").into_bytes())
            .collect();
        Ok(Redactor {
            names: active.into_iter().map(|(n, _)| n).collect(),
            markers,
            skipped,
            exact,
            canon,
            compressed: options.compressed,
            by_first_byte,
            max_pattern_len,
        })
    }

    /// Names of credentials too short to redact (sorted, deduplicated).
    pub fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    /// True when no credential is redacted (redaction is the identity).
    pub fn is_empty(&self) -> bool {
        self.exact.patterns.is_empty()
    }

    /// Length of the longest searched pattern, in bytes.
    pub fn max_pattern_len(&self) -> usize {
        self.max_pattern_len
    }

    /// Redacts `input`.
    pub fn redact(&self, input: &[u8]) -> Redacted {
        let mut counts = Counts::new(self.names.len());
        let mut bytes = Vec::with_capacity(input.len());
        if self.is_empty() {
            bytes.extend_from_slice(input);
        } else {
            let mut comps = Vec::new();
            self.components(input, &mut comps, Some(&mut blobs::BUDGET_PER_CALL.clone()));
            self.emit(input, &merge(comps), &mut bytes, &mut counts, None);
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
    /// any searched whole-value form, the fragment is replaced by that
    /// credential's marker — or, when the marker would not fit under `cap`,
    /// dropped. This tail check runs even when the output fits under `cap`,
    /// because the input itself may have been cut by an upstream capture
    /// limit (a value split at the end of a capped pipe). The returned flag is
    /// true when the redacted output was longer than `cap`. Nothing else is
    /// appended; the caller adds its own truncation notice. Counts cover only
    /// the markers present in the returned bytes.
    pub fn redact_truncate(&self, input: &[u8], cap: usize) -> (Redacted, bool) {
        let mut all = self.redact_outputs(&[input], &[], cap);
        all.pop().unwrap_or_default()
    }

    /// Redacts several output streams of one execution (stdout and stderr),
    /// each as [`Redactor::redact_truncate`] does, and also as one stream:
    /// the pieces in `order` (the order they were written; what it leaves
    /// out of a stream follows at the end), and every stream's end followed
    /// by another's start. A value split between streams is replaced, piece
    /// by piece, in each of them.
    pub fn redact_outputs(
        &self,
        streams: &[&[u8]],
        order: &[Piece],
        cap: usize,
    ) -> Vec<(Redacted, bool)> {
        let mut budget = blobs::BUDGET_PER_CALL;
        let mut comps: Vec<Vec<Component>> = vec![Vec::new(); streams.len()];
        if !self.is_empty() {
            for (s, c) in streams.iter().zip(comps.iter_mut()) {
                self.components(s, c, Some(&mut budget));
            }
            if streams.len() > 1 {
                self.across(streams, &interleaved(streams, order), &mut comps);
                let k = self.junction_window();
                for a in 0..streams.len() {
                    for b in (0..streams.len()).filter(|&b| b != a) {
                        let (la, lb) = (streams[a].len(), streams[b].len());
                        let pieces = [(a, la - la.min(k), la), (b, 0, lb.min(k))];
                        self.across(streams, &pieces, &mut comps);
                    }
                }
            }
        }
        streams
            .iter()
            .zip(comps)
            .map(|(s, c)| self.truncated(s, &merge(c), cap))
            .collect()
    }

    // ----- internals -------------------------------------------------------

    /// Every match in `buf`: exact forms, the canonical view, and (with a
    /// budget) values inside compressed blobs.
    fn components(&self, buf: &[u8], out: &mut Vec<Component>, budget: Option<&mut u64>) {
        self.exact.hits(buf, |c| out.push(c));
        if let Some(canon) = &self.canon {
            let view = canon::view(buf);
            canon.hits(&view.text, |c| {
                let (start, end) = view.orig_range(c.start, c.end);
                out.push(Component { start, end, ..c });
            });
        }
        if let (true, Some(budget)) = (self.compressed, budget) {
            for blob in blobs::inflated(buf, budget) {
                let mut inner = Vec::new();
                self.components(&blob.data, &mut inner, None);
                let best = inner
                    .into_iter()
                    .reduce(|a, b| if b.better_than(&a) { b } else { a });
                if let Some(best) = best {
                    out.push(Component {
                        start: blob.start,
                        end: blob.end,
                        ..best
                    });
                }
            }
        }
    }

    /// Bytes of each stream joined around a junction: a match across one in
    /// the canonical view may span more than its pattern (dropped whitespace,
    /// escapes).
    fn junction_window(&self) -> usize {
        4 * self.max_pattern_len + 256
    }

    /// Scans `pieces` (stream, start, end) joined; every match that crosses
    /// from one stream into another is added, piece by piece, to the
    /// components of each stream it touches.
    fn across(
        &self,
        streams: &[&[u8]],
        pieces: &[(usize, usize, usize)],
        comps: &mut [Vec<Component>],
    ) {
        if pieces.iter().filter(|p| p.2 > p.1).count() < 2 {
            return;
        }
        let mut joined = Vec::new();
        let mut starts = Vec::with_capacity(pieces.len());
        for &(s, a, b) in pieces {
            starts.push(joined.len());
            joined.extend_from_slice(&streams[s][a..b]);
        }
        let mut found = Vec::new();
        self.components(&joined, &mut found, None);
        for c in found {
            let first = starts.partition_point(|&s| s <= c.start) - 1;
            let last = starts.partition_point(|&s| s < c.end) - 1;
            let touched = &pieces[first..=last];
            if touched.iter().all(|p| p.0 == touched[0].0) {
                continue; // inside one stream: its own scan has it
            }
            for (i, &(s, a, b)) in pieces.iter().enumerate().take(last + 1).skip(first) {
                let lo = c.start.max(starts[i]) - starts[i] + a;
                let hi = c.end.min(starts[i] + (b - a)) - starts[i] + a;
                if hi > lo {
                    comps[s].push(Component {
                        start: lo,
                        end: hi,
                        ..c
                    });
                }
            }
        }
    }

    /// Redacts `input` with its merged `spans`, then cuts to `cap` (see
    /// [`Redactor::redact_truncate`]).
    fn truncated(&self, input: &[u8], spans: &[Span], cap: usize) -> (Redacted, bool) {
        let mut counts = Counts::new(self.names.len());
        let mut out = Vec::with_capacity(input.len());
        let mut markers = Vec::new();
        self.emit(input, spans, &mut out, &mut counts, Some(&mut markers));
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
        let mut counts = Counts::new(self.names.len());
        for m in markers.iter().filter(|m| m.end <= c) {
            counts.add(m.secret, m.partial);
        }
        if let Some(secret) = tail_marker {
            out.extend_from_slice(&self.markers[secret as usize]);
            counts.add(secret, false);
        }
        (
            Redacted {
                bytes: out,
                counts: self.counts_to_vec(&counts),
            },
            truncated,
        )
    }

    /// Appends `buf` to `out` with `spans` (all within `buf`) replaced.
    fn emit(
        &self,
        buf: &[u8],
        spans: &[Span],
        out: &mut Vec<u8>,
        counts: &mut Counts,
        mut markers: Option<&mut Vec<MarkerPos>>,
    ) {
        let mut pos = 0;
        for s in spans {
            out.extend_from_slice(&buf[pos..s.start]);
            let start = out.len();
            let secret = s.best.secret;
            out.extend_from_slice(&self.markers[secret as usize]);
            if let Some(m) = markers.as_deref_mut() {
                m.push(MarkerPos {
                    start,
                    end: out.len(),
                    secret,
                    partial: s.best.partial,
                });
            }
            counts.add(secret, s.best.partial);
            pos = s.end;
        }
        out.extend_from_slice(&buf[pos..]);
    }

    fn counts_to_vec(&self, counts: &Counts) -> Vec<RedactionCount> {
        let mut by_name: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (i, (&c, &p)) in counts.all.iter().zip(&counts.partial).enumerate() {
            if c > 0 {
                let e = by_name.entry(self.names[i].as_str()).or_default();
                e.0 += c;
                e.1 += p;
            }
        }
        by_name
            .into_iter()
            .map(|(name, (count, partial))| RedactionCount {
                name: name.to_string(),
                count,
                partial,
            })
            .collect()
    }

    /// Earliest `s` in `[floor, c - 4]` such that `out[s..c]` is a prefix of
    /// some whole-value pattern; returns the (possibly base64-widened) start
    /// and secret.
    fn find_fragment(&self, out: &[u8], floor: usize, c: usize) -> Option<(usize, u32)> {
        if c < floor + MIN_SECRET_CHARS || self.max_pattern_len == 0 {
            return None;
        }
        let lo = floor.max(c.saturating_sub(self.max_pattern_len));
        for s in lo..=c - MIN_SECRET_CHARS {
            let tail = &out[s..c];
            for &pi in &self.by_first_byte[out[s] as usize] {
                let p = &self.exact.patterns[pi as usize];
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

/// Markers per secret rank, and how many of them replaced partial runs.
struct Counts {
    all: Vec<u64>,
    partial: Vec<u64>,
}

impl Counts {
    fn new(n: usize) -> Self {
        Counts {
            all: vec![0; n],
            partial: vec![0; n],
        }
    }

    fn add(&mut self, secret: u32, partial: bool) {
        self.all[secret as usize] += 1;
        if partial {
            self.partial[secret as usize] += 1;
        }
    }
}

impl PatternSet {
    fn add(&mut self, secret: u32, forms: Vec<Form>) {
        for form in forms {
            let key = if form.case_insensitive {
                form.bytes.to_ascii_lowercase()
            } else {
                form.bytes.clone()
            };
            if form.bytes.len() < MIN_SECRET_CHARS || !self.seen.insert((key, form.case_insensitive)) {
                continue;
            }
            self.patterns.push(Pattern {
                bytes: form.bytes,
                secret,
                case_insensitive: form.case_insensitive,
                b64_left: form.b64_left,
                b64_right: form.b64_right,
                partial: form.partial,
            });
        }
    }

    /// Adds the canonical text of each form (what it looks like in the view).
    fn add_canonical(&mut self, secret: u32, forms: &[Form]) {
        let canonical = forms
            .iter()
            .map(|f| {
                let bytes = canon::canonical(&f.bytes);
                // A decoded escape (`%41`) spells the value itself, whose
                // case matters unless the value's own form says otherwise.
                let case_insensitive = f.case_insensitive && bytes == f.bytes;
                Form {
                    bytes,
                    case_insensitive,
                    ..*f
                }
            })
            .collect();
        self.add(secret, canonical);
    }

    fn build(&mut self) -> Result<(), RedactError> {
        self.cs = build_matcher(&self.patterns, false)?;
        self.ci = build_matcher(&self.patterns, true)?;
        self.seen = HashSet::new();
        Ok(())
    }

    /// Every match in `buf`, widened by base64 boundary characters.
    fn hits(&self, buf: &[u8], mut f: impl FnMut(Component)) {
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
                f(Component {
                    start,
                    end,
                    len: hit.end() - hit.start(),
                    secret: p.secret,
                    partial: p.partial,
                });
            }
        }
    }
}

/// Overlapping components merged into sorted, disjoint spans.
fn merge(mut comps: Vec<Component>) -> Vec<Span> {
    comps.sort_unstable_by_key(|c| (c.start, c.end, c.secret));
    let mut spans: Vec<Span> = Vec::new();
    for c in comps {
        if let Some(last) = spans.last_mut() {
            if c.start < last.end {
                last.end = last.end.max(c.end);
                if c.better_than(&last.best) {
                    last.best = c;
                }
                continue;
            }
        }
        spans.push(Span {
            start: c.start,
            end: c.end,
            best: c,
        });
    }
    spans
}

/// `order` as (stream, start, end) ranges, clamped to each stream, adjacent
/// pieces of one stream joined, and whatever it leaves out appended.
fn interleaved(streams: &[&[u8]], order: &[Piece]) -> Vec<(usize, usize, usize)> {
    let mut pos = vec![0usize; streams.len()];
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    let push = |s: usize, a: usize, b: usize, out: &mut Vec<(usize, usize, usize)>| {
        if b <= a {
            return;
        }
        match out.last_mut() {
            Some(last) if last.0 == s && last.2 == a => last.2 = b,
            _ => out.push((s, a, b)),
        }
    };
    for p in order.iter().filter(|p| p.stream < streams.len()) {
        let a = pos[p.stream];
        let b = (a + p.len).min(streams[p.stream].len());
        push(p.stream, a, b, &mut out);
        pos[p.stream] = b;
    }
    for (s, stream) in streams.iter().enumerate() {
        push(s, pos[s], stream.len(), &mut out);
    }
    out
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
