use super::*;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

fn r1(name: &str, value: &str) -> Redactor {
    Redactor::new([(name, value)])
}

fn red(r: &Redactor, s: &str) -> String {
    r.redact_str(s).0
}

fn count(name: &str, count: u64) -> RedactionCount {
    RedactionCount {
        name: name.to_string(),
        count,
        partial: 0,
    }
}

#[test]
fn raw_and_counts() {
    let r = r1("STRIPE_KEY", "sk_live_abc123");
    let (out, counts) = r.redact_str("a sk_live_abc123 b sk_live_abc123sk_live_abc123 c");
    assert_eq!(
        out,
        "a [REDACTED:STRIPE_KEY] b [REDACTED:STRIPE_KEY][REDACTED:STRIPE_KEY] c"
    );
    assert_eq!(counts, vec![count("STRIPE_KEY", 3)]);
    let (out, counts) = r.redact_str("nothing here");
    assert_eq!(out, "nothing here");
    assert!(counts.is_empty());
}

#[test]
fn short_values_skipped() {
    let r = Redactor::new([("A", "abc"), ("B", ""), ("C", "abcd"), ("D", "é€")]);
    assert_eq!(r.skipped(), vec!["A", "B", "D"]);
    assert_eq!(red(&r, "abc abcd"), "abc [REDACTED:C]");
    assert!(!r.is_empty());
    let e = Redactor::new([("A", "ab")]);
    assert!(e.is_empty());
    assert_eq!(e.redact(b"ab\xff").bytes, b"ab\xff");
    let none: Vec<(String, String)> = Vec::new();
    assert!(Redactor::new(none).is_empty());
}

#[test]
fn debug_never_prints_values() {
    let r = Redactor::new([("TOKEN", "hunter2-secret"), ("PIN", "12")]);
    let d = format!("{r:?}");
    assert!(d.contains("TOKEN=***"), "{d}");
    assert!(!d.contains("hunter2"), "{d}");
    assert!(!d.contains("12"), "{d}");
}

#[test]
fn hex_all_cases() {
    let r = r1("K", "Secret!");
    let h = hex::encode("Secret!");
    let mixed: String = h
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    for form in [h.clone(), h.to_uppercase(), mixed] {
        assert_eq!(red(&r, &format!("x={form};")), "x=[REDACTED:K];");
    }
}

#[test]
fn base64_standalone_forms() {
    let v = "pa>ss?wo>rd~~"; // produces '+' and '/' in standard base64
    let r = r1("PW", v);
    for enc in [
        STANDARD.encode(v),
        STANDARD_NO_PAD.encode(v),
        URL_SAFE.encode(v),
        URL_SAFE_NO_PAD.encode(v),
    ] {
        assert_eq!(red(&r, &format!("<{enc}>")), "<[REDACTED:PW]>", "{enc}");
    }
    // Basic auth header.
    let basic = STANDARD.encode(format!("user:{v}"));
    let out = red(&r, &format!("Authorization: Basic {basic}\n"));
    assert!(out.starts_with("Authorization: Basic "));
    assert!(out.contains("[REDACTED:PW]\n"), "{out}");
    let kept = &out["Authorization: Basic ".len()..out.find('[').unwrap()];
    // Only characters depending purely on "user:" survive.
    assert!(basic.starts_with(kept));
    assert!(kept.len() <= "user:".len() * 8 / 6);
}

#[test]
fn base64_all_alignments_in_blob() {
    let v = "correct horse battery";
    let r = r1("V", v);
    for pre_len in 0..6usize {
        for post_len in 0..4usize {
            let mut data = vec![0xA5u8; pre_len];
            data.extend_from_slice(v.as_bytes());
            data.extend(std::iter::repeat_n(0x5Au8, post_len));
            for enc in [STANDARD.encode(&data), URL_SAFE_NO_PAD.encode(&data)] {
                let out = red(&r, &format!(" {enc} "));
                // Characters that depend on any bit of the value.
                let first = pre_len * 8 / 6;
                let last = ((pre_len + v.len()) * 8).div_ceil(6);
                let mut rest = &enc[last..];
                if post_len == 0 {
                    rest = rest.trim_start_matches('=');
                }
                let expect = format!(" {}[REDACTED:V]{} ", &enc[..first], rest);
                assert_eq!(out, expect, "pre={pre_len} post={post_len}");
            }
        }
    }
}

