//! Input rules shared by the admin and agent APIs. Every failure names the field
//! and the rule so the caller knows what to fix.

/// Input that breaks a rule. The message names the field and the rule, so the
/// caller knows what to fix; it never carries a value longer than a short excerpt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Invalid {
        Invalid(message.into())
    }
}

pub const MAX_DESCRIPTION: usize = 1000;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_HOST_PATTERNS: usize = 200;

/// Credential names: `[A-Za-z_][A-Za-z0-9_]{0,63}`.
pub fn credential_name(name: &str) -> Result<(), Invalid> {
    let mut bytes = name.bytes();
    let ok = match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
            name.len() <= 64 && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(format!(
            "name {:?} is invalid: use 1-64 characters [A-Za-z0-9_], not starting with a digit",
            truncate_for_message(name)
        )))
    }
}

pub fn description(d: &str) -> Result<(), Invalid> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Invalid::new(format!(
            "description is too long: at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(())
}

/// A free-text note between agent and operator (an agent's message, a reason, a
/// note): trimmed, empty is `None`, at most [`MAX_DESCRIPTION`] characters.
pub fn note(field: &str, text: Option<String>) -> Result<Option<String>, Invalid> {
    let text = text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if let Some(t) = &text {
        if t.chars().count() > MAX_DESCRIPTION {
            return Err(Invalid::new(format!(
                "the {field} must be at most {MAX_DESCRIPTION} characters"
            )));
        }
    }
    Ok(text)
}

pub fn value(v: &str) -> Result<(), Invalid> {
    if v.is_empty() {
        return Err(Invalid::new("value must not be empty"));
    }
    if v.len() > MAX_VALUE_BYTES {
        return Err(Invalid::new(format!(
            "value is too large: at most {MAX_VALUE_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Host patterns: `host`, `*.domain`, optional `:port`; IPv4 literals and
/// bracketed IPv6 literals allowed. Returns the normalised (lowercase) list.
pub fn host_patterns(list: &[String]) -> Result<Vec<String>, Invalid> {
    if list.len() > MAX_HOST_PATTERNS {
        return Err(Invalid::new(format!(
            "allowed_hosts has too many entries: at most {MAX_HOST_PATTERNS}"
        )));
    }
    let mut out = Vec::with_capacity(list.len());
    let mut tcp = 0;
    for raw in list {
        let p = raw.trim().to_ascii_lowercase();
        if airlock_egress::is_tcp_entry(&p) {
            if airlock_egress::TcpDestination::parse(&p).is_none() {
                return Err(Invalid::new(format!(
                    "allowed_hosts entry {:?} is invalid: a TCP destination is tcp://host:port with a host name (db.internal) or a 127.x.y.z address and a port; for another IP address give it a name the server resolves",
                    truncate_for_message(raw)
                )));
            }
            if !out.contains(&p) {
                tcp += 1;
                if tcp > airlock_egress::MAX_TCP_DESTINATIONS {
                    return Err(Invalid::new(format!(
                        "allowed_hosts has too many tcp:// destinations: at most {}",
                        airlock_egress::MAX_TCP_DESTINATIONS
                    )));
                }
                out.push(p);
            }
            continue;
        }
        if !host_pattern_ok(&p) {
            return Err(Invalid::new(format!(
                "allowed_hosts entry {:?} is invalid: use a host name (api.example.com), a wildcard subdomain (*.example.com) or an IP, optionally with :port",
                truncate_for_message(raw)
            )));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Ports of database and cache protocols, which never speak through an HTTP proxy.
const DATABASE_PORTS: [(u16, &str); 9] = [
    (5432, "PostgreSQL"),
    (3306, "MySQL"),
    (6379, "Redis"),
    (27017, "MongoDB"),
    (1433, "SQL Server"),
    (1521, "Oracle"),
    (5672, "AMQP"),
    (9042, "Cassandra"),
    (11211, "memcached"),
];

/// Refuses a plain `host:port` entry on a database port, which would only allow HTTP(S)
/// through the proxy there: the caller almost certainly meant `tcp://host:port`.
/// Checked where profiles are edited, not on import (an old export stays importable).
pub fn no_database_port_as_http(list: &[String]) -> Result<(), Invalid> {
    for p in list {
        if airlock_egress::is_tcp_entry(p) {
            continue;
        }
        let Some((_, port)) = p.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if let Some((_, what)) = DATABASE_PORTS.iter().find(|(n, _)| *n == port) {
            return Err(Invalid::new(format!(
                "allowed_hosts entry {:?} would allow HTTP(S) on port {port} ({what}), which database drivers do not speak: list it as \"tcp://{}\" to reach it with raw TCP",
                truncate_for_message(p),
                truncate_for_message(p)
            )));
        }
    }
    Ok(())
}

fn host_pattern_ok(p: &str) -> bool {
    if p.is_empty() || p.len() > 260 {
        return false;
    }
    // Bracketed IPv6 with optional port.
    if let Some(rest) = p.strip_prefix('[') {
        let Some((addr, tail)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        return tail.is_empty() || tail.strip_prefix(':').is_some_and(port_ok);
    }
    let (host, port) = match p.rsplit_once(':') {
        Some((h, port)) => (h, Some(port)),
        None => (p, None),
    };
    if let Some(port) = port {
        if !port_ok(port) {
            return false;
        }
    }
    let host = match host.strip_prefix("*.") {
        Some(h) => h,
        None => host,
    };
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return !p.starts_with("*.");
    }
    let labels: Vec<&str> = host.split('.').collect();
    !labels.is_empty()
        && host.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn port_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
}

/// An identifier from a request path, safe to echo in an error: shown only when
/// it looks like an identifier, so a pasted key secret is never reflected.
pub fn shown(id: &str) -> String {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        format!("{id:?}")
    } else {
        "(given id)".to_string()
    }
}

pub fn truncate_for_message(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["A", "_", "STRIPE_KEY", "a1_b2", &"x".repeat(64)] {
            assert!(credential_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "é", &"x".repeat(65), "A.B"] {
            assert!(credential_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        let ok = host_patterns(&[
            "API.Stripe.com".into(),
            "*.example.com".into(),
            "host:443".into(),
            "10.0.0.1".into(),
            "[::1]:8080".into(),
            "api.stripe.com".into(),
        ])
        .unwrap();
        assert_eq!(
            ok,
            vec![
                "api.stripe.com",
                "*.example.com",
                "host:443",
                "10.0.0.1",
                "[::1]:8080"
            ]
        );
        for bad in [
            "",
            "http://x.com",
            "x.com/path",
            "*",
            "*.*.com",
            "a..b",
            "x.com:0",
            "x.com:99999",
            "-a.com",
            "*.10.0.0.1",
            "[zz]",
        ] {
            assert!(host_patterns(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn tcp_destinations() {
        let ok = host_patterns(&[
            "TCP://DB.internal:5432".into(),
            "tcp://db.internal:5432".into(),
            "tcp://127.0.0.1:6379".into(),
        ])
        .unwrap();
        assert_eq!(ok, vec!["tcp://db.internal:5432", "tcp://127.0.0.1:6379"]);
        for bad in [
            "tcp://db.internal",
            "tcp://10.0.0.5:5432",
            "tcp://*.internal:5432",
        ] {
            let e = host_patterns(&[bad.to_string()]).unwrap_err();
            assert!(e.0.contains("tcp://host:port"), "{bad}: {e}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("tcp://db{i}:5432")).collect();
        assert!(host_patterns(&many).unwrap_err().0.contains("at most 16"));
        let e = no_database_port_as_http(&["db.internal:5432".into()]).unwrap_err();
        assert!(e.0.contains("tcp://db.internal:5432"), "{e}");
        assert!(no_database_port_as_http(&["api.example.com:8443".into()]).is_ok());
        assert!(no_database_port_as_http(&["tcp://db.internal:5432".into()]).is_ok());
    }
}
