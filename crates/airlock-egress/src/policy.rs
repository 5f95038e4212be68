//! Policy: `allowed_hosts` patterns and the check of a target against them (names
//! and ports only; addresses are judged after the proxy's own DNS lookup).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::addresses::canonical;

/// Ports a host pattern without `:port` allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

// ---------------------------------------------------------------------------
// Policy: allowed_hosts patterns
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// `api.example.com`
    Exact(String),
    /// `*.example.com`: strict subdomains of `example.com`.
    Subdomains(String),
    /// `10.0.0.1`, `[::1]`
    Ip(IpAddr),
}

/// One parsed `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    host: HostMatch,
    /// `None`: the [`DEFAULT_PORTS`].
    port: Option<u16>,
    text: String,
}

impl HostRule {
    /// Parses one entry as normalised by `validate::host_patterns` (lowercase).
    pub fn parse(pattern: &str) -> Option<HostRule> {
        let text = pattern.trim().to_ascii_lowercase();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (addr, tail) = rest.split_once(']')?;
            let ip: Ipv6Addr = addr.parse().ok()?;
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')?
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)?,
                ),
            };
            (HostMatch::Ip(IpAddr::V6(ip)), port)
        } else {
            let (h, port) = match text.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)),
                None => (text.as_str(), None),
            };
            let host = if let Some(d) = h.strip_prefix("*.") {
                if d.is_empty() || d.parse::<Ipv4Addr>().is_ok() {
                    return None;
                }
                HostMatch::Subdomains(d.trim_end_matches('.').to_string())
            } else if let Ok(ip) = h.parse::<Ipv4Addr>() {
                HostMatch::Ip(IpAddr::V4(ip))
            } else if h.is_empty() {
                return None;
            } else {
                HostMatch::Exact(h.trim_end_matches('.').to_string())
            };
            (host, port)
        };
        Some(HostRule { host, port, text })
    }

    /// Whether this rule covers `target` (host and port).
    pub fn matches(&self, target: &Target) -> bool {
        self.host_matches(target) && self.port_ok(target.port)
    }

    fn port_ok(&self, port: u16) -> bool {
        match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        }
    }

    fn host_matches(&self, target: &Target) -> bool {
        match (&self.host, &target.host) {
            (HostMatch::Exact(h), TargetHost::Name(n)) => h == n,
            (HostMatch::Subdomains(d), TargetHost::Name(n)) => n
                .strip_suffix(d.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
            (HostMatch::Ip(a), TargetHost::Ip(b)) => canonical(*a) == canonical(*b),
            _ => false,
        }
    }

    /// Whether this rule pins the target: an explicit `:port` or an IP address.
    pub fn is_pinned(&self) -> bool {
        self.port.is_some() || matches!(self.host, HostMatch::Ip(_))
    }

    /// Whether this rule names `ip` itself (an explicit listing, which may unlock a
    /// non-public address).
    pub(crate) fn names_ip(&self, ip: IpAddr, port: u16) -> bool {
        matches!(self.host, HostMatch::Ip(a) if canonical(a) == canonical(ip)) && self.port_ok(port)
    }
}

// ---------------------------------------------------------------------------
// TCP destinations: `tcp://host:port`
// ---------------------------------------------------------------------------

/// The prefix that makes an `allowed_hosts` entry a raw TCP destination.
pub const TCP_SCHEME: &str = "tcp://";

/// TCP destinations one profile may list (each is a listener in every execution).
pub const MAX_TCP_DESTINATIONS: usize = 16;

/// One `tcp://host:port` entry: a destination reached with raw TCP (databases, caches,
/// anything that is not HTTP), under its own name and port inside the sandbox. Names
/// only, or IPv4 loopback literals: the sandbox maps a name to an address of its own
/// loopback where the server listens, and an address outside `127.0.0.0/8` would have
/// no route there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpDestination {
    host: TargetHost,
    port: u16,
    text: String,
}

impl TcpDestination {
    /// Parses `tcp://host:port` (case-insensitive); `None` for anything else.
    pub fn parse(entry: &str) -> Option<TcpDestination> {
        let text = entry.trim().to_ascii_lowercase();
        let rest = text.strip_prefix(TCP_SCHEME)?;
        let (h, p) = rest.rsplit_once(':')?;
        let port = p.parse::<u16>().ok().filter(|p| *p > 0)?;
        if h.starts_with('[') || h.starts_with("*.") || h.contains('/') {
            return None;
        }
        let target = Target::new(h, port)?;
        match target.host {
            TargetHost::Ip(IpAddr::V4(ip)) if ip.is_loopback() => {}
            TargetHost::Ip(_) => return None,
            TargetHost::Name(_) => {}
        }
        Some(TcpDestination {
            host: target.host,
            port,
            text,
        })
    }