#[test]
fn base32_all_alignments_both_alphabets_any_case() {
    let v = "correct horse battery";
    let r = r1("V", v);
    for pre_len in 0..8usize {
        for post_len in 0..6usize {
            let mut data = vec![0xA5u8; pre_len];
            data.extend_from_slice(v.as_bytes());
            data.extend(std::iter::repeat_n(0x5Au8, post_len));
            for enc in [
                data_encoding::BASE32.encode(&data),
                data_encoding::BASE32HEX.encode(&data),
                data_encoding::BASE32.encode(&data).to_ascii_lowercase(),
            ] {
                let out = red(&r, &format!(" {enc} "));
                assert!(
                    out.contains("[REDACTED:V]"),
                    "pre={pre_len} post={post_len}: {out}"
                );
                // What is left decodes to no more than a few bytes of the value:
                // only the characters outside the span that depend on it stay,
                // at most one on each side.
                let first = pre_len * 8 / 5;
                let last = ((pre_len + v.len()) * 8).div_ceil(5);
                assert!(out.starts_with(&format!(" {}", &enc[..first])), "{out}");
                let kept_after = out.rsplit("[REDACTED:V]").next().unwrap_or("");
                assert!(
                    kept_after.trim_end().trim_start_matches('=').len() <= enc.len() - last,
                    "pre={pre_len} post={post_len}: {out}"
                );
            }
        }
    }
}

#[test]
fn rot13_and_utf16_forms() {
    let v = "Sk_live_Rot13Utf16";
    let r = r1("V", v);
    let rot13: String = v
        .chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a' + 13) % 26) + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A' + 13) % 26) + b'A') as char,
            c => c,
        })
        .collect();
    assert_eq!(red(&r, &format!("x {rot13} y")), "x [REDACTED:V] y");
    for le in [true, false] {
        let units: Vec<u8> = v
            .encode_utf16()
            .flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() })
            .collect();
        let hex_lower = hex::encode(&units);
        assert_eq!(red(&r, &format!("<{hex_lower}>")), "<[REDACTED:V]>");
        let hex_upper = hex_lower.to_ascii_uppercase();
        assert_eq!(red(&r, &format!("<{hex_upper}>")), "<[REDACTED:V]>");
        let mut raw = b"<".to_vec();
        raw.extend_from_slice(&units);
        raw.push(b'>');
        assert_eq!(r.redact(&raw).bytes, b"<[REDACTED:V]>".to_vec());
    }
    // Ordinary text, including words that share letters with the value, stays.
    let plain = "live updates via https://example.com, utf16 and rot13 explained";
    assert_eq!(red(&r, plain), plain);
}

#[test]
fn percent_forms() {
    let v = "p@ss w/rd&é";
    let r = r1("P", v);
    let all_upper: String = v.bytes().map(|b| format!("%{b:02X}")).collect();
    let forms = [
        "p%40ss%20w/rd%26%C3%A9".to_string(),   // quote
        "p%40ss%20w%2Frd%26%C3%A9".to_string(), // quote(safe='')
        "p%40ss+w%2Frd%26%C3%A9".to_string(),   // quote_plus
        "p%40ss+w%2frd%26%c3%a9".to_string(),   // lower-case escapes
        all_upper.clone(),
        all_upper.to_lowercase(),
    ];
    for f in forms {
        assert_eq!(
            red(&r, &format!("?q={f}&x=1")),
            "?q=[REDACTED:P]&x=1",
            "{f}"
        );
    }
}

#[test]
fn reversed() {
    let r = r1("R", "abcdéf12");
    assert_eq!(red(&r, "x 21fédcba y"), "x [REDACTED:R] y");
}

#[test]
fn json_escaped_values() {
    let v = "pa\"ss\\wörd\n😀";
    let r = r1("J", v);
    let serde_form = serde_json::to_string(&serde_json::json!({ "k": v })).unwrap();
    assert_eq!(red(&r, &serde_form), "{\"k\":\"[REDACTED:J]\"}");
    // Python json.dumps (ensure_ascii=True).
    let py = "{\"k\": \"pa\\\"ss\\\\w\\u00f6rd\\n\\ud83d\\ude00\"}";
    assert_eq!(red(&r, py), "{\"k\": \"[REDACTED:J]\"}");
    // JSON inside a JSON string.
    let inner = serde_json::to_string(&serde_json::json!({ "k": v })).unwrap();
    let outer = serde_json::to_string(&serde_json::json!({ "result": inner })).unwrap();
    let out = red(&r, &outer);
    assert!(out.contains("[REDACTED:J]"), "{out}");
    assert!(!out.contains("ss"), "{out}");
}

