//! Unit tests of sealed credentials: substitution, scanning, refusals, response
//! rewriting and the CA's persistence.

use std::sync::Mutex;

use super::*;

fn settings(hosts: &[&str]) -> SealSettings {
    SealSettings {
        mode: airlock_store::CredentialMode::Sealed,
        hosts: hosts.iter().map(std::string::ToString::to_string).collect(),
        ..SealSettings::default()
    }
}

/// A sealer whose violations are recorded; the second value collects the names
/// of credentials whose violation revokes the profile.
fn sealer(creds: Vec<SealedValue>) -> (Sealer, Arc<Mutex<Vec<String>>>) {
    let (s, revoked, _) = sealer_reporting(creds);
    (s, revoked)
}

/// Also returns every violation reported (revoking or not).
#[allow(clippy::type_complexity)]
fn sealer_reporting(
    creds: Vec<SealedValue>,
) -> (Sealer, Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<Violation>>>) {
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (r, v) = (revoked.clone(), seen.clone());
    (
        Sealer::new(
            creds,
            &airlock_redact::Options::default(),
            Arc::new(move |violation: Violation| {
                r.lock().unwrap().extend(violation.revoke.iter().cloned());
                v.lock().unwrap().push(violation);
            }),
        ),
        revoked,
        seen,
    )
}

fn t(host: &str, port: u16) -> Target {
    Target::new(host, port).unwrap()
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn placeholders_are_fresh_and_named() {
    let a = placeholder("KEY");
    let b = placeholder("KEY");
    assert_ne!(a, b);
    assert!(a.starts_with("airlock-sealed:KEY:"));
    assert_eq!(a.len(), "airlock-sealed:KEY:".len() + 32);
}

#[test]
fn substitutes_headers_for_bound_hosts_only() {
    let c = SealedValue::new("KEY", "sk_live_123456", &settings(&["api.example.com"]));
    let ph = c.placeholder.clone();
    let (s, revoked, seen) = sealer_reporting(vec![c]);
    let mut h = headers(&[("authorization", format!("Bearer {ph}"))]);
    let mut pq = "/v1/x".to_string();
    let mut body = Some(b"{}".to_vec());
    let passed = s
        .process(
            &t("api.example.com", 443),
            true,
            "GET",
            &mut h,
            &mut pq,
            &mut body,
        )
        .unwrap();
    assert_eq!(passed.substituted, vec!["KEY".to_string()]);
    assert!(passed.rewrite_response);
    assert_eq!(h["authorization"], "Bearer sk_live_123456");

    // Another host: refused as a violation, nothing substituted.
    let mut h = headers(&[("x-anything", ph.clone())]);
    let err = s
        .process(
            &t("evil.example.com", 443),
            true,
            "GET",
            &mut h,
            &mut pq,
            &mut body,
        )
        .unwrap_err();
    assert!(err.violation);
    assert_eq!(
        err.reason,
        "sealed credential KEY appears in a request header, but its value may only be sent to api.example.com"
    );
    assert_eq!(h["x-anything"], ph.as_str());
    assert!(revoked.lock().unwrap().is_empty(), "revocation is opt-in");
    // Reported all the same (the operator is told), without a revocation.
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Violation {
            credentials: vec!["KEY".into()],
            host: "evil.example.com:443".into(),
            revoke: Vec::new(),
        }]
    );
}

#[test]
fn plain_http_substitutes_only_for_pinned_bindings() {
    let c = SealedValue::new(
        "KEY",
        "sk_live_123456",
        &settings(&[
            "api.example.com",
            "10.0.0.5",
            "svc.internal:8080",
            "tls.internal:443",
        ]),
    );
    let ph = c.placeholder.clone();
    let (s, _) = sealer(vec![c]);
    let run = |target: Target, tls: bool| {
        let mut h = headers(&[("authorization", format!("Bearer {ph}"))]);
        let r = s.process(&target, tls, "GET", &mut h, &mut "/".into(), &mut None);
        (r, h)
    };
    // A name on the default port over plain HTTP: refused, nothing substituted out.
    let (r, _) = run(t("api.example.com", 80), false);
    let err = r.unwrap_err();
    assert!(!err.violation);
    assert_eq!(
        err.reason,
        "sealed credential KEY would be sent in clear over plain HTTP to api.example.com:80: use https:// \
         (plain HTTP is substituted only for bound hosts listed with an explicit :port or as an IP address)"
    );
    // A name on 443 is HTTPS even when its port is written out.
    assert!(run(t("tls.internal", 443), false).0.is_err());
    assert!(run(t("tls.internal", 443), true).0.is_ok());
    // The same host over TLS: substituted.
    let (r, h) = run(t("api.example.com", 443), true);
    assert_eq!(r.unwrap().substituted, vec!["KEY".to_string()]);
    assert_eq!(h["authorization"], "Bearer sk_live_123456");
    // Pinned entries (IP literal, explicit port) accept plain HTTP.
    for target in [t("10.0.0.5", 80), t("svc.internal", 8080)] {
        let (r, h) = run(target, false);
        assert_eq!(r.unwrap().substituted, vec!["KEY".to_string()]);
        assert_eq!(h["authorization"], "Bearer sk_live_123456");
    }
    // Plain HTTP without the placeholder is not affected.
    let mut h = HeaderMap::new();
    assert!(s
        .process(
            &t("api.example.com", 80),
            false,
            "GET",
            &mut h,
            &mut "/".into(),
            &mut None
        )
        .is_ok());
}

