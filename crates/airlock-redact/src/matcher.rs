//! Multi-pattern search for redaction: every occurrence (overlapping ones
//! included) of every pattern, in one pass.
//!
//! Patterns are hundreds of short byte strings per execution (every form of
//! every value, every run of a value's characters) and almost never occur,
//! while the text is log output full of the digits and letters they are made
//! of. Aho-Corasick's overlapping search with its rare-byte prefilter ran at
//! ~120 MB/s on such text here, and building its automaton took longer than
//! the search of a typical output. This matcher is a q-gram filter instead:
//! the first four bytes of each pattern (ASCII-lowercased) set one bit of a
//! small bitmap, the text is read four bytes at a time at every offset, and
//! only offsets whose four bytes hit a set bit are checked against the
//! patterns with that prefix. Building it is a sort.

/// One searched byte pattern (secret material: never printed).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pat {
    /// Where its bytes are in the arena.
    off: u32,
    len: u32,
    /// Index of the secret (its rank).
    pub secret: u32,
    pub case_insensitive: bool,
    pub b64_left: bool,
    pub b64_right: bool,
    pub partial: bool,
}

/// The flags of a pattern to add.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Flags {
    pub case_insensitive: bool,
    pub b64_left: bool,
    pub b64_right: bool,
    pub partial: bool,
}

/// A raw occurrence: `[start, end)` in the text, of pattern `pat`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub pat: u32,
}

/// Patterns, then [`Matcher::build`] to search.
#[derive(Default)]
pub(crate) struct Matcher {
    arena: Vec<u8>,
    pats: Vec<Pat>,
    /// (prefix key, pattern index), sorted; built by `build`.
    by_key: Vec<(u32, u32)>,
    /// Bitmap over hashed keys.
    bits: Vec<u64>,
    shift: u32,
}

/// Patterns are at least this long (a value has at least four characters).
pub(crate) const MIN_LEN: usize = 4;

/// The filter key of four bytes: bit 5 of every byte set, which maps an ASCII
/// letter and its other case to one key (and a few other pairs, such as `@`
/// and `` ` ``, which only costs a false hit). Equal bytes, or bytes equal
/// but for ASCII case, always have equal keys.
#[inline(always)]
fn key(x: u32) -> u32 {
    x | 0x2020_2020
}