#[test]
fn python_bytes_repr() {
    let v = "naïve-pass";
    let r = r1("B", v);
    assert_eq!(red(&r, "b'na\\xc3\\xafve-pass'"), "b'[REDACTED:B]'");
}

#[test]
fn overlapping_and_nested_secrets() {
    // One value contains another: the longer one wins.
    let r = Redactor::new([("SHORT", "word"), ("LONG", "password123")]);
    assert_eq!(
        red(&r, "password123 word"),
        "[REDACTED:LONG] [REDACTED:SHORT]"
    );
    let (_, counts) = r.redact_str("password123 word word");
    assert_eq!(counts, vec![count("LONG", 1), count("SHORT", 2)]);

    // Partial overlap of two values: merged, nothing survives.
    let r = Redactor::new([("A", "abcdefgh"), ("B", "efghijkl")]);
    let (out, counts) = r.redact_str("-abcdefghijkl-");
    assert_eq!(out, "-[REDACTED:A]-");
    assert_eq!(counts, vec![count("A", 1)]);

    // Same value under two names: deterministic (smaller name).
    let r = Redactor::new([("ZED", "same-value"), ("ALPHA", "same-value")]);
    assert_eq!(red(&r, "same-value"), "[REDACTED:ALPHA]");
    let r = Redactor::new([("ALPHA", "same-value"), ("ZED", "same-value")]);
    assert_eq!(red(&r, "same-value"), "[REDACTED:ALPHA]");

    // Self-overlapping occurrences merge into one marker.
    let r = r1("A", "abab");
    assert_eq!(r.redact_str("xababab").0, "x[REDACTED:A]");
}

#[test]
fn non_utf8_bytes() {
    let r = r1("K", "tok-1234");
    let input = b"\xff\xfe tok-1234 \x80";
    let out = r.redact(input);
    assert_eq!(out.bytes, b"\xff\xfe [REDACTED:K] \x80");
    assert_eq!(out.counts, vec![count("K", 1)]);
}

#[test]
fn truncate_basic() {
    let r = r1("KEY", "supersecret");
    let input = b"hello supersecret world";
    let (full, cut) = r.redact_truncate(input, 1000);
    assert!(!cut);
    assert_eq!(full.bytes, b"hello [REDACTED:KEY] world");
    // Cap inside the marker: cut before it.
    for cap in 6..20 {
        let (t, cut) = r.redact_truncate(input, cap);
        assert!(cut);
        assert_eq!(t.bytes, b"hello ");
        assert!(t.counts.is_empty());
    }
    let (t, _) = r.redact_truncate(input, 21);
    assert_eq!(t.bytes, b"hello [REDACTED:KEY] ");
    assert_eq!(t.counts, vec![count("KEY", 1)]);
}

#[test]
fn truncate_never_leaves_value_prefix() {
    let r = r1("KEY", "supersecret");
    // Only a prefix of the value is in the kept part: dropped when the
    // marker does not fit.
    let input = b"0123456789 supersecXXXXXXXXXXXXXXXX";
    let (t, cut) = r.redact_truncate(input, 17);
    assert!(cut);
    assert_eq!(t.bytes, b"0123456789 ");
    assert!(t.counts.is_empty());
    // ... and replaced by the marker when it fits (hex form is long).
    let h = hex::encode("supersecret");
    let input = format!("ab {}{}", &h[..20], "z".repeat(50));
    let (t, cut) = r.redact_truncate(input.as_bytes(), 23);
    assert!(cut);
    assert_eq!(t.bytes, b"ab [REDACTED:KEY]");
    assert_eq!(t.counts, vec![count("KEY", 1)]);
    // Fragments shorter than 4 bytes are kept.
    let (t, _) = r.redact_truncate(b"0123456789 supXXXX", 14);
    assert_eq!(t.bytes, b"0123456789 sup");
}

#[test]
fn truncate_utf8_boundary() {
    let r = r1("K", "zzzzzz");
    let input = "ééééé".as_bytes(); // 10 bytes
    for cap in 0..10 {
        let (t, cut) = r.redact_truncate(input, cap);
        assert!(cut);
        assert!(t.bytes.len() <= cap);
        assert!(std::str::from_utf8(&t.bytes).is_ok());
        assert_eq!(t.bytes.len(), cap / 2 * 2);
    }
}

