//! Redaction of credential values from untrusted output.
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
//! A matcher of strings can only find what it knows how to spell. A script
//! that wants to exfiltrate a secret can always out-encode a fixed list of
//! encodings: XOR with a constant, a Caesar shift other than ROT13,
//! every other character, bzip2, emitting it as timing or as the length of a
//! list, or sending it over the network before any output exists. No scanner
//! of output can stop that. The real controls
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
//! (shorter ones are reported by [`Redactor::skipped`] and left alone), its
//! *exact forms*:
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
//! For values of at least [`MIN_CANONICAL_CHARS`] characters (with
//! [`Options::canonical`], the default), the same forms are searched in the
//! *canonical view* of the output instead: whitespace and zero-width
//! characters dropped, NFKC applied, `\uXXXX`, `\xNN`, `%NN` and HTML
//! character references decoded, with every view byte mapped back to the
//! original bytes (module `canon`). That catches a value spaced out, one
//! character per line, with zero-width characters inserted, in fullwidth
//! forms, escaped in plain text, or base64 wrapped in MIME lines. Where an
//! escape took in the edge of a form, the original is searched around it.
//!
//! Also, by default: gzip / zlib data written as base64 is inflated (bounded)
//! and searched; values whose letters are all of one case match in any case
//! ([`Options::ignore_case`] for every value); and every run of
//! [`Options::partial_chars`] consecutive characters of a value (at most half
//! the value, at least [`MIN_CANONICAL_CHARS`]) is replaced too, counted in
//! [`RedactionCount::partial`].
//!
//! Overlapping matches (of one or several credentials) are merged into one
//! replaced span, so no part of any matched value survives. A merged span is
//! labelled with the credential whose match in it is best: a whole value over
//! a partial run, then the longer match, then the longer value, then the
//! lexicographically smaller name. One marker is one replacement in the
//! counts.
//!
//! # API
//!
//! * [`Redactor::new`] / [`Redactor::with_options`] build the matchers once
//!   per execution (module `matcher`: a q-gram filter over every pattern; run
//!   time is linear in the input).
//! * [`Redactor::redact`] works on bytes (output need not be UTF-8);
//!   [`Redactor::redact_str`] is the `&str` convenience.
//! * [`Redactor::redact_truncate`] redacts, then cuts to a byte cap without
//!   splitting a marker or a UTF-8 character and without leaving a trailing
//!   prefix of any searched form.
//! * [`Redactor::redact_outputs`] does that for several streams of one
//!   execution (stdout, stderr) and also scans them as one, so that a value
//!   split between them is caught.
//! * Every call reports [`RedactionCount`]s per credential name. Values never
//!   appear in counts, in `Debug` output or in errors.
//!
//! # Known limits
//!
//! Anything not listed above is not caught: encryption, XOR, other
//! compression (raw deflate included) or encodings, nested encodings other
//! than JSON in JSON, runs shorter than the partial length, and values of
//! fewer than [`MIN_CANONICAL_CHARS`] characters in anything but their exact
//! forms. Letter case matters for values with letters of both cases, unless
//! [`Options::ignore_case`]. A credential *name* is printed in the marker and
//! is therefore assumed not to be secret.

#![forbid(unsafe_code)]

mod blobs;
mod canon;
mod forms;
mod matcher;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;

use forms::{is_b64_char, Form};
use matcher::{Flags, Matcher};

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

/// The exact forms of `value` (bytes, matched in any ASCII case), for the
/// throughput benchmark's baseline: the Aho-Corasick matcher over these
/// forms that Airlock used before the canonical one. Secret material.
#[doc(hidden)]
pub fn exact_forms_for_benchmark(value: &str) -> Vec<(Vec<u8>, bool)> {
    forms::forms(value, false, false)
        .into_iter()
        .map(|f| (f.bytes, f.case_insensitive))
        .collect()
}

/// One output stream for [`Redactor::redact_outputs`].
#[derive(Clone, Copy, Debug)]
pub struct Stream<'a> {
    /// What the stream held.
    pub bytes: &'a [u8],
    /// True when a capture limit upstream cut it (its end may split a value).
    pub cut: bool,
}

/// One piece of one output stream, in the order the pieces were written
/// (see [`Redactor::redact_outputs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Index of the stream.
    pub stream: usize,
    /// Bytes of that stream, following its previous piece.
    pub len: usize,
}

