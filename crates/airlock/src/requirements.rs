//! A strict parser for the package requirements agents may ask for.
//!
//! Requirements end up on an installer's command line, so this module accepts a
//! deliberately small subset of PEP 508: a project name, optional extras, optional
//! version specifiers and an optional environment marker made only of marker
//! variables, comparison operators and quoted strings of harmless characters.
//! Everything else (URLs, `name @ url`, paths, VCS links, installer options such as
//! `-e`/`--index-url`/`-r`, control characters) is refused with a message naming
//! the item. The accepted requirement is re-rendered from the parsed parts, so the
//! installer never sees the caller's raw text.

use std::fmt;

/// Longest accepted project (or extra) name.
pub const MAX_NAME_LEN: usize = 100;
/// Most packages accepted in one request.
pub const MAX_PACKAGES: usize = 50;
/// Longest accepted requirement string.
pub const MAX_SPEC_LEN: usize = 400;

/// One accepted requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The name as written (`Pandas`).
    pub name: String,
    /// Lower-case extras, sorted.
    pub extras: Vec<String>,
    /// `(operator, version)` pairs in the order written.
    pub specifiers: Vec<(String, String)>,
    /// The marker, re-rendered with single spaces (`python_version >= "3.9"`).
    pub marker: Option<String>,
}

impl Requirement {
    /// PEP 503 normalized name: lower case, runs of `-`, `_`, `.` become `-`.
    pub fn normalized_name(&self) -> String {
        normalize(&self.name)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.extras.is_empty() {
            write!(f, "[{}]", self.extras.join(","))?;
        }
        let specs: Vec<String> = self
            .specifiers
            .iter()
            .map(|(op, v)| format!("{op}{v}"))
            .collect();
        f.write_str(&specs.join(","))?;
        if let Some(m) = &self.marker {
            write!(f, "; {m}")?;
        }
        Ok(())
    }
}

/// PEP 503 normalization of a project name.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Names an installer would treat as a local archive.
const ARCHIVE_SUFFIXES: [&str; 11] = [
    ".whl", ".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz", ".xz", ".txz", ".tlz", ".lzma",
];

const OPERATORS: [&str; 8] = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"];

const MARKER_VARS: [&str; 13] = [
    "python_version",
    "python_full_version",
    "os_name",
    "sys_platform",
    "platform_release",
    "platform_system",
    "platform_version",
    "platform_machine",
    "platform_python_implementation",
    "implementation_name",
    "implementation_version",
    "extra",
    "platform_tag",
];

const MARKER_OPS: [&str; 10] = [
    "===", "~=", "==", "!=", "<=", ">=", "<", ">", "not in", "in",
];

fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_version(v: &str, op: &str) -> bool {
    let body = if matches!(op, "==" | "!=") {
        v.strip_suffix(".*").unwrap_or(v)
    } else {
        v
    };
    let b = body.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'!' | b'-' | b'_'))
}

/// Parses and validates one requirement. The error says what is wrong, without
/// repeating the (possibly long) input.
pub fn parse(spec: &str) -> Result<Requirement, String> {
    if spec.len() > MAX_SPEC_LEN {
        return Err(format!("longer than {MAX_SPEC_LEN} characters"));
    }
    if spec.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    let s = spec.trim();
    if s.is_empty() {
        return Err("empty requirement".into());
    }
    if s.starts_with('-') {
        return Err("installer options (such as -e, -r, --index-url) are not accepted".into());
    }
    if s.contains("://") || s.starts_with("git+") || s.contains(" @") || s.contains("@ ") {
        return Err("URLs and direct references are not accepted; give a project name and version specifiers".into());
    }
    if s.starts_with('.') || s.starts_with('/') || s.starts_with('~') || s.contains('\\') {
        return Err("paths are not accepted; give a project name from the package index".into());
    }
    let (main, marker) = match s.split_once(';') {
        Some((m, k)) => (m.trim(), Some(k.trim())),
        None => (s, None),
    };
    // The name: up to the first character that cannot be part of one.
    let end = main
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(main.len());
    let name = &main[..end];
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "project name longer than {MAX_NAME_LEN} characters"
        ));
    }
    if !is_name(name) {
        return Err("not a valid project name (letters, digits, '-', '_', '.'; starting and ending with a letter or digit)".into());
    }
    let lower = name.to_ascii_lowercase();
    if ARCHIVE_SUFFIXES.iter().any(|x| lower.ends_with(x)) {
        return Err("looks like a file name; give a project name from the package index".into());
    }
    let mut rest = main[end..].trim_start();
    let mut extras = Vec::new();
    if let Some(after) = rest.strip_prefix('[') {
        let close = after.find(']').ok_or("unclosed '[' in extras")?;
        for e in after[..close].split(',') {
            let e = e.trim();
            if e.len() > MAX_NAME_LEN || !is_name(e) {
                return Err("not a valid extra name".into());
            }
            extras.push(e.to_ascii_lowercase());
        }
        extras.sort();
        extras.dedup();
        rest = after[close + 1..].trim_start();
    }
    // Version specifiers, optionally in parentheses.
    let mut rest = rest.trim();
    if let Some(inner) = rest.strip_prefix('(') {
        rest = inner
            .strip_suffix(')')
            .ok_or("unbalanced parentheses around the version specifiers")?
            .trim();
    }
    let mut specifiers = Vec::new();
    if !rest.is_empty() {
        for clause in rest.split(',') {
            let clause = clause.trim();
            let op = OPERATORS
                .iter()
                .find(|op| clause.starts_with(**op))
                .ok_or("expected a version specifier such as '>=2' or '==1.4.2' after the name")?;
            let version = clause[op.len()..].trim();
            if !is_version(version, op) {
                return Err(format!("'{op}' must be followed by a version number"));
            }
            specifiers.push((op.to_string(), version.to_string()));
        }
    }
    let marker = match marker {
        Some(m) => Some(parse_marker(m)?),
        None => None,
    };
    Ok(Requirement {
        name: name.to_string(),
        extras,
        specifiers,
        marker,
    })
}