#[test]
fn truncate_hex_prefix_tail() {
    let r = r1("K", "secretvalue");
    let h = hex::encode_upper("secretvalue");
    for k in 0..=h.len() {
        let input = format!("{}{}", "a ".repeat(20), &h[..k]);
        for cap in [30, 40, 43, 44, 50, 52, 55, 60, 1000] {
            let (t, cut) = r.redact_truncate(input.as_bytes(), cap);
            assert_eq!(cut, r.redact(input.as_bytes()).bytes.len() > cap);
            assert!(t.bytes.len() <= cap);
            let s = String::from_utf8(t.bytes).unwrap();
            let tail = s.trim_end_matches("[REDACTED:K]");
            let tail = &tail[tail.len().min(40)..];
            assert!(tail.len() < 4, "k {k} cap {cap}: {s}");
            if s.ends_with(']') {
                assert_eq!(t.counts, vec![count("K", 1)]);
            } else {
                assert!(t.counts.is_empty());
            }
        }
    }
}

#[test]
fn counts_serialize() {
    let c = count("STRIPE_KEY", 2);
    assert_eq!(
        serde_json::to_string(&c).unwrap(),
        "{\"name\":\"STRIPE_KEY\",\"count\":2,\"partial\":0}"
    );
}

#[test]
fn error_display_has_no_values() {
    let e = RedactError {
        reason: "too big".into(),
    };
    assert_eq!(e.to_string(), "cannot build redaction matcher: too big");
}

/// The value is gone from `out` and from every transform the tests use to
/// hide it, once `out` is put back through the same transform's inverse.
fn gone(out: &str, value: &str) {
    let squeezed: String = out
        .chars()
        .filter(|c| !c.is_whitespace() && !canon_invisible(*c))
        .collect();
    for hay in [out, squeezed.as_str()] {
        let lower = hay.to_lowercase();
        for w in value.as_bytes().windows(8) {
            let w = std::str::from_utf8(w).unwrap_or("\u{0}");
            assert!(!hay.contains(w), "{w:?} survived in {out:?}");
            assert!(
                !lower.contains(&w.to_lowercase()),
                "{w:?} survived in {out:?}"
            );
        }
    }
}

fn canon_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{FEFF}' | '\u{2060}')
}

const V: &str = "tok3n-Secret-Value-42";

#[test]
fn canonical_view_catches_spacing_invisibles_and_fullwidth() {
    let r = r1("TOKEN", V);
    let one_per_line: String = V.chars().map(|c| format!("{c}\n")).collect();
    let spaced: String = V.chars().map(|c| format!("{c} ")).collect();
    let zero_width: String = V.chars().map(|c| format!("{c}\u{200B}")).collect();
    let fullwidth: String = V
        .chars()
        .map(|c| char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap())
        .collect();
    let crlf: String = V.chars().map(|c| format!("{c}\r\n")).collect();
    for hidden in [one_per_line, spaced, zero_width, fullwidth, crlf] {
        let (out, counts) = r.redact_str(&format!("before\n{hidden}after"));
        gone(&out, V);
        assert!(out.starts_with("before\n[REDACTED:TOKEN]"), "{out:?}");
        assert!(out.ends_with("after"), "{out:?}");
        assert_eq!(counts, vec![count("TOKEN", 1)]);
    }
}

