//! Input records: what a recording session keeps of each HTTP answer, and a replay
//! that serves answers from an earlier execution's record instead of the network.
//!
//! Requests are matched to recorded answers by method, host, port and the SHA-256
//! of the path with its query (as sent upstream, credentials substituted), the n-th
//! such request getting the n-th recorded answer. Request bodies are not compared.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::policy::Target;

/// Answers of more than this are kept truncated (their hash still covers all of it).
pub const DEFAULT_MAX_ANSWER: usize = 1024 * 1024;
/// Bytes of bodies one execution's record keeps; later answers keep hashes only.
pub const DEFAULT_MAX_RECORDED: u64 = 8 * 1024 * 1024;

/// What a session keeps of each HTTP answer ([`crate::EgressConfig::record`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Record {
    /// Status only (logged for every answer).
    #[default]
    Off,
    /// Status and the SHA-256 of the body as the script received it. To see inside
    /// HTTPS, every allowed `CONNECT` is intercepted (with [`crate::EgressConfig::tls`];
    /// without it, tunnels stay tunnels and record only their bytes).
    Hashes,
    /// As [`Record::Hashes`], and the answers themselves ([`CapturedAnswer`]), each up
    /// to `per_answer` bytes of body and all of them up to `per_execution` bytes.
    Bodies {
        per_answer: usize,
        per_execution: u64,
    },
}

impl Record {
    /// Hashes, or more.
    pub fn is_on(self) -> bool {
        self != Record::Off
    }

    /// The bodies kept by default.
    pub fn bodies() -> Record {
        Record::Bodies {
            per_answer: DEFAULT_MAX_ANSWER,
            per_execution: DEFAULT_MAX_RECORDED,
        }
    }
}

/// Which request an answer belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    pub method: String,
    /// The target host as the proxy checked it (lowercase name or IP).
    pub host: String,
    pub port: u16,
    /// Hex SHA-256 of the path and query as sent upstream.
    pub target_sha256: String,
}

impl AnswerKey {
    pub(crate) fn new(method: &str, target: &Target, path_and_query: &str) -> AnswerKey {
        AnswerKey {
            method: method.to_string(),
            host: target.host.to_string(),
            port: target.port,
            target_sha256: hex::encode(Sha256::digest(path_and_query.as_bytes())),
        }
    }
}

/// One HTTP answer as a session that keeps bodies saw it reach the script (after the
/// hook's rewrite). Its headers and body come from the upstream: redact before
/// storing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedAnswer {
    pub key: AnswerKey,
    pub status: u16,
    /// Response headers (hop-by-hop ones gone), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False when the body was longer than the record keeps: `body` is its start.
    pub complete: bool,
}

/// The answers a replay serves, each once, in the order they were recorded per key.
#[derive(Debug)]
pub struct ReplaySource {
    /// The execution whose record this is (named in refusals).
    of: String,
    answers: parking_lot::Mutex<HashMap<AnswerKey, VecDeque<CapturedAnswer>>>,
}

/// Why a request of a replay got no recorded answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unserved {
    /// No (more) answers for this request in the record.
    NotRecorded,
    /// Its body was longer than the record keeps.
    Truncated,
}

impl ReplaySource {
    pub fn new(of: impl Into<String>, answers: impl IntoIterator<Item = CapturedAnswer>) -> Self {
        let mut map: HashMap<AnswerKey, VecDeque<CapturedAnswer>> = HashMap::new();
        for a in answers {
            map.entry(a.key.clone()).or_default().push_back(a);
        }
        ReplaySource {
            of: of.into(),
            answers: parking_lot::Mutex::new(map),
        }
    }

    /// The execution replayed.
    pub fn of(&self) -> &str {
        &self.of
    }