#[inline(always)]
fn key_of(bytes: &[u8]) -> u32 {
    key(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

impl Matcher {
    /// Stores `bytes` in the arena; returns its offset (for [`Matcher::add_at`]).
    pub fn store(&mut self, bytes: &[u8]) -> u32 {
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        off
    }

    /// Adds the pattern `bytes`; false (and nothing added) when it is
    /// shorter than [`MIN_LEN`].
    pub fn add(&mut self, bytes: &[u8], secret: u32, flags: Flags) -> bool {
        if bytes.len() < MIN_LEN {
            return false;
        }
        let off = self.store(bytes);
        self.add_at(off, bytes.len(), secret, flags);
        true
    }

    /// Adds the pattern of `len` bytes stored at `off` (ignored when shorter
    /// than [`MIN_LEN`]).
    pub fn add_at(&mut self, off: u32, len: usize, secret: u32, flags: Flags) {
        if len < MIN_LEN {
            return;
        }
        self.pats.push(Pat {
            off,
            len: len as u32,
            secret,
            case_insensitive: flags.case_insensitive,
            b64_left: flags.b64_left,
            b64_right: flags.b64_right,
            partial: flags.partial,
        });
    }

    pub fn len(&self) -> usize {
        self.pats.len()
    }

    pub fn pat(&self, i: u32) -> &Pat {
        &self.pats[i as usize]
    }

    pub fn bytes(&self, p: &Pat) -> &[u8] {
        &self.arena[p.off as usize..(p.off + p.len) as usize]
    }

    pub fn patterns(&self) -> impl Iterator<Item = (u32, &Pat)> {
        self.pats.iter().enumerate().map(|(i, p)| (i as u32, p))
    }

    pub fn max_len(&self) -> usize {
        self.pats.iter().map(|p| p.len as usize).max().unwrap_or(0)
    }

    /// Builds the filter. Duplicate patterns (same bytes and case rule) are
    /// kept in order; the caller's labelling makes the first one win.
    pub fn build(&mut self) {
        let mut by_key: Vec<(u32, u32)> = self
            .pats
            .iter()
            .enumerate()
            .map(|(i, p)| (key_of(self.bytes(p)), i as u32))
            .collect();
        by_key.sort_unstable();
        // Drop duplicates (same bytes, same case rule) within each prefix
        // group, keeping the one that labels best: a whole value over a
        // partial run, then the higher-ranked secret.
        let mut kept: Vec<(u32, u32)> = Vec::with_capacity(by_key.len());
        let mut group = 0;
        for &(k, i) in &by_key {
            if kept.last().is_none_or(|&(lk, _)| lk != k) {
                group = kept.len();
            }
            let p = self.pats[i as usize];
            let twin = kept[group..].iter_mut().find(|(_, j)| {
                let q = &self.pats[*j as usize];
                q.case_insensitive == p.case_insensitive
                    && q.b64_left == p.b64_left
                    && q.b64_right == p.b64_right
                    && self.bytes(q) == self.bytes(&p)
            });
            match twin {
                Some((_, j)) => {
                    let q = self.pats[*j as usize];
                    if (!p.partial, std::cmp::Reverse(p.secret))
                        > (!q.partial, std::cmp::Reverse(q.secret))
                    {
                        *j = i;
                    }
                }
                None => kept.push((k, i)),
            }
        }
        let by_key = kept;
        // About 32 bits per distinct prefix keeps false hits near 3 %.
        let want = (by_key.len() * 32)
            .next_power_of_two()
            .clamp(1 << 12, 1 << 24);
        let log = want.trailing_zeros();
        self.shift = 32 - log;
        self.bits = vec![0u64; want / 64];
        for &(k, _) in &by_key {
            let h = self.hash(k);
            self.bits[h >> 6] |= 1 << (h & 63);
        }
        self.by_key = by_key;
    }

    #[inline(always)]
    fn hash(&self, key: u32) -> usize {
        (key.wrapping_mul(0x9E37_79B1) >> self.shift) as usize
    }

    /// Calls `f` for every occurrence of every pattern in `text`.
    pub fn find(&self, text: &[u8], mut f: impl FnMut(Hit)) {
        if self.pats.is_empty() || text.len() < MIN_LEN {
            return;
        }
        for (i, w) in text.windows(MIN_LEN).enumerate() {
            let k = key(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            let h = self.hash(k);
            if self.bits[h >> 6] & (1 << (h & 63)) != 0 {
                self.check(text, i, k, &mut f);
            }
        }
    }

    #[cold]
    fn check(&self, text: &[u8], at: usize, key: u32, f: &mut impl FnMut(Hit)) {
        let first = self.by_key.partition_point(|&(k, _)| k < key);
        for &(k, pi) in &self.by_key[first..] {
            if k != key {
                break;
            }
            let p = &self.pats[pi as usize];
            let Some(window) = text.get(at..at + p.len as usize) else {
                continue;
            };
            let bytes = self.bytes(p);
            let eq = if p.case_insensitive {
                window.eq_ignore_ascii_case(bytes)
            } else {
                window == bytes
            };
            if eq {
                f(Hit {
                    start: at,
                    end: at + p.len as usize,
                    pat: pi,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_agree_for_either_case() {
        for b in 0..=255u8 {
            let x = u32::from_le_bytes([b, b'A', b'z', 0xC3]);
            let y = u32::from_le_bytes([b.to_ascii_lowercase(), b'a', b'Z', 0xC3]);
            assert_eq!(key(x), key(y), "{b}");
        }
    }

    #[test]
    fn finds_every_overlapping_occurrence_in_both_case_rules() {
        let mut m = Matcher::default();
        m.add(b"abab", 0, Flags::default());
        m.add(b"BABA", 1, Flags::default());
        m.add(
            b"dead",
            2,
            Flags {
                case_insensitive: true,
                ..Flags::default()
            },
        );
        m.add(b"abc", 3, Flags::default()); // too short: ignored
        m.build();
        let mut hits = Vec::new();
        m.find(b"ababab DEADbeef BABA deAd", |h| {
            hits.push((h.start, h.pat))
        });
        hits.sort_unstable();
        assert_eq!(hits, [(0, 0), (2, 0), (7, 2), (16, 1), (21, 2)]);
        let mut none = Vec::new();
        m.find(b"abcabaABAB", |h| none.push(h.start));
        assert!(none.is_empty());
    }

    #[test]
    fn agrees_with_naive_search() {
        // SplitMix64 for reproducible data.
        let mut s = 7u64;
        let mut next = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let alphabet = b"abAB01";
        let text: Vec<u8> = (0..4000).map(|_| alphabet[(next() % 6) as usize]).collect();
        let mut m = Matcher::default();
        let mut pats = Vec::new();
        for i in 0..300 {
            let len = 4 + (next() % 4) as usize;
            let p: Vec<u8> = (0..len).map(|_| alphabet[(next() % 6) as usize]).collect();
            let ci = i % 3 == 0;
            m.add(
                &p,
                i,
                Flags {
                    case_insensitive: ci,
                    ..Flags::default()
                },
            );
            pats.push((p, ci));
        }
        m.build();
        let mut got = Vec::new();
        m.find(&text, |h| got.push((h.start, h.pat)));
        got.sort_unstable();
        let mut want = Vec::new();
        for (i, (p, ci)) in pats.iter().enumerate() {
            for (at, w) in text.windows(p.len()).enumerate() {
                if (*ci && w.eq_ignore_ascii_case(p)) || w == p.as_slice() {
                    want.push((at, i as u32));
                }
            }
        }
        want.sort_unstable();
        assert!(!want.is_empty());
        assert_eq!(got, want);
    }
}