#[test]
fn canonical_view_decodes_escapes() {
    let r = r1("TOKEN", V);
    let u: String = V.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    let html_dec: String = V.chars().map(|c| format!("&#{};", c as u32)).collect();
    let html_hex: String = V.chars().map(|c| format!("&#x{:X};", c as u32)).collect();
    let xs: String = V.bytes().map(|b| format!("\\x{b:02x}")).collect();
    let half: String = V
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                format!("%{:02X}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect();
    for hidden in [u, html_dec, html_hex, xs, half] {
        let out = red(&r, &format!("<p>{hidden}</p>"));
        assert_eq!(out, "<p>[REDACTED:TOKEN]</p>", "{hidden}");
    }
}

#[test]
fn mime_wrapped_base64_is_caught() {
    let r = r1("TOKEN", V);
    let body = format!("{}{V}{}", "lorem ipsum ".repeat(9), " dolor".repeat(7));
    for engine in [&STANDARD, &URL_SAFE] {
        let enc = engine.encode(&body);
        let wrapped = enc
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        let out = red(&r, &wrapped);
        assert!(out.contains("[REDACTED:TOKEN]"), "{out}");
        let joined: String = out.split("[REDACTED:TOKEN]").collect::<Vec<_>>().join("");
        let joined: String = joined.chars().filter(|c| !c.is_whitespace()).collect();
        // What is left decodes (in its pieces) to nothing of the value.
        for part in out.split("[REDACTED:TOKEN]") {
            let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
            for skip in 0..4 {
                let s = &p[skip.min(p.len())..];
                let s = &s[..s.len() / 4 * 4];
                if let Ok(d) = engine.decode(s) {
                    gone(&String::from_utf8_lossy(&d), V);
                }
            }
        }
        assert!(!joined.is_empty());
    }
}

#[test]
fn case_free_values_match_in_any_case() {
    let hex_token = "9f86d081884c7d659a2feaa0c55ad015";
    let r = Redactor::new([("HEX", hex_token), ("MIXED", "AbCdEfGhIj-mixed")]);
    let out = red(
        &r,
        &format!("{} and abcdefghij-mixed", hex_token.to_uppercase()),
    );
    assert_eq!(out, "[REDACTED:HEX] and abcdefghij-mixed");
    // The operator may ask for any case for every value.
    let opts = Options {
        ignore_case: true,
        ..Options::default()
    };
    let r = Redactor::with_options([("MIXED", "AbCdEfGhIj-mixed")], &opts);
    assert_eq!(red(&r, "ABCDEFGHIJ-MIXED!"), "[REDACTED:MIXED]!");
}

#[test]
fn compressed_base64_blobs_are_caught() {
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;
    let r = r1("TOKEN", V);
    let payload = format!("{{\"key\": \"{V}\", \"n\": 1}}");
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(payload.as_bytes()).unwrap();
    let mut zl = ZlibEncoder::new(Vec::new(), Compression::default());
    zl.write_all(payload.as_bytes()).unwrap();
    for blob in [gz.finish().unwrap(), zl.finish().unwrap()] {
        let enc = STANDARD.encode(&blob);
        let (out, counts) = r.redact_str(&format!("blob={enc}\n"));
        assert_eq!(out, "blob=[REDACTED:TOKEN]\n");
        assert_eq!(counts, vec![count("TOKEN", 1)]);
    }
    // Without the value inside, the blob stays.
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(b"nothing to see here, nothing at all")
        .unwrap();
    let enc = STANDARD.encode(gz.finish().unwrap());
    assert_eq!(red(&r, &enc), enc);
}

#[test]
fn partial_runs_are_redacted_and_reported() {
    let v = "sk_live_51HxQ2eKz9mVb7RtY3pLw0Nc";
    let r = r1("STRIPE", v);
    let (out, counts) = r.redact_str(&format!("prefix {} suffix {}", &v[..16], &v[10..]));
    assert_eq!(out, "prefix [REDACTED:STRIPE] suffix [REDACTED:STRIPE]");
    assert_eq!(
        counts,
        vec![RedactionCount {
            name: "STRIPE".into(),
            count: 2,
            partial: 2,
        }]
    );
    // Fifteen characters are below the run length for this value.
    let out = red(&r, &format!("x {} y", &v[..15]));
    assert_eq!(out, format!("x {} y", &v[..15]));
    // Runs never go below eight characters, and half of a short value.
    let r = r1("PIN", "0123456789ab");
    assert_eq!(red(&r, "01234567 x"), "[REDACTED:PIN] x");
    assert_eq!(red(&r, "0123456 x"), "0123456 x");
    let exact = Redactor::with_options([("STRIPE", v)], &Options::exact_only());
    let s = format!("{} x", &v[..16]);
    assert_eq!(red(&exact, &s), s);
}

#[test]
fn ordinary_text_is_left_alone() {
    let r = Redactor::new([
        ("URL", "https://user:pw-9f3k2@db.example.internal/app"),
        ("SHORT", "abcd"),
        ("WORDS", "correct horse battery"),
    ]);
    let text = "See https://docs.example.com and http://example.org/app.\n\
                a b c d, ab cd, one two three, user: pw\n\
                correct, horse, battery staple\n\
                {\"ok\": true, \"n\": 12345678}\n";
    assert_eq!(red(&r, text), text);
    // Short values are matched in their exact forms only.
    assert_eq!(red(&r, "a b c d abcd"), "a b c d [REDACTED:SHORT]");
    // A value with spaces is still found with other spacing.
    assert_eq!(red(&r, "correct\nhorse\nbattery"), "[REDACTED:WORDS]");
}

fn whole(s: &str) -> Stream<'_> {
    Stream {
        bytes: s.as_bytes(),
        cut: false,
    }
}

