//! Fuzzing the redactor: for any values and any text built from ordinary
//! text and values written in the forms below, redaction never panics, and
//! its output never holds a value where a naive reference search finds one:
//! the value itself, reversed, in hex (either case) or base64; and, for
//! values of at least 8 characters, the value in the output with its
//! whitespace removed.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

use airlock_redact::{Piece, Redactor, Stream, MIN_CANONICAL_CHARS, MIN_SECRET_CHARS};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Form {
    Raw,
    Reversed,
    Hex,
    HexUpper,
    Base64,
    Spaced,
    PerLine,
    ZeroWidth,
    Fullwidth,
    UEscape,
    Percent,
    HtmlEntities,
}

#[derive(Arbitrary, Debug)]
enum Part {
    Text(String),
    Bytes(Vec<u8>),
    Value(u8, Form),
}

#[derive(Arbitrary, Debug)]
struct Input {
    values: Vec<String>,
    parts: Vec<Part>,
    cap: u16,
    split: u16,
}

const NAMES: [&str; 3] = ["A", "B", "C"];

fn written(v: &str, form: Form) -> String {
    match form {
        Form::Raw => v.to_string(),
        Form::Reversed => v.chars().rev().collect(),
        Form::Hex => hex::encode(v),
        Form::HexUpper => hex::encode_upper(v),
        Form::Base64 => base64::engine::general_purpose::STANDARD.encode(v),
        Form::Spaced => v.chars().map(|c| format!("{c} ")).collect(),
        Form::PerLine => v.chars().map(|c| format!("{c}\n")).collect(),
        Form::ZeroWidth => v.chars().map(|c| format!("{c}\u{200B}")).collect(),
        Form::Fullwidth => v
            .chars()
            .map(|c| match c {
                '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c),
                c => c,
            })
            .collect(),
        Form::UEscape => v
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32 & 0xFFFF))
            .collect(),
        Form::Percent => v.bytes().map(|b| format!("%{b:02X}")).collect(),
        Form::HtmlEntities => v.chars().map(|c| format!("&#{};", c as u32)).collect(),
    }
}

/// What the reference search looks for in the output.
fn reference_forms(v: &str) -> Vec<String> {
    vec![
        v.to_string(),
        v.chars().rev().collect(),
        hex::encode(v),
        hex::encode_upper(v),
        base64::engine::general_purpose::STANDARD.encode(v),
    ]
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn check(values: &[(&str, &str)], out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    for (name, v) in values {
        for f in reference_forms(v) {
            assert!(!text.contains(&f), "{name}: a form of its value survived");
        }
        // Spacing is judged on values of ordinary characters: the redactor also
        // drops invisible and format characters, so a value made long by them
        // can be short once seen (documented: 4-7 visible characters are not
        // matched spaced out).
        let ordinary = v
            .chars()
            .all(|c| c.is_ascii_graphic() || c.is_whitespace() || c.is_alphanumeric());
        if ordinary && v.chars().count() >= MIN_CANONICAL_CHARS {
            let squeezed = squeeze(v);
            if squeezed.chars().count() >= MIN_CANONICAL_CHARS {
                assert!(
                    !squeeze(&text).contains(&squeezed),
                    "{name}: its value survived with whitespace in it"
                );
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let markers: String = NAMES.iter().map(|n| format!("[REDACTED:{n}]")).collect();
    // Values the reference can judge: long enough to be redacted, valid in
    // every form, and not spelled by the markers themselves.
    let values: Vec<(&str, &str)> = input
        .values
        .iter()
        .take(NAMES.len())
        .enumerate()
        .map(|(i, v)| (NAMES[i], v.as_str()))
        .filter(|(_, v)| {
            v.chars().count() >= MIN_SECRET_CHARS
                && !v.contains('\u{0}')
                && v.chars().all(|c| !"[]:".contains(c))
                && reference_forms(v)
                    .iter()
                    .all(|f| !markers.contains(f.as_str()))
                && !squeeze(&markers).contains(&squeeze(v))
        })
        .collect();
    let mut text: Vec<u8> = Vec::new();
    for part in input.parts.iter().take(64) {
        match part {
            Part::Text(t) => text.extend_from_slice(t.as_bytes()),
            Part::Bytes(b) => text.extend_from_slice(b),
            Part::Value(i, form) => {
                if let Some((_, v)) = values.get(*i as usize % values.len().max(1)) {
                    text.extend_from_slice(written(v, *form).as_bytes());
                }
            }
        }
    }
    let r = Redactor::new(values.iter().copied());

    // Bytes in, bytes out: judged when the input is text (a value holding
    // U+FFFD is not spelled by invalid bytes in a byte stream).
    let out = r.redact(&text);
    if std::str::from_utf8(&text).is_ok() {
        check(&values, &out.bytes);
    }

    let (cut, _) = r.redact_truncate(&text, input.cap as usize);
    assert!(cut.bytes.len() <= input.cap as usize || cut.bytes.is_empty());

    // Outputs are text: judged on what would be stored.
    let whole = [Stream {
        bytes: &text,
        cut: false,
    }];
    for (o, _) in r.redact_outputs(&whole, &[], usize::MAX) {
        check(&values, &o.bytes);
    }

    // Two streams: a value inside either is still caught.
    let at = (input.split as usize).min(text.len());
    let streams = [
        Stream {
            bytes: &text[..at],
            cut: false,
        },
        Stream {
            bytes: &text[at..],
            cut: false,
        },
    ];
    let order = [
        Piece { stream: 0, len: at },
        Piece {
            stream: 1,
            len: text.len() - at,
        },
    ];
    for (o, _) in r.redact_outputs(&streams, &order, usize::MAX) {
        check(&values, &o.bytes);
    }
});