    /// The host as the script writes it (a name, or a loopback address).
    pub fn host(&self) -> &TargetHost {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The entry as listed (`tcp://db.internal:5432`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the forwarder connects: the entry names this host exactly, so (as an
    /// exact `allowed_hosts` entry does) it may resolve to a non-public address.
    pub fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// The `tcp://` entries of a profile's `allowed_hosts`, in order (at most
    /// [`MAX_TCP_DESTINATIONS`]; the API refuses more on the way in).
    pub fn from_allowed_hosts(allowed: &Option<Vec<String>>) -> Vec<TcpDestination> {
        allowed
            .iter()
            .flatten()
            .filter_map(|e| TcpDestination::parse(e))
            .take(MAX_TCP_DESTINATIONS)
            .collect()
    }
}

/// Whether an `allowed_hosts` entry is a `tcp://` destination (valid or not).
pub fn is_tcp_entry(entry: &str) -> bool {
    entry
        .trim()
        .get(..TCP_SCHEME.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(TCP_SCHEME))
}

/// A profile's egress policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// `allowed_hosts: null`: any public host, any port.
    Unrestricted,
    /// A list of patterns (never empty here: `[]` means no egress listener at all).
    Allow(Vec<HostRule>),
}

impl Policy {
    /// From a profile's `allowed_hosts`; `None` for `Some([])` (no network).
    /// Entries that do not parse are ignored (the API validates them on the way in).
    pub fn from_allowed_hosts(allowed: &Option<Vec<String>>) -> Option<Policy> {
        match allowed {
            None => Some(Policy::Unrestricted),
            Some(list) if list.is_empty() => None,
            // `tcp://` entries are destinations of their own (listeners), never
            // HTTP(S) rules; a list of only those still gives the execution a network.
            Some(list) => Some(Policy::Allow(
                list.iter()
                    .filter(|p| !is_tcp_entry(p))
                    .filter_map(|p| HostRule::parse(p))
                    .collect(),
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Policy::Unrestricted => "unrestricted (any public host)".into(),
            Policy::Allow(rules) if rules.is_empty() => {
                "no HTTP(S) host: the profile lists only tcp:// destinations".into()
            }
            Policy::Allow(rules) => rules
                .iter()
                .map(|r| r.text.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Where a request wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: TargetHost,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    /// Lowercase, no trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for TargetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetHost::Name(n) => f.write_str(n),
            TargetHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            TargetHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Target {
    /// Parses the host part of a request (`Host`-style, brackets around IPv6).
    pub fn new(host: &str, port: u16) -> Option<Target> {
        let h = host.trim().to_ascii_lowercase();
        let h = h.trim_end_matches('.');
        if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return inner.parse::<Ipv6Addr>().ok().map(|ip| Target {
                host: TargetHost::Ip(IpAddr::V6(ip)),
                port,
            });
        }
        if let Ok(ip) = h.parse::<IpAddr>() {
            return Some(Target {
                host: TargetHost::Ip(ip),
                port,
            });
        }
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        ok.then(|| Target {
            host: TargetHost::Name(h.to_string()),
            port,
        })
    }
}

/// The policy's answer before any DNS lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by `rule`; `explicit` when the rule names this exact host or IP (which
    /// may then resolve to, or be, a non-public address).
    Allowed {
        rule: String,
        explicit: bool,
    },
    Refused(String),
}

/// What the egress log records as a request's method (after redaction): a request line
/// is written by the script, so anything but a short upper-case token (`GET`,
/// `PROPFIND`, ...) is recorded as a placeholder rather than verbatim.
pub fn logged_method(method: &str) -> String {
    if (1..=16).contains(&method.len()) && method.bytes().all(|b| b.is_ascii_uppercase()) {
        method.to_string()
    } else {
        "[non-standard method]".to_string()
    }
}

/// Checks `target` against the policy (names and ports only; addresses come later).
pub fn check(policy: &Policy, target: &Target) -> Verdict {
    match policy {
        Policy::Unrestricted => Verdict::Allowed {
            rule: "unrestricted".into(),
            explicit: false,
        },
        Policy::Allow(rules) => {
            let matching: Vec<&HostRule> =
                rules.iter().filter(|r| r.host_matches(target)).collect();
            if let Some(r) = matching.iter().find(|r| r.port_ok(target.port)) {
                return Verdict::Allowed {
                    rule: r.text.clone(),
                    explicit: !matches!(r.host, HostMatch::Subdomains(_)),
                };
            }
            if !matching.is_empty() {
                return Verdict::Refused(format!(
                    "port {} is not allowed for {} (matching entries: {}; an entry without :port allows ports 80 and 443 only)",
                    target.port,
                    target.host,
                    matching.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            let what = match target.host {
                TargetHost::Ip(_) => {
                    "the IP address is not in allowed_hosts (IP addresses must be listed exactly)"
                }
                TargetHost::Name(_) => "the host is not in allowed_hosts",
            };
            Verdict::Refused(format!("{what} ({})", policy.describe()))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn logs_only_plain_method_tokens() {
        assert_eq!(super::logged_method("GET"), "GET");
        assert_eq!(super::logged_method("PROPFIND"), "PROPFIND");
        for hostile in [
            "[REDACTED:API_TOKEN]",
            "sk-live-123",
            "get",
            "",
            "ABCDEFGHIJKLMNOPQ",
        ] {
            assert_eq!(
                super::logged_method(hostile),
                "[non-standard method]",
                "{hostile}"
            );
        }
    }

    use super::*;

    fn policy(list: &[&str]) -> Policy {
        Policy::from_allowed_hosts(&Some(
            list.iter().map(std::string::ToString::to_string).collect(),
        ))
        .expect("non-empty")
    }

    fn t(host: &str, port: u16) -> Target {
        Target::new(host, port).expect("valid target")
    }

    fn allowed(p: &Policy, host: &str, port: u16) -> Option<(String, bool)> {
        match check(p, &t(host, port)) {
            Verdict::Allowed { rule, explicit } => Some((rule, explicit)),
            Verdict::Refused(_) => None,
        }
    }

    #[test]
    fn tcp_entries_are_destinations_not_http_rules() {
        let list = Some(vec![
            "tcp://DB.internal:5432".to_string(),
            "tcp://127.0.0.1:6379".to_string(),
            "api.example.com".to_string(),
        ]);
        let tcp = TcpDestination::from_allowed_hosts(&list);
        assert_eq!(tcp.len(), 2);
        assert_eq!(tcp[0].text(), "tcp://db.internal:5432");
        assert_eq!(tcp[0].host(), &TargetHost::Name("db.internal".into()));
        assert_eq!(tcp[0].port(), 5432);
        assert_eq!(
            tcp[1].target(),
            Target::new("127.0.0.1", 6379).expect("valid")
        );
        let p = Policy::from_allowed_hosts(&list).expect("network");
        assert_eq!(allowed(&p, "db.internal", 5432), None, "not an HTTP rule");
        assert!(allowed(&p, "api.example.com", 443).is_some());
        // Only tcp:// entries: the execution has a network, HTTP(S) goes nowhere.
        let only =
            Policy::from_allowed_hosts(&Some(vec!["tcp://db:5432".into()])).expect("network");
        match check(&only, &t("db", 443)) {
            Verdict::Refused(r) => assert!(r.contains("only tcp:// destinations"), "{r}"),
            v => panic!("{v:?}"),
        }
        for bad in [
            "tcp://db.internal",
            "tcp://*.internal:5432",
            "tcp://10.0.0.5:5432",
            "tcp://[::1]:5432",
            "tcp://db:0",
            "tcp://db:70000",
            "tcp://:5432",
            "tcp://db/x:5432",
            "db.internal:5432",
        ] {
            assert_eq!(TcpDestination::parse(bad), None, "{bad}");
        }
        assert!(is_tcp_entry(" TCP://db:1"));
        assert!(!is_tcp_entry("db:5432"));
    }

    #[test]
    fn empty_list_means_no_listener_and_null_means_unrestricted() {
        assert_eq!(Policy::from_allowed_hosts(&Some(vec![])), None);
        assert_eq!(
            Policy::from_allowed_hosts(&None),
            Some(Policy::Unrestricted)
        );
        assert_eq!(
            allowed(&Policy::Unrestricted, "anything.example", 8443),
            Some(("unrestricted".into(), false))
        );
    }

    #[test]
    fn exact_hosts_and_default_ports() {
        let p = policy(&["api.stripe.com"]);
        assert_eq!(
            allowed(&p, "api.stripe.com", 443),
            Some(("api.stripe.com".into(), true))
        );
        assert_eq!(
            allowed(&p, "API.Stripe.com.", 80),
            Some(("api.stripe.com".into(), true))
        );
        assert_eq!(allowed(&p, "api.stripe.com", 8443), None);
        assert_eq!(allowed(&p, "stripe.com", 443), None);
        assert_eq!(allowed(&p, "x.api.stripe.com", 443), None);
        assert_eq!(allowed(&p, "api.stripe.com.evil.com", 443), None);
        let Verdict::Refused(why) = check(&p, &t("api.stripe.com", 22)) else {
            panic!()
        };
        assert_eq!(
            why,
            "port 22 is not allowed for api.stripe.com (matching entries: api.stripe.com; an entry without :port allows ports 80 and 443 only)"
        );
        let Verdict::Refused(why) = check(&p, &t("evil.com", 443)) else {
            panic!()
        };
        assert_eq!(why, "the host is not in allowed_hosts (api.stripe.com)");
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["*.example.com"]);
        assert_eq!(
            allowed(&p, "a.example.com", 443),
            Some(("*.example.com".into(), false))
        );
        assert!(allowed(&p, "a.b.example.com", 80).is_some());
        assert_eq!(allowed(&p, "example.com", 443), None);
        assert_eq!(allowed(&p, "badexample.com", 443), None);
        assert_eq!(allowed(&p, "a.example.com", 8080), None);
        assert_eq!(allowed(&p, "a.example.com.evil.org", 443), None);
    }

    #[test]
    fn explicit_ports() {
        let p = policy(&[
            "api.local:8080",
            "*.svc.test:9000",
            "10.0.0.5:5432",
            "[::1]:7000",
        ]);
        assert!(allowed(&p, "api.local", 8080).is_some());
        assert_eq!(allowed(&p, "api.local", 443), None);
        assert!(allowed(&p, "x.svc.test", 9000).is_some());
        assert_eq!(allowed(&p, "x.svc.test", 443), None);
        assert_eq!(
            allowed(&p, "10.0.0.5", 5432),
            Some(("10.0.0.5:5432".into(), true))
        );
        assert_eq!(allowed(&p, "10.0.0.5", 5433), None);
        assert_eq!(
            allowed(&p, "[::1]", 7000),
            Some(("[::1]:7000".into(), true))
        );
        assert_eq!(allowed(&p, "[::1]", 443), None);
    }

    #[test]
    fn ip_literals_only_when_listed() {
        let p = policy(&["api.example.com", "93.184.216.34"]);
        assert!(allowed(&p, "93.184.216.34", 443).is_some());
        assert_eq!(allowed(&p, "93.184.216.35", 443), None);
        // A mapped IPv6 form of a listed IPv4 address is the same address.
        assert!(allowed(&p, "[::ffff:93.184.216.34]", 443).is_some());
        let Verdict::Refused(why) = check(&p, &t("1.1.1.1", 443)) else {
            panic!()
        };
        assert_eq!(
            why,
            "the IP address is not in allowed_hosts (IP addresses must be listed exactly) (api.example.com, 93.184.216.34)"
        );
        // A host name never matches an IP rule, nor an IP a host rule.
        let p = policy(&["*.example.com"]);
        assert_eq!(allowed(&p, "127.0.0.1", 443), None);
    }

    #[test]
    fn rules_name_ips_for_unlocking_private_addresses() {
        let r = HostRule::parse("127.0.0.2:8080").unwrap();
        assert!(r.names_ip("127.0.0.2".parse().unwrap(), 8080));
        assert!(r.names_ip("::ffff:127.0.0.2".parse().unwrap(), 8080));
        assert!(!r.names_ip("127.0.0.2".parse().unwrap(), 80));
        assert!(!HostRule::parse("localhost")
            .unwrap()
            .names_ip("127.0.0.1".parse().unwrap(), 80));
    }

    #[test]
    fn parses_patterns() {
        for bad in ["", "*.", "*.1.2.3.4", "x:0", "x:70000", "[zz]", "[::1]x"] {
            assert_eq!(HostRule::parse(bad), None, "{bad}");
        }
        assert_eq!(
            HostRule::parse("[2001:db8::1]:443"),
            Some(HostRule {
                host: HostMatch::Ip("2001:db8::1".parse().unwrap()),
                port: Some(443),
                text: "[2001:db8::1]:443".into()
            })
        );
    }

    #[test]
    fn targets_parse_names_and_ips() {
        assert_eq!(
            Target::new("[::1]", 443),
            Some(Target {
                host: TargetHost::Ip("::1".parse().unwrap()),
                port: 443
            })
        );
        assert_eq!(
            t("Example.COM.", 80).host,
            TargetHost::Name("example.com".into())
        );
        assert_eq!(Target::new("a b", 80), None);
        assert_eq!(Target::new("", 80), None);
        assert_eq!(Target::new("x/y", 80), None);
        assert_eq!(t("[::1]", 8080).to_string(), "[::1]:8080");
    }
}
