//! Small, display-ready shapes the templates render: timestamps, durations,
//! profile states, query strings. Keeping formatting here keeps templates
//! free of logic and makes it testable.

use chrono::{DateTime, Utc};

use crate::catalog::ProfileView;

/// A timestamp: machine-readable for `<time datetime>` (the script shows it in
/// the browser's time zone) and a UTC fallback text.
#[derive(Clone)]
pub struct Ts {
    pub iso: String,
    pub text: String,
}

pub fn ts(t: DateTime<Utc>) -> Ts {
    Ts {
        iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        text: t.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

pub fn ts_opt(t: Option<DateTime<Utc>>) -> Option<Ts> {
    t.map(ts)
}

/// `1234` → `1.23 s`, `56` → `56 ms`, none → `—`.
pub fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.2} s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The one state badge a profile shows, most severe first.
pub fn profile_state(p: &ProfileView) -> &'static str {
    if p.revoked {
        "revoked"
    } else if p.expired {
        "expired"
    } else if p.locked {
        "locked"
    } else {
        "unlocked"
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `?k=v&...` from the non-empty pairs (empty string when none).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A percentage with one decimal.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(None), "—");
        assert_eq!(duration(Some(56)), "56 ms");
        assert_eq!(duration(Some(1234)), "1.23 s");
        assert_eq!(duration(Some(125_000)), "2m 05s");
    }

    #[test]
    fn query_strings() {
        assert_eq!(query(&[("a", ""), ("b", "")]), "");
        assert_eq!(
            query(&[("profile", "p1"), ("status", ""), ("from", "2026-01-02")]),
            "?profile=p1&from=2026-01-02"
        );
        assert_eq!(url_encode("a b&c=<d>"), "a%20b%26c%3D%3Cd%3E");
    }
}
