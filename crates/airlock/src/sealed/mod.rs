//! Sealed credentials: the secret never enters the sandbox.
//!
//! Redaction is the last line of defence; a script that holds a secret can always
//! find a way to leak it (encrypt it, send one bit per request to an allowed host).
//! A `sealed` credential is never given to the script: `settings.get` returns a
//! placeholder (`airlock-sealed:NAME:<random per execution>`) and the egress proxy
//! swaps the placeholder for the real value only in requests to the hosts bound to
//! the credential (request headers always; URL query and body when the operator
//! allowed it). A placeholder on its way anywhere else is refused and recorded as a
//! violation (optionally revoking the profile). Responses from bound hosts are
//! rewritten so an echoing upstream cannot hand the value back to the script.
//!
//! HTTPS to a bound host is terminated by the proxy with a per-instance CA
//! ([`EgressTls`]): its key is sealed with the vault in the store, its certificate is
//! added to the trust bundle the sandbox sees, and the upstream side is verified
//! against the public roots (plus an operator-supplied bundle). Other hosts stay
//! tunnelled untouched.

use std::path::Path;
use std::sync::Arc;

use airlock_egress::tls::{CaMaterial, EgressTls, TlsError};
use airlock_egress::{HostRule, Passed, Refusal, RequestHook, Target, TunnelMode};
use airlock_redact::Redactor;
use airlock_store::{SealSettings, Store, Vault};
use hyper::header::{HeaderMap, HeaderValue};
use rand::RngCore;

/// The prefix every placeholder starts with.
pub const PLACEHOLDER_PREFIX: &str = "airlock-sealed:";

pub use airlock_egress::MAX_INSPECTED_BODY;

/// A fresh placeholder for one credential in one execution.
pub fn placeholder(name: &str) -> String {
    let mut r = [0u8; 16];
    rand::rng().fill_bytes(&mut r);
    format!("{PLACEHOLDER_PREFIX}{name}:{}", hex::encode(r))
}

/// One sealed credential as an execution's proxy knows it.
pub struct SealedValue {
    pub name: String,
    pub value: String,
    pub placeholder: String,
    hosts: Vec<HostRule>,
    hosts_text: Vec<String>,
    methods: Option<Vec<String>>,
    header: Option<String>,
    substitute_body: bool,
    pub revoke_on_violation: bool,
}

impl SealedValue {
    pub fn new(name: &str, value: &str, settings: &SealSettings) -> SealedValue {
        SealedValue {
            name: name.to_string(),
            value: value.to_string(),
            placeholder: placeholder(name),
            hosts: settings
                .hosts
                .iter()
                .filter_map(|h| HostRule::parse(h))
                .collect(),
            hosts_text: settings.hosts.clone(),
            methods: settings.methods.clone(),
            header: settings.header.clone(),
            substitute_body: settings.substitute_body,
            revoke_on_violation: settings.revoke_on_violation,
        }
    }

    fn bound_to(&self, target: &Target) -> bool {
        self.hosts.iter().any(|r| r.matches(target))
    }

    /// Whether the value may go to `target` over plain HTTP: only when a bound entry
    /// matching it names an explicit port or an IP address (an internal service the
    /// operator pinned), never for a name on the default ports, where plain HTTP
    /// would put the value on the wire in clear to whatever DNS answered (nor for a
    /// name on port 443, which is HTTPS however it is written).
    fn plain_http_ok(&self, target: &Target) -> bool {
        if target.port == 443 && matches!(target.host, airlock_egress::TargetHost::Name(_)) {
            return false;
        }
        self.hosts
            .iter()
            .any(|r| r.matches(target) && r.is_pinned())
    }

    fn method_ok(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x.eq_ignore_ascii_case(method)))
    }

    /// The placeholder as it appears raw or percent-encoded (`:` as `%3A`/`%3a`).
    fn forms(&self) -> [String; 3] {
        [
            self.placeholder.clone(),
            self.placeholder.replace(':', "%3A"),
            self.placeholder.replace(':', "%3a"),
        ]
    }
}

impl std::fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedValue")
            .field("name", &self.name)
            .field("hosts", &self.hosts_text)
            .finish_non_exhaustive()
    }
}

fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() || hay.len() < from.len() {
        return None;
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    let mut hit = false;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            hit = true;
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    hit.then_some(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Puts `c`'s value where its placeholder is and the operator allows it: request
/// headers (never `Host`, only the one named header when set), and with
/// `substitute_body` the URL query (percent-encoded) and the body. Whether it did.
fn substitute(
    c: &SealedValue,
    headers: &mut HeaderMap,
    path_and_query: &mut String,
    body: &mut Option<Vec<u8>>,
) -> bool {
    let (from, to) = (c.placeholder.as_bytes(), c.value.as_bytes());
    let mut hit = false;
    for (name, value) in headers.iter_mut() {
        // Never in `Host` (the proxy sets it to the real target) or a header the
        // operator did not name.
        if name == hyper::header::HOST || c.header.as_deref().is_some_and(|h| h != name.as_str()) {
            continue;
        }
        if let Some(v) = replace_bytes(value.as_bytes(), from, to) {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                *value = v;
                hit = true;
            }
        }
    }
    if c.substitute_body {
        if let Some((path, query)) = path_and_query.split_once('?') {
            let enc = percent_encode(&c.value);
            if query.contains(&c.placeholder) {
                *path_and_query = format!("{path}?{}", query.replace(&c.placeholder, &enc));
                hit = true;
            }
        }
        if let Some(b) = body.as_mut() {
            if let Some(v) = replace_bytes(b, from, to) {
                *b = v;
                hit = true;
            }
        }
    }
    hit
}

/// A sealed credential's placeholder sent where its value may not go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The credentials whose placeholders went astray.
    pub credentials: Vec<String>,
    /// Where they were sent.
    pub host: String,
    /// Those of them whose operator asked for the profile to be revoked then
    /// (empty: report only).
    pub revoke: Vec<String>,
}

/// Called on every violation (to revoke the profile when asked, and to tell the
/// operator).
pub type ViolationHandler = Arc<dyn Fn(Violation) + Send + Sync>;

/// The [`RequestHook`] of an execution with sealed credentials.
pub struct Sealer {
    creds: Vec<SealedValue>,
    redactor: Redactor,
    on_violation: ViolationHandler,
}

impl Sealer {
    pub fn new(
        creds: Vec<SealedValue>,
        redaction: &airlock_redact::Options,
        on_violation: ViolationHandler,
    ) -> Sealer {
        let redactor = Redactor::with_options(
            creds.iter().map(|c| (c.name.clone(), c.value.clone())),
            redaction,
        );
        Sealer {
            creds,
            redactor,
            on_violation,
        }
    }

    /// Substitutes and scans one request. Pure apart from the violation handler.
    pub fn process(
        &self,
        target: &Target,
        tls: bool,
        method: &str,
        headers: &mut HeaderMap,
        path_and_query: &mut String,
        body: &mut Option<Vec<u8>>,
    ) -> Result<Passed, Refusal> {
        let mut substituted = Vec::new();
        let bound: Vec<&SealedValue> = self.creds.iter().filter(|c| c.bound_to(target)).collect();
        for c in bound.iter().filter(|c| c.method_ok(method)) {
            if !substitute(c, headers, path_and_query, body) {
                continue;
            }
            if !tls && !c.plain_http_ok(target) {
                return Err(Refusal {
                    reason: format!(
                        "sealed credential {} would be sent in clear over plain HTTP to {target}: use https:// \
                         (plain HTTP is substituted only for bound hosts listed with an explicit :port or as an IP address)",
                        c.name
                    ),
                    violation: false,
                });
            }
            substituted.push(c.name.clone());
        }
        // Whatever is left must not leave: scan every header, the URL and the body.
        let astray = self.astray(headers, path_and_query, body.as_deref());
        if astray.is_empty() {
            return Ok(Passed {
                substituted,
                rewrite_response: !bound.is_empty(),
            });
        }
        Err(self.refusal(target, &astray))
    }