#[derive(Debug, PartialEq)]
enum Tok {
    Var(String),
    Str(String),
    Op(String),
    And,
    Or,
    Open,
    Close,
}

fn marker_tokens(m: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let b = m.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b' ' {
            i += 1;
        } else if c == b'(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == b')' {
            out.push(Tok::Close);
            i += 1;
        } else if c == b'"' || c == b'\'' {
            let close = m[i + 1..]
                .find(c as char)
                .ok_or("unterminated string in the environment marker")?;
            let v = &m[i + 1..i + 1 + close];
            if !v.bytes().all(|x| {
                x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'*' | b'+' | b'!' | b' ')
            }) {
                return Err("environment marker strings may only hold letters, digits, '.', '_', '*', '+', '!' and spaces".into());
            }
            out.push(Tok::Str(v.to_string()));
            i += close + 2;
        } else if c.is_ascii_alphabetic() {
            let end = m[i..]
                .find(|x: char| !(x.is_ascii_alphanumeric() || x == '_'))
                .map_or(m.len(), |e| i + e);
            let word = &m[i..end];
            match word {
                "and" => out.push(Tok::And),
                "or" => out.push(Tok::Or),
                "in" => out.push(Tok::Op("in".into())),
                "not" => {
                    let after = m[end..].trim_start();
                    if !after.starts_with("in") {
                        return Err(
                            "'not' must be followed by 'in' in an environment marker".into()
                        );
                    }
                    out.push(Tok::Op("not in".into()));
                    i = m.len() - after.len() + 2;
                    continue;
                }
                v if MARKER_VARS.contains(&v) => out.push(Tok::Var(v.to_string())),
                _ => return Err("unknown variable in the environment marker".into()),
            }
            i = end;
        } else {
            let op = MARKER_OPS
                .iter()
                .find(|op| m[i..].starts_with(**op))
                .ok_or("unexpected character in the environment marker")?;
            out.push(Tok::Op(op.to_string()));
            i += op.len();
        }
    }
    Ok(out)
}

/// marker := atom (('and'|'or') atom)*; atom := '(' marker ')' | value op value,
/// where exactly one value of a comparison is a variable.
fn parse_marker(m: &str) -> Result<String, String> {
    let toks = marker_tokens(m)?;
    let mut pos = 0;
    let out = marker_expr(&toks, &mut pos, 0)?;
    if pos != toks.len() {
        return Err("unexpected token in the environment marker".into());
    }
    Ok(out)
}

fn marker_expr(t: &[Tok], pos: &mut usize, depth: usize) -> Result<String, String> {
    if depth > 8 {
        return Err("environment marker nested too deeply".into());
    }
    let mut out = marker_atom(t, pos, depth)?;
    while let Some(tok @ (Tok::And | Tok::Or)) = t.get(*pos) {
        *pos += 1;
        let word = if *tok == Tok::And { "and" } else { "or" };
        out = format!("{out} {word} {}", marker_atom(t, pos, depth)?);
    }
    Ok(out)
}

fn marker_atom(t: &[Tok], pos: &mut usize, depth: usize) -> Result<String, String> {
    let bad = || "incomplete comparison in the environment marker".to_string();
    if t.get(*pos) == Some(&Tok::Open) {
        *pos += 1;
        let inner = marker_expr(t, pos, depth + 1)?;
        if t.get(*pos) != Some(&Tok::Close) {
            return Err("unbalanced parentheses in the environment marker".into());
        }
        *pos += 1;
        return Ok(format!("({inner})"));
    }
    let value = |tok: Option<&Tok>| match tok {
        Some(Tok::Var(v)) => Some((v.clone(), true)),
        Some(Tok::Str(s)) => Some((format!("\"{s}\""), false)),
        _ => None,
    };
    let (l, lvar) = value(t.get(*pos)).ok_or_else(bad)?;
    let Some(Tok::Op(op)) = t.get(*pos + 1) else {
        return Err(bad());
    };
    let (r, rvar) = value(t.get(*pos + 2)).ok_or_else(bad)?;
    if lvar == rvar {
        return Err("each marker comparison needs one variable and one quoted value".into());
    }
    *pos += 3;
    Ok(format!("{l} {op} {r}"))
}