#[test]
fn values_split_between_outputs() {
    let r = r1("TOKEN", V);
    let (a, b) = V.split_at(9);
    // stdout holds the start, stderr the rest: joined at the junction.
    let (so, se) = (format!("x {a}"), format!("{b} y"));
    let out = r.redact_outputs(&[whole(&so), whole(&se)], &[], 100);
    assert_eq!(out[0].0.bytes, b"x [REDACTED:TOKEN]");
    assert_eq!(out[1].0.bytes, b"[REDACTED:TOKEN] y");
    // Alternating pieces in the order they were written.
    let (p1, rest) = V.split_at(5);
    let (p2, p3) = rest.split_at(6);
    let so = format!("{p1}\n{p3}\n");
    let se = format!("{p2}\n");
    let order = [
        Piece {
            stream: 0,
            len: p1.len() + 1,
        },
        Piece {
            stream: 1,
            len: se.len(),
        },
        Piece {
            stream: 0,
            len: p3.len() + 1,
        },
    ];
    let out = r.redact_outputs(&[whole(&so), whole(&se)], &order, 100);
    let so_out = String::from_utf8(out[0].0.bytes.clone()).unwrap();
    let se_out = String::from_utf8(out[1].0.bytes.clone()).unwrap();
    // The line break inside the value goes with it.
    assert_eq!(so_out, "[REDACTED:TOKEN][REDACTED:TOKEN]\n");
    assert_eq!(se_out, "[REDACTED:TOKEN]");
    // Each piece is a whole value found across the streams, not a partial run.
    assert_eq!(out[0].0.counts, vec![count("TOKEN", 2)]);
    // Without the order, neither output alone holds the value.
    let out = r.redact_outputs(&[whole(&so), whole(&se)], &[], 100);
    assert_eq!(out[1].0.bytes, se.as_bytes());
}

#[test]
fn a_value_that_is_mostly_whitespace_is_still_found() {
    // Found by the fuzzer: its canonical text ("&,4") is too short for the
    // view, so its exact forms are searched everywhere.
    let v = "&,\t\t\t\t4\t\t\t\t";
    let r = r1("A", v);
    assert_eq!(red(&r, &format!("x{v}y")), "x[REDACTED:A]y");
}

#[test]
fn a_value_holding_an_escape_is_found_spaced_out() {
    // Found by the fuzzer: spacing breaks the escape the value contains, so
    // the view does not decode it, while the value's canonical text does.
    let v = "p%41ss-w0rd\\u00e9-long";
    let r = r1("PW", v);
    let spaced: String = v.chars().map(|c| format!("{c} ")).collect();
    assert_eq!(red(&r, &spaced), "[REDACTED:PW] ");
    assert_eq!(red(&r, v), "[REDACTED:PW]");
}

#[test]
fn a_value_of_escaped_whitespace_is_found_spaced_out() {
    // Found by the fuzzer: decoded, the value is short (its escapes are
    // whitespace); spaced out, the escapes stay and spell it.
    let v = "c\\u000b\\u000b\\u000bC=x";
    let r = r1("V", v);
    let per_line: String = v.chars().map(|c| format!("{c}\n")).collect();
    assert_eq!(red(&r, &per_line), "[REDACTED:V]\n");
}

#[test]
fn outputs_are_redacted_as_the_text_they_are_stored_as() {
    // Found by the fuzzer: a value holding U+FFFD, spelled in output with an
    // invalid byte that the stored (lossy) text turns into U+FFFD.
    let v = "U\n\u{FFFD}\u{f0e4}2\u{b};";
    let r = r1("C", v);
    let out = b"UUUU\n\xbc\xef\x83\xa42\x0b;1C";
    let (t, _) = r.redact_truncate(out, 1000);
    let text = String::from_utf8(t.bytes).unwrap();
    assert_eq!(text, "UUU[REDACTED:C]1C");
    // The order of pieces is measured in the original bytes.
    let streams = [
        Stream {
            bytes: b"x\xff\xfe",
            cut: false,
        },
        Stream {
            bytes: V.as_bytes(),
            cut: false,
        },
    ];
    let order = [
        Piece { stream: 0, len: 3 },
        Piece {
            stream: 1,
            len: V.len(),
        },
    ];
    let outs = r.redact_outputs(&streams, &order, 100);
    assert_eq!(outs[0].0.bytes, "x\u{FFFD}\u{FFFD}".as_bytes());
}