/// Patterns searched in one kind of text (the input, or its canonical view).
#[derive(Default)]
struct PatternSet {
    m: Matcher,
    /// Per pattern of a canonical set: how many bytes at the start and at the
    /// end of the form the view drops (a value that begins or ends with a
    /// space); a match takes in up to that many dropped original bytes.
    edges: Vec<(u32, u32)>,
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
    /// Exact forms of every value, searched in the original: everywhere
    /// without a canonical set, else only around escapes (built on first
    /// use: most output has none).
    exact: OnceLock<ExactSet>,
    /// What the exact set is built from: (value, any case, partial run).
    values: Vec<(String, bool, Option<usize>)>,
    /// Exact forms of the values too short for the canonical view, searched
    /// in the whole original when there is a canonical set.
    short: PatternSet,
    /// Canonical forms of the other values, searched in the canonical view.
    canon: Option<PatternSet>,
    compressed: bool,
    max_pattern_len: usize,
    /// Bytes around an escape searched for exact forms: no exact form is
    /// longer than twelve bytes per byte of its value.
    exact_reach: usize,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets: Vec<String> = self.names.iter().map(|n| format!("{n}=***")).collect();
        f.debug_struct("Redactor")
            .field("secrets", &secrets)
            .field("skipped", &self.skipped)
            .field("patterns", &self.exact.get().map_or(0, |e| e.set.m.len()))
            .field(
                "canonical_patterns",
                &self.canon.as_ref().map_or(0, |c| c.m.len()),
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

        let mut values = Vec::with_capacity(active.len());
        let values_max_len = active.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        let mut short = PatternSet::default();
        let mut canon = PatternSet::default();
        for (rank, (_, value)) in active.iter().enumerate() {
            let rank = rank as u32;
            let chars = value.chars().count();
            let ci = options.ignore_case || case_free(value);
            // The canonical view needs the value's canonical text to be long
            // enough, too (a value that is mostly whitespace is not).
            // (with its escapes decoded, or with only its whitespace dropped).
            let canonical_value = canon::canonical(value.as_bytes());
            let squeezed = canon::squeezed(value.as_bytes());
            let long = |b: &[u8]| String::from_utf8_lossy(b).chars().count() >= MIN_CANONICAL_CHARS;
            let deep = chars >= MIN_CANONICAL_CHARS && (long(&canonical_value) || long(&squeezed));
            let run = options
                .partial_chars
                .filter(|_| deep)
                .map(|p| p.min(chars / 2).max(MIN_CANONICAL_CHARS));
            values.push((value.clone(), ci, run));
            if !options.canonical {
                continue;
            }
            if deep {
                let left = canon.add_whole(rank, &forms::forms(value, ci, true), true);
                // A form the view would shrink below a pattern's length is
                // searched as it is, everywhere.
                let _ = short.add_whole(rank, &left, false);
                if let Some(n) = run {
                    canon.add_runs(rank, &canonical_value, n, ci);
                }
                // A value holding something like an escape, spaced out: the
                // spaces keep the view from decoding it.
                if squeezed != canonical_value {
                    let form = forms::Form::cased(squeezed.clone(), ci);
                    let _ = canon.add_whole(rank, &[form], false);
                    if let Some(n) = run {
                        canon.add_runs(rank, &squeezed, n, ci);
                    }
                }
            } else {
                let _ = short.add_whole(rank, &forms::forms(value, ci, false), false);
            }
        }
        let exact = OnceLock::new();
        if !options.canonical {
            let _ = exact.set(exact_set(&values));
        }
        short.build();
        let canon = if options.canonical && !values.is_empty() {
            canon.build();
            Some(canon)
        } else {
            None
        };

        // Every exact form is at most a few times its value's length, and the
        // canonical ones no longer.
        let max_pattern_len = [exact.get().map(|e| &e.set), Some(&short), canon.as_ref()]
            .into_iter()
            .flatten()
            .map(|s| s.m.max_len())
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
            values,
            short,
            canon,
            compressed: options.compressed,
            max_pattern_len,
            exact_reach: 12 * values_max_len + 4,
        })
    }

    /// Names of credentials too short to redact (sorted, deduplicated).
    pub fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    /// True when no credential is redacted (redaction is the identity).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
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
        let stream = Stream {
            bytes: input,
            cut: true,
        };
        let mut all = self.redact_outputs(&[stream], &[], cap);
        all.pop().unwrap_or_default()
    }

    /// Redacts several output streams of one execution (stdout and stderr),
    /// each as [`Redactor::redact_truncate`] does, and also as one stream:
    /// the pieces in `order` (the order they were written; what it leaves
    /// out of a stream follows at the end), and every stream's end followed
    /// by another's start. A value split between streams is replaced, piece
    /// by piece, in each of them. The truncated-tail check runs on a stream
    /// only when it was cut: by `cap`, or upstream ([`Stream::cut`]).
    pub fn redact_outputs(
        &self,
        streams: &[Stream<'_>],
        order: &[Piece],
        cap: usize,
    ) -> Vec<(Redacted, bool)> {
        // Outputs are stored as text: what is not UTF-8 becomes U+FFFD first,
        // so that what is searched is what will be stored (a value holding
        // U+FFFD cannot be spelled by invalid bytes).
        let texts: Vec<Lossy<'_>> = streams.iter().map(|s| lossy(s.bytes)).collect();
        let bytes: Vec<&[u8]> = texts.iter().map(|(t, _)| t.as_ref()).collect();
        let order = remap_order(order, streams, &texts);
        let order = order.as_slice();
        let mut budget = blobs::BUDGET_PER_CALL;
        let mut comps: Vec<Vec<Component>> = vec![Vec::new(); streams.len()];
        if !self.is_empty() {
            for (s, c) in bytes.iter().zip(comps.iter_mut()) {
                self.components(s, c, Some(&mut budget));
            }
            if streams.len() > 1 {
                self.across(&bytes, &interleaved(&bytes, order), &mut comps);
                let k = self.junction_window();
                for a in 0..bytes.len() {
                    for b in (0..bytes.len()).filter(|&b| b != a) {
                        let (la, lb) = (bytes[a].len(), bytes[b].len());
                        let pieces = [(a, la - la.min(k), la), (b, 0, lb.min(k))];
                        self.across(&bytes, &pieces, &mut comps);
                    }
                }
            }
        }
        streams
            .iter()
            .zip(bytes.iter().zip(comps))
            .map(|(s, (text, c))| self.truncated(text, &merge(c), cap, s.cut))
            .collect()
    }

    // ----- internals -------------------------------------------------------

    fn exact(&self) -> &ExactSet {
        self.exact.get_or_init(|| exact_set(&self.values))
    }

    /// Every match in `buf`: exact forms, the canonical view, and (with a
    /// budget) values inside compressed blobs.
    fn components(&self, buf: &[u8], out: &mut Vec<Component>, budget: Option<&mut u64>) {
        match &self.canon {
            None => self.exact().set.hits(buf, 0, out),
            Some(canon) => {
                // The view holds every exact form too, except where an escape
                // took in a form's first or last bytes: search around each
                // escape in the original.
                let view = canon::view(buf);
                canon.hits_in_view(&view, out);
                self.short.hits(buf, 0, out);
                let reach = self.exact_reach;
                let mut windows: Vec<(usize, usize)> = Vec::new();
                for &(a, b) in &view.escapes {
                    let (a, b) = (a.saturating_sub(reach), (b + reach).min(buf.len()));
                    match windows.last_mut() {
                        Some(w) if a <= w.1 => w.1 = w.1.max(b),
                        _ => windows.push((a, b)),
                    }
                }
                for (a, b) in windows {
                    self.exact().set.hits(&buf[a..b], a, out);
                }
            }
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
    fn truncated(&self, input: &[u8], spans: &[Span], cap: usize, cut: bool) -> (Redacted, bool) {
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
            let fragment = match cut || truncated {
                true => self.find_fragment(&out, floor, c),
                false => None,
            };
            match fragment {
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
        let lo = floor.max(c.saturating_sub(self.exact_reach));
        for s in lo..=c - MIN_SECRET_CHARS {
            let tail = &out[s..c];
            let exact = self.exact();
            for &pi in &exact.by_first_byte[out[s] as usize] {
                let p = exact.set.m.pat(pi);
                let bytes = exact.set.m.bytes(p);
                if bytes.len() < tail.len() {
                    continue;
                }
                let head = &bytes[..tail.len()];
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
    /// Adds whole-value forms; with `canonical`, their canonical text (what
    /// they look like in the canonical view). Returns the forms too short to
    /// add (in canonical text: the caller searches them as they are).
    fn add_whole(&mut self, secret: u32, forms: &[Form], canonical: bool) -> Vec<Form> {
        let mut left = Vec::new();
        for f in forms {
            let (bytes, case_insensitive, edges) = if canonical && canon::is_plain(&f.bytes) {
                (f.bytes.clone(), f.case_insensitive, (0, 0))
            } else if canonical {
                let c = canon::canonical(&f.bytes);
                // A decoded escape (`%41`) spells the value itself, whose case
                // matters unless the value's own form says otherwise.
                let ci = f.case_insensitive && c == f.bytes;
                (c, ci, canon::dropped_edges(&f.bytes))
            } else {
                (f.bytes.clone(), f.case_insensitive, (0, 0))
            };
            let flags = Flags {
                case_insensitive,
                b64_left: f.b64_left,
                b64_right: f.b64_right,
                partial: false,
            };
            if self.m.add(&bytes, secret, flags) {
                self.edges.push(edges);
            } else if canonical {
                left.push(f.clone());
            }
        }
        left
    }

    /// Adds every run of `n` characters of `text` as a partial pattern.
    fn add_runs(&mut self, secret: u32, text: &[u8], n: usize, ci: bool) {
        let off = self.m.store(text);
        for (a, b) in forms::char_windows(text, n) {
            self.m.add_at(
                off + a as u32,
                b - a,
                secret,
                Flags {
                    case_insensitive: ci,
                    partial: true,
                    ..Flags::default()
                },
            );
            self.edges.push((0, 0));
        }
    }

    fn build(&mut self) {
        self.m.build();
    }

    /// Every match in `buf`, widened by base64 boundary characters.
    fn hits(&self, buf: &[u8], offset: usize, out: &mut Vec<Component>) {
        self.m.find(buf, |hit| {
            let p = self.m.pat(hit.pat);
            let (start, end) = widen(buf, hit.start, hit.end, p);
            out.push(Component {
                start: start + offset,
                end: end + offset,
                len: hit.end - hit.start,
                secret: p.secret,
                partial: p.partial,
            });
        });
    }

    /// Every match in the canonical `view`, as original ranges.
    fn hits_in_view(&self, view: &canon::View, out: &mut Vec<Component>) {
        self.m.find(&view.text, |hit| {
            let p = self.m.pat(hit.pat);
            let (a, b) = widen(&view.text, hit.start, hit.end, p);
            let (lead, trail) = self.edges[hit.pat as usize];
            let (start, end) = view.orig_range_taking(a, b, lead as usize, trail as usize);
            out.push(Component {
                start,
                end,
                len: hit.end - hit.start,
                secret: p.secret,
                partial: p.partial,
            });
        });
    }
}

/// `[start, end)` widened by the base64 boundary characters `p` allows.
fn widen(buf: &[u8], mut start: usize, mut end: usize, p: &matcher::Pat) -> (usize, usize) {
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
    (start, end)
}

/// The exact set, and its whole-value patterns by first byte (both cases for
/// case-insensitive ones) for the truncated-tail check.
struct ExactSet {
    set: PatternSet,
    by_first_byte: Vec<Vec<u32>>,
}

/// The exact forms of every value (and their partial runs), built.
fn exact_set(values: &[(String, bool, Option<usize>)]) -> ExactSet {
    let mut set = PatternSet::default();
    for (rank, (value, ci, run)) in values.iter().enumerate() {
        set.add_whole(rank as u32, &forms::forms(value, *ci, false), false);
        if let Some(n) = *run {
            set.add_runs(rank as u32, value.as_bytes(), n, *ci);
        }
    }
    set.build();
    let mut by_first_byte: Vec<Vec<u32>> = vec![Vec::new(); 256];
    for (i, p) in set.m.patterns().filter(|(_, p)| !p.partial) {
        let b = set.m.bytes(p)[0];
        if p.case_insensitive && b.is_ascii_alphabetic() {
            by_first_byte[b.to_ascii_lowercase() as usize].push(i);
            by_first_byte[b.to_ascii_uppercase() as usize].push(i);
        } else {
            by_first_byte[b as usize].push(i);
        }
    }
    ExactSet { set, by_first_byte }
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

/// A stream as text, and where its bytes moved (see [`lossy`]).
type Lossy<'a> = (std::borrow::Cow<'a, [u8]>, Vec<(usize, usize)>);

/// `bytes` with every ill-formed UTF-8 sequence replaced by U+FFFD, as
/// `String::from_utf8_lossy` does, and the (original offset, new offset) of
/// every change, in order.
fn lossy(bytes: &[u8]) -> Lossy<'_> {
    if std::str::from_utf8(bytes).is_ok() {
        return (std::borrow::Cow::Borrowed(bytes), Vec::new());
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut map = Vec::new();
    for chunk in bytes.utf8_chunks() {
        out.extend_from_slice(chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
            let orig_end = chunk.valid().as_ptr() as usize - bytes.as_ptr() as usize
                + chunk.valid().len()
                + chunk.invalid().len();
            map.push((orig_end, out.len()));
        }
    }
    (std::borrow::Cow::Owned(out), map)
}

/// An original offset of a stream, in its lossy text.
fn moved(map: &[(usize, usize)], at: usize) -> usize {
    let i = map.partition_point(|&(o, _)| o <= at);
    match i {
        0 => at,
        _ => map[i - 1].1 + (at - map[i - 1].0),
    }
}

/// `order` with its lengths measured in the lossy texts.
fn remap_order(order: &[Piece], streams: &[Stream<'_>], texts: &[Lossy<'_>]) -> Vec<Piece> {
    let mut pos = vec![0usize; streams.len()];
    order
        .iter()
        .filter(|p| p.stream < streams.len())
        .map(|p| {
            let map = &texts[p.stream].1;
            let start = pos[p.stream];
            let end = (start + p.len).min(streams[p.stream].bytes.len());
            pos[p.stream] = end;
            Piece {
                stream: p.stream,
                len: moved(map, end).saturating_sub(moved(map, start)),
            }
        })
        .collect()
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
