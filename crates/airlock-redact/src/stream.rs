//! Chunked redaction whose output equals one-shot redaction.

use std::fmt;

use crate::{RedactionCount, Redactor};

/// Redacts output that arrives in chunks.
///
/// The concatenation of everything returned by [`push`](Self::push) and
/// [`finish`](Self::finish) is byte-for-byte what [`Redactor::redact`] returns
/// for the concatenated input, and [`counts`](Self::counts) after `finish`
/// equals its counts.
///
/// A tail of `max_pattern_len + 3` bytes is held back (a match can start up
/// to `max_pattern_len - 1` bytes before the end of what has been seen, and
/// base64 boundary widening looks one byte left and up to three bytes right),
/// extended back to the start of a replaced span that crosses it. To keep the
/// total work linear when chunks are tiny, nothing is emitted until at least
/// twice the hold-back is buffered.
pub struct StreamRedactor<'a> {
    redactor: &'a Redactor,
    buf: Vec<u8>,
    counts: Vec<u64>,
}

impl fmt::Debug for StreamRedactor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamRedactor")
            .field("buffered_bytes", &self.buf.len())
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl<'a> StreamRedactor<'a> {
    pub(crate) fn new(redactor: &'a Redactor) -> Self {
        StreamRedactor {
            redactor,
            buf: Vec::new(),
            counts: vec![0; redactor.secret_count()],
        }
    }

    /// Feeds a chunk; returns the redacted bytes that are now final.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let r = self.redactor;
        if r.is_empty() {
            return chunk.to_vec();
        }
        self.buf.extend_from_slice(chunk);
        let hold = r.holdback();
        if self.buf.len() < 2 * hold {
            return Vec::new();
        }
        let spans = r.scan(&self.buf);
        let h = self.buf.len() - hold;
        // Everything before `h` is final, except a span that crosses `h`:
        // future bytes may merge into it, so stop at its start.
        let mut p = h;
        let mut n_final = 0;
        for s in &spans {
            if s.start >= h {
                break;
            }
            if s.end > h {
                p = s.start;
                break;
            }
            n_final += 1;
        }
        let mut out = Vec::with_capacity(p + 64);
        r.emit_counted(
            &self.buf[..p],
            &spans[..n_final],
            &mut out,
            &mut self.counts,
        );
        self.buf.drain(..p);
        out
    }

    /// Flushes the held-back tail. The stream may be reused afterwards, but
    /// matches never span a `finish`.
    pub fn finish(&mut self) -> Vec<u8> {
        let r = self.redactor;
        let buf = std::mem::take(&mut self.buf);
        if r.is_empty() {
            return buf;
        }
        let spans = r.scan(&buf);
        let mut out = Vec::with_capacity(buf.len() + 64);
        r.emit_counted(&buf, &spans, &mut out, &mut self.counts);
        out
    }

    /// Replacements emitted so far (cumulative over all pushes), by name.
    pub fn counts(&self) -> Vec<RedactionCount> {
        self.redactor.counts_to_vec(&self.counts)
    }

    /// Bytes currently held back.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