    /// Takes the next recorded answer for `key`.
    pub(crate) fn take(&self, key: &AnswerKey) -> Result<CapturedAnswer, Unserved> {
        let mut answers = self.answers.lock();
        let answer = answers
            .get_mut(key)
            .and_then(VecDeque::pop_front)
            .ok_or(Unserved::NotRecorded)?;
        if answer.complete {
            Ok(answer)
        } else {
            Err(Unserved::Truncated)
        }
    }
}

/// Gathers one answer's body while it streams, within the session's budget.
#[derive(Debug)]
pub(crate) struct Capture {
    pub(crate) key: AnswerKey,
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    body: Vec<u8>,
    per_answer: usize,
    complete: bool,
}

impl Capture {
    pub(crate) fn new(
        key: AnswerKey,
        status: u16,
        headers: &hyper::HeaderMap,
        per_answer: usize,
    ) -> Capture {
        Capture {
            key,
            status,
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: Vec::new(),
            per_answer,
            complete: true,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        if !self.complete {
            return;
        }
        if self.body.len() + data.len() > self.per_answer {
            let room = self.per_answer - self.body.len();
            self.body.extend_from_slice(&data[..room]);
            self.complete = false;
        } else {
            self.body.extend_from_slice(data);
        }
    }

    /// The answer, its body charged to `recorded` (the session's bytes kept so far,
    /// at most `per_execution`): one that does not fit keeps no body.
    pub(crate) fn finish(
        mut self,
        recorded: &std::sync::atomic::AtomicU64,
        per_execution: u64,
    ) -> CapturedAnswer {
        use std::sync::atomic::Ordering;
        let n = self.body.len() as u64;
        let before = recorded.fetch_add(n, Ordering::Relaxed);
        if before + n > per_execution {
            recorded.fetch_sub(n, Ordering::Relaxed);
            self.body.clear();
            self.complete = false;
        }
        CapturedAnswer {
            key: self.key,
            status: self.status,
            headers: self.headers,
            body: self.body,
            complete: self.complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> AnswerKey {
        AnswerKey::new("GET", &Target::new("Api.Example.com", 443).unwrap(), path)
    }

    fn answer(path: &str, body: &str, complete: bool) -> CapturedAnswer {
        CapturedAnswer {
            key: key(path),
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
            complete,
        }
    }

    #[test]
    fn serves_each_answer_once_in_order_per_request() {
        let src = ReplaySource::new(
            "exe_1",
            [
                answer("/a?x=1", "first", true),
                answer("/b", "b", true),
                answer("/a?x=1", "second", true),
                answer("/big", "cut", false),
            ],
        );
        assert_eq!(src.take(&key("/a?x=1")).unwrap().body, b"first");
        assert_eq!(src.take(&key("/a?x=1")).unwrap().body, b"second");
        assert_eq!(src.take(&key("/a?x=1")), Err(Unserved::NotRecorded));
        assert_eq!(src.take(&key("/a?x=2")), Err(Unserved::NotRecorded));
        assert_eq!(src.take(&key("/b")).unwrap().body, b"b");
        assert_eq!(src.take(&key("/big")), Err(Unserved::Truncated));
        assert_eq!(key("/a").host, "api.example.com");
    }

    #[test]
    fn bodies_are_bounded_per_answer_and_per_execution() {
        let recorded = std::sync::atomic::AtomicU64::new(0);
        let mut c = Capture::new(key("/"), 200, &hyper::HeaderMap::new(), 5);
        c.push(b"abc");
        c.push(b"defg");
        let a = c.finish(&recorded, 8);
        assert_eq!((a.body.as_slice(), a.complete), (&b"abcde"[..], false));
        let mut c = Capture::new(key("/"), 200, &hyper::HeaderMap::new(), 5);
        c.push(b"xyz");
        assert!(c.finish(&recorded, 8).complete, "5 + 3 fits in 8");
        let mut c = Capture::new(key("/"), 200, &hyper::HeaderMap::new(), 5);
        c.push(b"q");
        let a = c.finish(&recorded, 8);
        assert!(
            a.body.is_empty() && !a.complete,
            "over the execution's budget"
        );
    }
}