    /// The credentials whose placeholder (in any form) is still in the request, with
    /// where it was found first.
    fn astray(
        &self,
        headers: &HeaderMap,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Vec<(&SealedValue, &'static str)> {
        let mut astray = Vec::new();
        for c in &self.creds {
            let forms = c.forms();
            let found = |hay: &[u8]| forms.iter().any(|f| contains(hay, f.as_bytes()));
            let place = if headers
                .iter()
                .any(|(n, v)| found(n.as_str().as_bytes()) || found(v.as_bytes()))
            {
                Some("a request header")
            } else if found(path_and_query.as_bytes()) {
                Some("the URL")
            } else if body.is_some_and(found) {
                Some("the request body")
            } else {
                None
            };
            if let Some(p) = place {
                astray.push((c, p));
            }
        }
        astray
    }

    /// Why a request with placeholders left in it is refused: a violation when one
    /// went to a host it is not bound to (revoking the profile if its operator asked),
    /// else a placeholder where its host does not substitute it.
    fn refusal(&self, target: &Target, astray: &[(&SealedValue, &'static str)]) -> Refusal {
        let violators: Vec<&(&SealedValue, &str)> =
            astray.iter().filter(|(c, _)| !c.bound_to(target)).collect();
        if violators.is_empty() {
            let (c, place) = astray[0];
            return Refusal {
                reason: format!(
                    "sealed credential {} appears in {place}, where it is not substituted for this request \
                     (it is substituted in {}{} for {}{})",
                    c.name,
                    c.header.as_deref().map(|h| format!("the {h} header")).unwrap_or_else(|| "request headers".into()),
                    if c.substitute_body { ", the URL query and the body" } else { "" },
                    c.methods.as_ref().map(|m| m.join("/")).unwrap_or_else(|| "any method".into()),
                    if c.substitute_body { "" } else { "; the operator can allow the URL query and body" },
                ),
                violation: false,
            };
        }
        let revoke: Vec<String> = violators
            .iter()
            .filter(|(c, _)| c.revoke_on_violation)
            .map(|(c, _)| c.name.clone())
            .collect();
        let reason = violators
            .iter()
            .map(|(c, place)| {
                format!(
                    "sealed credential {} appears in {place}, but its value may only be sent to {}",
                    c.name,
                    if c.hosts_text.is_empty() {
                        "no host".to_string()
                    } else {
                        c.hosts_text.join(", ")
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let reason = if revoke.is_empty() {
            reason
        } else {
            format!("{reason}; the profile is revoked")
        };
        (self.on_violation)(Violation {
            credentials: violators.iter().map(|(c, _)| c.name.clone()).collect(),
            host: target.to_string(),
            revoke,
        });
        Refusal {
            reason,
            violation: true,
        }
    }

    /// Rewrites a bound host's response so it cannot hand a value back: the raw
    /// value becomes its placeholder, encoded forms become `[REDACTED:NAME]`.
    pub fn rewrite(&self, headers: &mut HeaderMap, body: &mut Vec<u8>) {
        for c in &self.creds {
            if let Some(v) = replace_bytes(body, c.value.as_bytes(), c.placeholder.as_bytes()) {
                *body = v;
            }
        }
        if !self.redactor.is_empty() {
            *body = self.redactor.redact(body).bytes;
        }
        // A header *name* cannot be rewritten to the placeholder: a name that carries a
        // value (in any case: names arrive lower-cased) or an encoded form is dropped.
        let leaking: Vec<hyper::header::HeaderName> = headers
            .keys()
            .filter(|name| self.name_leaks(name.as_str()))
            .cloned()
            .collect();
        for name in leaking {
            headers.remove(&name);
        }
        for value in headers.values_mut() {
            let mut bytes = value.as_bytes().to_vec();
            for c in &self.creds {
                if let Some(v) = replace_bytes(&bytes, c.value.as_bytes(), c.placeholder.as_bytes())
                {
                    bytes = v;
                }
            }
            let bytes = self.redactor.redact(&bytes).bytes;
            if bytes != value.as_bytes() {
                *value = HeaderValue::from_bytes(&bytes)
                    .unwrap_or_else(|_| HeaderValue::from_static("[REDACTED]"));
            }
        }
    }
}

impl Sealer {
    /// Whether a (lower-case) response header name carries a value or an encoded form.
    fn name_leaks(&self, name: &str) -> bool {
        self.creds.iter().any(|c| {
            let v = c.value.to_ascii_lowercase();
            !v.is_empty() && name.contains(&v)
        }) || (!self.redactor.is_empty()
            && self.redactor.redact(name.as_bytes()).bytes != name.as_bytes())
    }
}

fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RequestHook for Sealer {
    fn inspects_bodies(&self) -> bool {
        true
    }

    fn tcp_guard(&self) -> Vec<(String, Vec<u8>)> {
        self.creds
            .iter()
            .flat_map(|c| {
                let mut forms = c.forms().to_vec();
                forms.dedup();
                forms
                    .into_iter()
                    .map(|f| (c.name.clone(), f.into_bytes()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn on_tcp_violation(&self, name: &str, destination: &str) -> Option<String> {
        let c = self.creds.iter().find(|c| c.name == name)?;
        let revoke = c.revoke_on_violation;
        (self.on_violation)(Violation {
            credentials: vec![c.name.clone()],
            host: destination.to_string(),
            revoke: if revoke {
                vec![c.name.clone()]
            } else {
                Vec::new()
            },
        });
        revoke.then(|| "the profile is revoked".into())
    }

    fn on_request(
        &self,
        target: &Target,
        tls: bool,
        parts: &mut hyper::http::request::Parts,
        body: &mut Option<Vec<u8>>,
    ) -> Result<Passed, Refusal> {
        let mut pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let method = parts.method.to_string();
        let passed = self.process(target, tls, &method, &mut parts.headers, &mut pq, body)?;
        if let Ok(u) = pq.parse() {
            parts.uri = u;
        }
        Ok(passed)
    }

    fn on_tunnel(&self, target: &Target) -> Result<TunnelMode, Refusal> {
        Ok(if self.creds.iter().any(|c| c.bound_to(target)) {
            TunnelMode::Intercept
        } else {
            TunnelMode::Tunnel
        })
    }

    fn on_response(&self, headers: &mut HeaderMap, body: &mut Vec<u8>) {
        self.rewrite(headers, body);
    }
}

// ---------------------------------------------------------------------------
// The instance CA, kept in the store
// ---------------------------------------------------------------------------

const META_CA_CERT: &str = "egress_ca_cert";
const META_CA_KEY: &str = "egress_ca_key";
const CA_KEY_AAD: &str = "meta:egress_ca_key";

/// Loads the instance CA from the store (its key sealed by the vault), creating it
/// on first start. `extra_roots` is an optional PEM bundle trusted upstream in
/// addition to the public roots.
pub async fn load_or_create_ca(
    store: &dyn Store,
    vault: &Vault,
    extra_roots: Option<&Path>,
) -> Result<EgressTls, TlsError> {
    let ca_err = |e: &dyn std::fmt::Display| TlsError::Ca(e.to_string());
    let existing = match (
        store.meta_get(META_CA_CERT).await.map_err(|e| ca_err(&e))?,
        store.meta_get(META_CA_KEY).await.map_err(|e| ca_err(&e))?,
    ) {
        (Some(cert), Some(key)) => {
            let key = vault.open(CA_KEY_AAD, &key).map_err(|e| ca_err(&e))?;
            let key_pem = String::from_utf8(key).map_err(|e| ca_err(&e))?;
            let cert_pem = String::from_utf8(cert).map_err(|e| ca_err(&e))?;
            Some(CaMaterial { cert_pem, key_pem })
        }
        _ => None,
    };
    let ca = match existing {
        Some(x) => x,
        None => {
            let ca = CaMaterial::generate()?;
            let sealed = vault
                .seal(CA_KEY_AAD, ca.key_pem.as_bytes())
                .map_err(|e| ca_err(&e))?;
            store
                .meta_set(META_CA_KEY, &sealed)
                .await
                .map_err(|e| ca_err(&e))?;
            store
                .meta_set(META_CA_CERT, ca.cert_pem.as_bytes())
                .await
                .map_err(|e| ca_err(&e))?;
            ca
        }
    };
    EgressTls::from_pem(ca, extra_roots)
}

#[cfg(test)]
mod tests;