#[test]
fn scans_url_and_body_including_percent_encoding_and_revokes_when_asked() {
    let mut st = settings(&["api.example.com"]);
    st.revoke_on_violation = true;
    let c = SealedValue::new("KEY", "sk_live_123456", &st);
    let ph = c.placeholder.clone();
    let (s, revoked) = sealer(vec![c]);
    let target = t("other.example.com", 80);
    let mut pq = format!("/leak?k={}", ph.replace(':', "%3A"));
    let err = s
        .process(
            &target,
            true,
            "GET",
            &mut HeaderMap::new(),
            &mut pq,
            &mut None,
        )
        .unwrap_err();
    assert!(err.violation);
    assert!(err.reason.contains("appears in the URL"), "{}", err.reason);
    assert!(err.reason.ends_with("the profile is revoked"));
    assert_eq!(*revoked.lock().unwrap(), vec!["KEY".to_string()]);

    let mut body = Some(format!("data={ph}").into_bytes());
    let err = s
        .process(
            &target,
            true,
            "POST",
            &mut HeaderMap::new(),
            &mut "/".into(),
            &mut body,
        )
        .unwrap_err();
    assert!(err.reason.contains("the request body"), "{}", err.reason);
}

#[test]
fn query_and_body_only_when_enabled_methods_and_header_respected() {
    let mut st = settings(&["api.example.com:8080"]);
    st.methods = Some(vec!["POST".into()]);
    st.header = Some("x-api-key".into());
    let c = SealedValue::new("KEY", "s3cr3t/v", &st);
    let ph = c.placeholder.clone();
    let (s, revoked) = sealer(vec![c]);
    let target = t("api.example.com", 8080);
    // Bound host, but the body is not substituted: refused, not a violation.
    let mut body = Some(ph.clone().into_bytes());
    let err = s
        .process(
            &target,
            true,
            "POST",
            &mut HeaderMap::new(),
            &mut "/".into(),
            &mut body,
        )
        .unwrap_err();
    assert!(!err.violation);
    assert!(
        err.reason.contains("the operator can allow"),
        "{}",
        err.reason
    );
    // Never in Host.
    let mut h = headers(&[("host", ph.clone())]);
    let mut st2 = st.clone();
    st2.header = None;
    st2.methods = None;
    let c2 = SealedValue::new("KEY2", "s3cr3t/w", &st2);
    let ph2 = c2.placeholder.clone();
    let (s2, _) = sealer(vec![c2]);
    h.insert("host", HeaderValue::from_str(&ph2).unwrap());
    let err = s2
        .process(&target, true, "GET", &mut h, &mut "/".into(), &mut None)
        .unwrap_err();
    assert!(!err.violation, "{}", err.reason);
    // Wrong header name.
    let mut h = headers(&[("authorization", ph.clone())]);
    assert!(s
        .process(&target, true, "POST", &mut h, &mut "/".into(), &mut None)
        .is_err());
    // Wrong method.
    let mut h = headers(&[("x-api-key", ph.clone())]);
    assert!(s
        .process(&target, true, "GET", &mut h, &mut "/".into(), &mut None)
        .is_err());
    // Right header and method.
    let mut h = headers(&[("x-api-key", ph.clone())]);
    let p = s
        .process(&target, true, "POST", &mut h, &mut "/".into(), &mut None)
        .unwrap();
    assert_eq!(h["x-api-key"], "s3cr3t/v");
    assert_eq!(p.substituted, vec!["KEY".to_string()]);
    // Port not bound (443 is not 8080): a violation.
    let mut h = headers(&[("x-api-key", ph)]);
    assert!(
        s.process(
            &t("api.example.com", 443),
            true,
            "POST",
            &mut h,
            &mut "/".into(),
            &mut None
        )
        .unwrap_err()
        .violation
    );
    assert!(revoked.lock().unwrap().is_empty());

    // With query/body substitution enabled.
    st.substitute_body = true;
    st.header = None;
    let c = SealedValue::new("KEY", "s3cr3t/v", &st);
    let ph = c.placeholder.clone();
    let (s, _) = sealer(vec![c]);
    let mut pq = format!("/x?key={ph}&a=1");
    let mut body = Some(format!("{{\"k\":\"{ph}\"}}").into_bytes());
    let p = s
        .process(
            &target,
            true,
            "POST",
            &mut HeaderMap::new(),
            &mut pq,
            &mut body,
        )
        .unwrap();
    assert_eq!(pq, "/x?key=s3cr3t%2Fv&a=1");
    assert_eq!(body.unwrap(), b"{\"k\":\"s3cr3t/v\"}".to_vec());
    assert_eq!(p.substituted, vec!["KEY".to_string()]);
}

