//! Redaction against the transforms a script can apply before printing a
//! value, in the real sandbox: each test runs a script that hides the value
//! one way, then tries to recover the value from what was stored (the
//! transform undone, every 8-character run of the value looked for). And
//! ordinary text, including short common substrings of values, is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::io::Read;

use base64::Engine as _;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use airlock::config::Config;

const SECRET_VALUE: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
/// A value whose letters are all of one case: matched in any case.
const HEX_TOKEN: &str = "9f86d081884c7d659a2feaa0c55ad015";

type Env = common::sandboxed::Sandboxed;

async fn env_with(cfg: impl FnOnce(&mut Config)) -> Env {
    Env::start_with(cfg)
        .await
        .expect("these tests need the real sandbox")
}

fn zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// `\uXXXX` escapes decoded.
fn unescape_u(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("\\u") {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 2..i + 6).unwrap_or("");
        match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
            Some(c) if hex.len() == 4 => {
                out.push(c);
                rest = &rest[i + 6..];
            }
            _ => {
                out.push_str("\\u");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What a reader of `text` could turn it back into: the text itself; with
/// whitespace and zero-width characters removed and NFKC applied; with
/// `\uXXXX` decoded; and every base64 run (line breaks joined) decoded, and
/// gunzipped when it is gzip.
fn readings(text: &str) -> Vec<String> {
    let squeezed: String = text
        .nfkc()
        .filter(|c| !c.is_whitespace() && !zero_width(*c))
        .collect();
    let mut out = vec![text.to_string(), unescape_u(text), squeezed];
    let joined: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    for run in joined.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c))) {
        let run = run.trim_end_matches('=');
        for skip in 0..4.min(run.len()) {
            let body = &run[skip..];
            let body = &body[..body.len() / 4 * 4];
            let Ok(bytes) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(body) else {
                continue;
            };
            out.push(String::from_utf8_lossy(&bytes).into_owned());
            let mut unzipped = Vec::new();
            if flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut unzipped)
                .is_ok()
            {
                out.push(String::from_utf8_lossy(&unzipped).into_owned());
            }
        }
    }
    out
}

/// The stored output of execution `v`, one string per field, plus stdout and
/// stderr joined both ways.
fn stored_texts(v: &Value) -> Vec<String> {
    let field = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let (out, err) = (field("stdout"), field("stderr"));
    vec![
        out.clone(),
        err.clone(),
        field("result"),
        field("error"),
        format!("{out}{err}"),
        format!("{err}{out}"),
    ]
}

/// No reading of any stored field holds 8 consecutive characters of `value`
/// (in any letter case).
fn assert_unrecoverable(v: &Value, value: &str) {
    let chars: Vec<char> = value.chars().collect();
    for text in stored_texts(v) {
        for reading in readings(&text) {
            let lower = reading.to_lowercase();
            for w in chars.windows(8) {
                let w: String = w.iter().collect::<String>().to_lowercase();
                assert!(
                    !lower.contains(&w),
                    "{w:?} recoverable from {text:?} (read as {reading:?})"
                );
            }
        }
    }
}

async fn run_and_check(env: &Env, key: &str, script: &str, value: &str) -> Value {
    let v = env.run(key, script).await;
    assert_eq!(v["status"], "completed", "{v}");
    let stdout = v["stdout"].as_str().unwrap();
    assert!(stdout.contains("[REDACTED:"), "nothing redacted: {v}");
    assert!(
        stdout.contains("<end>"),
        "the script's own text is kept: {v}"
    );
    assert_unrecoverable(&v, value);
    v
}

#[tokio::test]
async fn spacing_and_invisible_characters_are_seen_through() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    for (what, expr) in [
        ("one character per line", "'\\n'.join(v)"),
        ("space-separated", "' '.join(v)"),
        ("CRLF between characters", "'\\r\\n'.join(v)"),
        ("zero-width spaces", "'\\u200b'.join(v)"),
        (
            "zero-width joiners and BOMs",
            "''.join(c + '\\u200d\\ufeff' for c in v)",
        ),
        (
            "fullwidth",
            "''.join(chr(ord(c) - 0x21 + 0xFF01) if '!' <= c <= '~' else c for c in v)",
        ),
    ] {
        let script = format!(
            "v = settings.get('API_KEY')\nprint('<start>')\nprint({expr})\nprint('<end>')\n"
        );
        let v = run_and_check(&env, &key, &script, SECRET_VALUE).await;
        assert!(
            v["stdout"]
                .as_str()
                .unwrap()
                .starts_with("<start>\n[REDACTED:API_KEY]"),
            "{what}: {v}"
        );
    }
}

#[tokio::test]
async fn escapes_and_wrapped_or_compressed_base64_are_decoded() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    for (what, expr) in [
        (
            "\\uXXXX in plain text",
            "''.join('\\\\u%04x' % ord(c) for c in v)",
        ),
        ("HTML entities", "''.join('&#%d;' % ord(c) for c in v)"),
        (
            "MIME base64 at 76 columns",
            "base64.encodebytes(('lorem ipsum ' * 9 + v + ' dolor' * 9).encode()).decode()",
        ),
        (
            "gzip + base64",
            "base64.b64encode(gzip.compress(v.encode())).decode()",
        ),
        (
            "zlib + MIME base64",
            "base64.encodebytes(zlib.compress(('report ' * 40 + v).encode())).decode()",
        ),
        (
            "gzip of a JSON document",
            "base64.b64encode(gzip.compress(json.dumps({'token': v, 'n': 1}).encode())).decode()",
        ),
    ] {
        let script = format!(
            "import base64, gzip, json, zlib\nv = settings.get('API_KEY')\nprint({expr})\nprint('<end>')\n"
        );
        let v = run_and_check(&env, &key, &script, SECRET_VALUE).await;
        assert!(
            v["stdout"].as_str().unwrap().contains("[REDACTED:API_KEY]"),
            "{what}: {v}"
        );
    }
}

