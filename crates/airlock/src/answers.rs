//! Recorded answers (`record: full`): the stored form of an HTTP answer an execution
//! received, redacted like output before it is sealed with the vault
//! ([`crate::catalog::Catalog::seal_answer`]), and turned back into what a replay's
//! proxy serves.

use airlock_egress::{AnswerKey, CapturedAnswer};
use airlock_redact::Redactor;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// One recorded answer, as sealed (JSON) and as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub method: String,
    pub host: String,
    pub port: u16,
    /// The request's path without its query, redacted (for people; matching uses
    /// `target_sha256`).
    pub path: Option<String>,
    /// SHA-256 of the path and query as sent upstream.
    pub target_sha256: String,
    pub status: u16,
    /// Response headers, values redacted.
    pub headers: Vec<(String, String)>,
    /// The body, redacted, base64.
    pub body: String,
    /// False when the body was longer than the record keeps (it is not replayed).
    pub complete: bool,
    /// SHA-256 of the body as the script received it (before redaction): the
    /// egress log's `body_sha256` for this answer.
    #[serde(default)]
    pub body_sha256: Option<String>,
    /// Redaction replaced something in the headers or the body: a replay serves the
    /// masked answer, which may make it differ.
    #[serde(default)]
    pub redacted: bool,
}

impl StoredAnswer {
    /// The stored form of `a`, its headers and body redacted with the execution's
    /// redactor (a body cut at the record's limit is treated as cut: a value split at
    /// the end goes too).
    pub fn new(
        a: CapturedAnswer,
        (path, body_sha256): (Option<String>, Option<String>),
        redactor: &Redactor,
    ) -> StoredAnswer {
        let mut redacted = false;
        let headers = a
            .headers
            .into_iter()
            .map(|(k, v)| {
                let (v, counts) = redactor.redact_str(&v);
                redacted |= !counts.is_empty();
                (k, v)
            })
            .collect();
        let body = if a.complete {
            redactor.redact(&a.body)
        } else {
            redactor.redact_truncate(&a.body, a.body.len().max(1)).0
        };
        redacted |= !body.counts.is_empty();
        StoredAnswer {
            method: a.key.method,
            host: a.key.host,
            port: a.key.port,
            path: path.map(|p| redactor.redact_str(&p).0),
            target_sha256: a.key.target_sha256,
            status: a.status,
            headers,
            body: base64::engine::general_purpose::STANDARD.encode(body.bytes),
            complete: a.complete,
            body_sha256,
            redacted,
        }
    }

    /// What a replay's proxy serves (`None` when the body does not decode).
    pub fn captured(&self) -> Option<CapturedAnswer> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&self.body)
            .ok()?;
        Some(CapturedAnswer {
            key: AnswerKey {
                method: self.method.clone(),
                host: self.host.clone(),
                port: self.port,
                target_sha256: self.target_sha256.clone(),
            },
            status: self.status,
            headers: self.headers.clone(),
            body,
            complete: self.complete,
        })
    }

    /// The body as text, when it is UTF-8.
    pub fn text(&self) -> Option<String> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&self.body)
            .ok()?;
        String::from_utf8(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_stored_redacted_and_come_back_as_served() {
        let r = Redactor::new([("TOKEN", "sk_live_abcdef123456")]);
        let a = CapturedAnswer {
            key: AnswerKey {
                method: "GET".into(),
                host: "api.example.com".into(),
                port: 443,
                target_sha256: "ab".repeat(32),
            },
            status: 200,
            headers: vec![("x-echo".into(), "sk_live_abcdef123456".into())],
            body: br#"{"token":"sk_live_abcdef123456","n":1}"#.to_vec(),
            complete: true,
        };
        let s = StoredAnswer::new(
            a.clone(),
            (Some("/v1/sk_live_abcdef123456".into()), None),
            &r,
        );
        assert!(s.redacted);
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("sk_live_abcdef123456"), "{text}");
        let back = s.captured().unwrap();
        assert_eq!(back.key, a.key);
        assert!(!String::from_utf8_lossy(&back.body).contains("sk_live"));
        assert!(String::from_utf8_lossy(&back.body).contains(r#""n":1"#));
        // Nothing to mask: served byte for byte.
        let plain = CapturedAnswer {
            body: b"day,total\n1,30\n".to_vec(),
            headers: vec![],
            ..a
        };
        let s = StoredAnswer::new(plain.clone(), (None, None), &r);
        assert!(!s.redacted);
        assert_eq!(s.captured().unwrap(), plain);
    }
}