#[test]
fn responses_are_rewritten_to_the_placeholder_and_encodings_redacted() {
    let c = SealedValue::new("KEY", "sk_live_ABCDEF123", &settings(&["api.example.com"]));
    let ph = c.placeholder.clone();
    let (s, _) = sealer(vec![c]);
    let mut body =
        b"echo: sk_live_ABCDEF123 / c2tfbGl2ZV9BQkNERUYxMjM= / 736b5f6c6976655f414243444546313233"
            .to_vec();
    let mut h = headers(&[("x-echo", "sk_live_ABCDEF123".into())]);
    s.rewrite(&mut h, &mut body);
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("sk_live_ABCDEF123"), "{text}");
    assert!(text.starts_with(&format!("echo: {ph} / ")), "{text}");
    assert!(!text.contains("c2tfbGl2ZV9BQkNERUYxMjM"), "{text}");
    assert!(
        !text.contains("736b5f6c6976655f414243444546313233"),
        "{text}"
    );
    assert_eq!(h["x-echo"], ph.as_str());
}

#[test]
fn response_header_names_carrying_a_value_are_dropped_whatever_the_case() {
    let c = SealedValue::new("KEY", "Sk_Live_AbCdEf123", &settings(&["api.example.com"]));
    let (s, _) = sealer(vec![c]);
    let mut h = HeaderMap::new();
    for name in ["x-sk_live_abcdef123", "sk_live_abcdef123-tail", "x-ok"] {
        h.insert(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    s.rewrite(&mut h, &mut Vec::new());
    let names: Vec<&str> = h.keys().map(http::HeaderName::as_str).collect();
    assert_eq!(names, vec!["x-ok"]);
}

#[test]
fn tunnels_are_intercepted_only_for_bound_hosts() {
    let c = SealedValue::new("KEY", "sk_live_123456", &settings(&["*.stripe.com"]));
    let (s, _) = sealer(vec![c]);
    assert_eq!(
        s.on_tunnel(&t("api.stripe.com", 443)).unwrap(),
        TunnelMode::Intercept
    );
    assert_eq!(
        s.on_tunnel(&t("example.com", 443)).unwrap(),
        TunnelMode::Tunnel
    );
    assert_eq!(
        s.on_tunnel(&t("api.stripe.com", 8443)).unwrap(),
        TunnelMode::Tunnel
    );
}

#[tokio::test]
async fn the_ca_persists_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let store = airlock_store::SqliteStore::open(&dir.path().join("a.db"))
        .await
        .unwrap();
    let vault = Vault::from_key(&[7u8; 32]);
    let a = load_or_create_ca(&store, &vault, None).await.unwrap();
    let b = load_or_create_ca(&store, &vault, None).await.unwrap();
    assert_eq!(a.ca_pem(), b.ca_pem());
    let key = store.meta_get(META_CA_KEY).await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&key).contains("PRIVATE KEY"));
    a.server_config("api.example.com").unwrap();
    let wrong = Vault::from_key(&[8u8; 32]);
    assert!(load_or_create_ca(&store, &wrong, None).await.is_err());
}