/// Validates a whole request; every error names the item (by position and, when
/// it is short and printable, by its text).
pub fn parse_all(specs: &[String]) -> Result<Vec<Requirement>, String> {
    if specs.is_empty() {
        return Err("packages must list at least one requirement".into());
    }
    if specs.len() > MAX_PACKAGES {
        return Err(format!(
            "at most {MAX_PACKAGES} packages per request (got {})",
            specs.len()
        ));
    }
    let mut out: Vec<Requirement> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let label = if spec.len() <= 120 && !spec.chars().any(char::is_control) {
            format!("packages[{i}] ({spec:?})")
        } else {
            format!("packages[{i}]")
        };
        let req = parse(spec).map_err(|e| format!("{label}: {e}"))?;
        if out
            .iter()
            .any(|r| r.normalized_name() == req.normalized_name())
        {
            return Err(format!("{label}: the project is listed twice"));
        }
        out.push(req);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        parse(s)
            .unwrap_or_else(|e| panic!("{s:?} refused: {e}"))
            .to_string()
    }

    #[test]
    fn accepts_names_extras_specifiers_and_plain_markers() {
        assert_eq!(ok("httpx"), "httpx");
        assert_eq!(ok("pandas>=2"), "pandas>=2");
        assert_eq!(ok("openpyxl==3.1.5"), "openpyxl==3.1.5");
        assert_eq!(
            ok(" requests [Socks, security] >= 2.0 , < 3 "),
            "requests[security,socks]>=2.0,<3"
        );
        assert_eq!(ok("zope.interface~=6.1"), "zope.interface~=6.1");
        assert_eq!(ok("numpy (>=1.26)"), "numpy>=1.26");
        assert_eq!(ok("foo==1.*"), "foo==1.*");
        assert_eq!(
            ok("tomli; python_version < '3.11' and (sys_platform == \"linux\" or os_name != 'nt')"),
            "tomli; python_version < \"3.11\" and (sys_platform == \"linux\" or os_name != \"nt\")"
        );
        assert_eq!(
            ok("x; 'linux' in sys_platform"),
            "x; \"linux\" in sys_platform"
        );
        assert_eq!(ok("x; extra not in 'a b'"), "x; extra not in \"a b\"");
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "   ",
            "-e .",
            "-r requirements.txt",
            "--index-url https://evil.example/simple",
            "--extra-index-url=https://evil.example",
            "pkg --index-url https://evil.example",
            "https://evil.example/pkg.whl",
            "pkg @ https://evil.example/pkg.whl",
            "pkg@https://evil.example/pkg.whl",
            "git+https://github.com/x/y",
            "pkg @ git+ssh://git@github.com/x/y",
            "file:///etc/passwd",
            "./local/pkg",
            "../pkg",
            "/abs/path/pkg.whl",
            "~/pkg",
            "C:\\pkg",
            "pkg.whl ",
            "pkg; python_version >= '3' --index-url x",
            "pkg; python_version >= \"3\\\" -i x\"",
            "pkg; os_name == '--index-url=https://evil'",
            "pkg; os_name == 'a' ; --trusted-host evil",
            "pkg; __import__('os')",
            "pkg; python_version",
            "pkg; 'a' == 'b'",
            "pkg >= ",
            "pkg >= 1.0 --hash=sha256:abc",
            "pkg\n--index-url x",
            "pkg\t",
            "pkg[extra",
            "pkg[ex tra]",
            "-pkg",
            "pkg-",
            "pkg ==1.0 ; ",
            "pkg$(id)",
            "pkg;os_name=='a'#x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted as {:?}", parse(bad));
        }
        let long = "a".repeat(101);
        assert_eq!(
            parse(&long).unwrap_err(),
            "project name longer than 100 characters"
        );
        assert!(parse(&"a".repeat(100)).is_ok());
    }

    #[test]
    fn whole_requests_name_the_bad_item_and_bound_the_count() {
        let specs: Vec<String> = vec!["httpx".into(), "-e .".into()];
        let e = parse_all(&specs).unwrap_err();
        assert!(
            e.starts_with("packages[1] (\"-e .\"): installer options"),
            "{e}"
        );
        let many: Vec<String> = (0..51).map(|i| format!("p{i}")).collect();
        assert_eq!(
            parse_all(&many).unwrap_err(),
            "at most 50 packages per request (got 51)"
        );
        let dup: Vec<String> = vec!["Foo_Bar".into(), "foo.bar>=1".into()];
        assert!(parse_all(&dup).unwrap_err().contains("listed twice"));
        assert!(parse_all(&[]).is_err());
        assert_eq!(normalize("Foo__Bar.baz"), "foo-bar-baz");
    }
}