#[tokio::test]
async fn case_free_values_in_any_case_and_others_when_the_operator_asks() {
    let env = env_with(|_| {}).await;
    let (_, key) = env
        .locked_profile("t", &[("TOKEN", HEX_TOKEN), ("API_KEY", SECRET_VALUE)])
        .await;
    let script = "t = settings.get('TOKEN')\nprint(t.upper())\nprint(t.upper()[::-1])\nprint(settings.get('API_KEY').upper())\nprint('<end>')\n";
    let v = env.run(&key, script).await;
    assert_eq!(v["status"], "completed", "{v}");
    let out = v["stdout"].as_str().unwrap();
    assert_eq!(
        out.lines().take(2).collect::<Vec<_>>(),
        ["[REDACTED:TOKEN]", "[REDACTED:TOKEN]"],
        "{v}"
    );
    // A mixed-case value's case is part of it: upper-cased, it is another
    // string, left alone by default.
    assert_eq!(
        out.lines().nth(2),
        Some(SECRET_VALUE.to_uppercase().as_str())
    );

    let env = env_with(|c| c.redact_ignore_case = true).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let script =
        "v = settings.get('API_KEY')\nprint(v.upper())\nprint(v.lower())\nprint('<end>')\n";
    run_and_check(&env, &key, script, SECRET_VALUE).await;
}

#[tokio::test]
async fn a_value_split_between_stdout_and_stderr_is_caught() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    // Three pieces, each shorter than a partial run, alternating streams in
    // the order they are written.
    let script = r#"
import sys, time
v = settings.get('API_KEY')
sys.stdout.write(v[:10]); sys.stdout.flush(); time.sleep(0.2)
sys.stderr.write(v[10:20]); sys.stderr.flush(); time.sleep(0.2)
sys.stdout.write(v[20:] + '\n<end>\n'); sys.stdout.flush()
"#;
    let v = run_and_check(&env, &key, script, SECRET_VALUE).await;
    assert!(
        v["stderr"].as_str().unwrap().contains("[REDACTED:API_KEY]"),
        "{v}"
    );
    // The pieces are gone from both streams, not only from one.
    for piece in [
        &SECRET_VALUE[..10],
        &SECRET_VALUE[10..20],
        &SECRET_VALUE[20..],
    ] {
        assert!(!v.to_string().contains(piece), "{piece} left in {v}");
    }
}

#[tokio::test]
async fn partial_values_are_redacted_and_the_admin_view_says_so() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let script = "v = settings.get('API_KEY')\nprint('prefix', v[:16])\nprint('middle', v[8:28])\nprint('<end>')\n";
    let v = run_and_check(&env, &key, script, SECRET_VALUE).await;
    assert_eq!(
        v["stdout"],
        "prefix [REDACTED:API_KEY]\nmiddle [REDACTED:API_KEY]\n<end>\n"
    );
    let id = v["execution_id"].as_str().unwrap();
    let (status, admin) = env
        .admin("GET", &format!("/api/admin/executions/{id}"), None)
        .await;
    assert!(status.is_success(), "{admin}");
    assert_eq!(
        admin["redactions"],
        serde_json::json!([{"field": "stdout", "name": "API_KEY", "count": 2, "partial": 2}])
    );
    // Shorter runs than the configured length stay (they are not the value).
    let v = env.run(&key, "print(settings.get('API_KEY')[:15])").await;
    assert_eq!(v["stdout"], format!("{}\n", &SECRET_VALUE[..15]));
}

#[tokio::test]
async fn ordinary_text_is_not_redacted() {
    let env = env_with(|_| {}).await;
    let url = "https://svc-user:Zq81-pw-77xk@db.example.internal/app";
    let (_, key) = env
        .locked_profile("t", &[("DATABASE_URL", url), ("API_KEY", SECRET_VALUE)])
        .await;
    // Text that shares short runs with the values: scheme, separators, the
    // `sk_live_` prefix, words split and spaced, base64 and gzip of other text.
    let script = r#"
import base64, gzip
lines = [
    'see https://docs.example.com and http://example.org/app',
    'user: svc, host: db.example, path: /app',
    'sk_live_ keys start like this; sk_test_ too',
    's k _ l i v e',
    'report total 1234.56 EUR on 2026-12-02',
    base64.b64encode(b'nothing secret in here at all').decode(),
    base64.b64encode(gzip.compress(b'just a compressed report')).decode(),
    '\\u0068\\u0065\\u006c\\u006c\\u006f &amp; &#119;orld',
]
print('\n'.join(lines))
"#;
    let v = env.run(&key, script).await;
    assert_eq!(v["status"], "completed", "{v}");
    let stdout = v["stdout"].as_str().unwrap();
    assert!(!stdout.contains("[REDACTED"), "{stdout}");
    assert!(stdout.contains("see https://docs.example.com"), "{stdout}");
    assert_eq!(stdout.lines().count(), 8, "{stdout}");
}
