//! Comparing two executions ("why is this number different from yesterday?"): the
//! script, what each ran with (input records), what each HTTP request got back, and
//! what came out. Pure functions over stored rows; the API serves the result.

use std::collections::{BTreeMap, HashMap};

use airlock_store::{EgressRow, ExecutionRow};
use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;

/// The comparison of execution `a` (the earlier, usually) with `b`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    /// Nothing below differs but the clock (`inputs.now`, which moves between runs
    /// unless one replays the other). Inputs that were not recorded count as unknown,
    /// not as different (see `inputs.recorded`).
    pub identical: bool,
    pub script: TextChange,
    pub inputs: InputsChange,
    /// Each HTTP request of either execution, paired in order by method, host, port
    /// and path.
    pub requests: Vec<RequestChange>,
    pub outputs: OutputsChange,
}

/// Two texts: whether they are the same and, if not, a unified diff (a → b).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TextChange {
    pub same: bool,
    /// Unified diff; empty when `same`.
    pub diff: String,
}

/// Two values of one field.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ValueChange {
    pub same: bool,
    #[schema(value_type = Object)]
    pub a: Value,
    #[schema(value_type = Object)]
    pub b: Value,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct InputsChange {
    /// Both executions have an input record (their profile had `record` on).
    pub recorded: bool,
    pub python: ValueChange,
    /// The execution's clock (`airlock.now()`).
    pub now: ValueChange,
    pub packages: PackagesChange,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default, utoipa::ToSchema)]
pub struct PackagesChange {
    pub same: bool,
    /// Only in b: name → version.
    pub added: BTreeMap<String, String>,
    /// Only in a: name → version.
    pub removed: BTreeMap<String, String>,
    /// In both with another version: name → [a, b].
    pub changed: BTreeMap<String, (String, String)>,
    /// In both with the same version but other contents (another build of it):
    /// name → [content hash a, content hash b].
    pub rebuilt: BTreeMap<String, (String, String)>,
}

/// One request's answer in one execution.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Answer {
    pub allowed: bool,
    pub status: Option<u16>,
    pub body_sha256: Option<String>,
    pub bytes_down: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RequestChange {
    pub method: String,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
    /// Null: the request was not made in that execution.
    pub a: Option<Answer>,
    pub b: Option<Answer>,
    /// Made in one only, or refused in one only, or another status, or (both
    /// recorded) another body.
    pub changed: bool,
    /// With both answers kept (`record: full`) and text: a unified diff of the two
    /// bodies (redacted as stored). Null otherwise.
    pub body_diff: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct OutputsChange {
    pub status: ValueChange,
    /// The result JSON: each leaf that differs, by JSON pointer.
    pub result: ResultChange,
    pub stdout: TextChange,
    pub stderr: TextChange,
    pub error: ValueChange,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ResultChange {
    pub same: bool,
    pub changes: Vec<LeafChange>,
}

/// A value at `path` (a JSON pointer, `""` for the whole result) that differs; a
/// side is null where the path does not exist.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LeafChange {
    pub path: String,
    #[schema(value_type = Object)]
    pub a: Option<Value>,
    #[schema(value_type = Object)]
    pub b: Option<Value>,
}

/// Compares two executions and their egress logs.
pub fn compare(
    a: &ExecutionRow,
    a_egress: &[EgressRow],
    b: &ExecutionRow,
    b_egress: &[EgressRow],
) -> Comparison {
    let script = text_change(&a.script, &b.script, "script");
    let inputs = inputs_change(a, b);
    let requests = requests_change(a_egress, b_egress);
    let outputs = OutputsChange {
        status: value_change(
            Value::String(a.status.to_string()),
            Value::String(b.status.to_string()),
        ),
        result: result_change(&a.result, &b.result),
        stdout: text_change(&a.stdout, &b.stdout, "stdout"),
        stderr: text_change(&a.stderr, &b.stderr, "stderr"),
        error: value_change(
            a.error.clone().map_or(Value::Null, Value::String),
            b.error.clone().map_or(Value::Null, Value::String),
        ),
    };
    let identical = script.same
        && (!inputs.recorded || (inputs.python.same && inputs.packages.same))
        && requests.iter().all(|r| !r.changed)
        && outputs.status.same
        && outputs.result.same
        && outputs.stdout.same
        && outputs.stderr.same
        && outputs.error.same;
    Comparison {
        a: a.id.clone(),
        b: b.id.clone(),
        identical,
        script,
        inputs,
        requests,
        outputs,
    }
}

fn value_change(a: Value, b: Value) -> ValueChange {
    ValueChange { same: a == b, a, b }
}

fn text_change(a: &str, b: &str, name: &str) -> TextChange {
    if a == b {
        return TextChange {
            same: true,
            diff: String::new(),
        };
    }
    let diff = TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string();
    TextChange { same: false, diff }
}

fn inputs_change(a: &ExecutionRow, b: &ExecutionRow) -> InputsChange {
    let (ia, ib) = (a.inputs.as_ref(), b.inputs.as_ref());
    let python = value_change(
        ia.map_or(Value::Null, |i| Value::String(i.python.clone())),
        ib.map_or(Value::Null, |i| Value::String(i.python.clone())),
    );
    let now = value_change(
        ia.map_or(Value::Null, |i| Value::String(i.now.to_rfc3339())),
        ib.map_or(Value::Null, |i| Value::String(i.now.to_rfc3339())),
    );
    let empty = BTreeMap::new();
    let (pa, pb) = (
        ia.map_or(&empty, |i| &i.packages),
        ib.map_or(&empty, |i| &i.packages),
    );
    let mut packages = PackagesChange::default();
    for (name, va) in pa {
        match pb.get(name) {
            None => {
                packages.removed.insert(name.clone(), va.clone());
            }
            Some(vb) if vb != va => {
                packages
                    .changed
                    .insert(name.clone(), (va.clone(), vb.clone()));
            }
            Some(_) => {}
        }
    }
    for (name, vb) in pb {
        if !pa.contains_key(name) {
            packages.added.insert(name.clone(), vb.clone());
        }
    }
    if let (Some(ia), Some(ib)) = (ia, ib) {
        for (name, ca) in &ia.package_contents {
            let same_version = pa.get(name).is_some_and(|v| pb.get(name) == Some(v));
            match ib.package_contents.get(name) {
                Some(cb) if cb != ca && same_version => {
                    packages
                        .rebuilt
                        .insert(name.clone(), (ca.clone(), cb.clone()));
                }
                _ => {}
            }
        }
    }
    packages.same = packages.added.is_empty()
        && packages.removed.is_empty()
        && packages.changed.is_empty()
        && packages.rebuilt.is_empty();
    InputsChange {
        recorded: ia.is_some() && ib.is_some(),
        python,
        now,
        packages,
    }
}

type RequestKey = (String, String, u16, Option<String>);

fn key(e: &EgressRow) -> RequestKey {
    (e.method.clone(), e.host.clone(), e.port, e.path.clone())
}

fn answer(e: &EgressRow) -> Answer {
    Answer {
        allowed: e.allowed,
        status: e.status,
        body_sha256: e.body_sha256.clone(),
        bytes_down: e.bytes_down,
    }
}

/// Pairs the n-th request with a given key in `a` with the n-th in `b`, in the order
/// of `a`'s log and then the ones only `b` made.
fn requests_change(a: &[EgressRow], b: &[EgressRow]) -> Vec<RequestChange> {
    // b's rows by key, as indices in b's order.
    let mut b_by_key: HashMap<RequestKey, std::collections::VecDeque<usize>> = HashMap::new();
    for (i, e) in b.iter().enumerate() {
        b_by_key.entry(key(e)).or_default().push_back(i);
    }
    let mut paired = vec![false; b.len()];
    let mut out = Vec::new();
    for e in a {
        let other = b_by_key
            .get_mut(&key(e))
            .and_then(std::collections::VecDeque::pop_front);
        if let Some(i) = other {
            paired[i] = true;
        }
        out.push(request_change(Some(e), other.map(|i| &b[i])));
    }
    // What only b made, in b's order.
    for (e, _) in b.iter().zip(&paired).filter(|(_, p)| !**p) {
        out.push(request_change(None, Some(e)));
    }
    out
}

fn request_change(a: Option<&EgressRow>, b: Option<&EgressRow>) -> RequestChange {
    let Some(any) = a.or(b) else {
        unreachable!("a request pair has at least one side")
    };
    let (aa, ab) = (a.map(answer), b.map(answer));
    let changed = match (&aa, &ab) {
        (Some(x), Some(y)) => {
            x.allowed != y.allowed
                || x.status != y.status
                || matches!((&x.body_sha256, &y.body_sha256), (Some(p), Some(q)) if p != q)
        }
        _ => true,
    };
    RequestChange {
        method: any.method.clone(),
        host: any.host.clone(),
        port: any.port,
        path: any.path.clone(),
        a: aa,
        b: ab,
        changed,
        body_diff: None,
    }
}

/// Bodies larger than this are compared by hash only.
const MAX_DIFFED_BODY: usize = 256 * 1024;

/// Adds, to each changed request whose two answers both records kept, the diff of
/// their bodies (answers found by the body hash the egress log holds).
pub fn with_bodies(
    c: &mut Comparison,
    a: &[crate::answers::StoredAnswer],
    b: &[crate::answers::StoredAnswer],
) {
    let find = |answers: &[crate::answers::StoredAnswer], sha: &Option<String>| {
        let sha = sha.as_ref()?;
        answers
            .iter()
            .find(|x| x.body_sha256.as_ref() == Some(sha))
            .filter(|x| x.complete && x.body.len() <= MAX_DIFFED_BODY * 4 / 3 + 4)
            .and_then(crate::answers::StoredAnswer::text)
    };
    for r in c.requests.iter_mut().filter(|r| r.changed) {
        let (Some(x), Some(y)) = (&r.a, &r.b) else {
            continue;
        };
        if let (Some(ta), Some(tb)) = (find(a, &x.body_sha256), find(b, &y.body_sha256)) {
            if ta != tb {
                r.body_diff = Some(text_change(&ta, &tb, "body").diff);
            }
        }
    }
}

fn parse(result: &Option<String>) -> Option<Value> {
    result
        .as_deref()
        .map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())))
}

fn result_change(a: &Option<String>, b: &Option<String>) -> ResultChange {
    let mut changes = Vec::new();
    leaves(
        &mut changes,
        String::new(),
        parse(a).as_ref(),
        parse(b).as_ref(),
    );
    ResultChange {
        same: changes.is_empty(),
        changes,
    }
}

/// Walks two JSON values together; every differing leaf (or a value only one side
/// has) is one change.
fn leaves(out: &mut Vec<LeafChange>, path: String, a: Option<&Value>, b: Option<&Value>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut names: Vec<&String> = x.keys().chain(y.keys()).collect();
            names.sort();
            names.dedup();
            for n in names {
                let p = format!("{path}/{}", n.replace('~', "~0").replace('/', "~1"));
                leaves(out, p, x.get(n), y.get(n));
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                leaves(out, format!("{path}/{i}"), x.get(i), y.get(i));
            }
        }
        (x, y) if x == y => {}
        (x, y) => out.push(LeafChange {
            path,
            a: x.cloned(),
            b: y.cloned(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use airlock_store::{ExecutionInputs, ExecutionStatus};
    use chrono::Utc;

    pub(crate) fn exec(id: &str, script: &str, result: &str, stdout: &str) -> ExecutionRow {
        ExecutionRow {
            id: id.into(),
            profile_id: "prof_1".into(),
            status: ExecutionStatus::Completed,
            script: script.into(),
            script_sha256: String::new(),
            timeout_secs: 60,
            result: Some(result.into()),
            stdout: stdout.into(),
            stderr: String::new(),
            error: None,
            llm_request: None,
            llm_exchanges: Vec::new(),
            redactions: Vec::new(),
            execution_time_ms: Some(1),
            llm_wait_ms: 0,
            inputs: None,
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
        }
    }

    fn get(path: &str, status: u16, sha: &str) -> EgressRow {
        EgressRow {
            execution_id: String::new(),
            at: Utc::now(),
            host: "127.0.0.1".into(),
            port: 8080,
            method: "GET".into(),
            path: Some(path.into()),
            bytes_up: 10,
            bytes_down: 20,
            duration_ms: Some(1),
            allowed: true,
            reason: String::new(),
            violation: false,
            substituted: Vec::new(),
            status: Some(status),
            body_sha256: Some(sha.into()),
        }
    }

    fn kept(sha: &str, body: &str) -> crate::answers::StoredAnswer {
        use base64::Engine;
        crate::answers::StoredAnswer {
            method: "GET".into(),
            host: "127.0.0.1".into(),
            port: 8080,
            path: Some("/rates".into()),
            target_sha256: String::new(),
            status: 200,
            headers: Vec::new(),
            body: base64::engine::general_purpose::STANDARD.encode(body),
            complete: true,
            body_sha256: Some(sha.into()),
            redacted: false,
        }
    }

    #[test]
    fn kept_answers_that_changed_are_diffed_by_content() {
        let a = exec("a", "s", "1", "");
        let b = exec("b", "s", "2", "");
        let mut c = compare(
            &a,
            &[get("/rates", 200, "aa"), get("/same", 200, "cc")],
            &b,
            &[get("/rates", 200, "bb"), get("/same", 200, "cc")],
        );
        let (ka, kb) = (
            [kept("aa", "day,total\n1,30\n"), kept("cc", "x")],
            [kept("bb", "day,total\n1,40\n"), kept("cc", "x")],
        );
        with_bodies(&mut c, &ka, &kb);
        let diff = c.requests[0].body_diff.as_deref().expect("diffed");
        assert!(diff.contains("-1,30\n+1,40\n"), "{diff}");
        assert_eq!(
            c.requests[1].body_diff, None,
            "unchanged answers are not diffed"
        );
        // Only one side kept: compared by hash alone.
        let mut c = compare(
            &a,
            &[get("/rates", 200, "aa")],
            &b,
            &[get("/rates", 200, "bb")],
        );
        with_bodies(&mut c, &ka, &[]);
        assert_eq!(c.requests[0].body_diff, None);
    }

    #[test]
    fn the_same_run_twice_is_identical() {
        let a = exec("a", "print(1)\n", r#"{"total": 3}"#, "1\n");
        let b = exec("b", "print(1)\n", r#"{"total": 3}"#, "1\n");
        let e = [get("/rates", 200, "aa")];
        let c = compare(&a, &e, &b, &e);
        assert!(c.identical, "{c:#?}");
        assert!(c.requests.iter().all(|r| !r.changed));
    }

    #[test]
    fn a_changed_answer_and_result_are_named() {
        let a = exec("a", "s\n", r#"{"total": 3, "rows": [1, 2]}"#, "x\n");
        let b = exec("b", "s\n", r#"{"total": 4, "rows": [1, 2, 5]}"#, "y\n");
        let ea = [get("/rates", 200, "aa"), get("/static", 200, "cc")];
        let eb = [get("/static", 200, "cc"), get("/rates", 200, "bb")];
        let c = compare(&a, &ea, &b, &eb);
        assert!(!c.identical);
        let changed: Vec<_> = c.requests.iter().filter(|r| r.changed).collect();
        assert_eq!(changed.len(), 1, "{:#?}", c.requests);
        assert_eq!(changed[0].path.as_deref(), Some("/rates"));
        let paths: Vec<&str> = c
            .outputs
            .result
            .changes
            .iter()
            .map(|l| l.path.as_str())
            .collect();
        assert_eq!(paths, ["/rows/2", "/total"]);
        assert_eq!(c.outputs.result.changes[1].a, Some(serde_json::json!(3)));
        assert!(
            c.outputs.stdout.diff.contains("-x\n+y\n"),
            "{}",
            c.outputs.stdout.diff
        );
        assert!(c.script.same);
    }

    #[test]
    fn requests_made_in_one_run_only_and_package_changes_show() {
        let mut a = exec("a", "s", "1", "");
        let mut b = exec("b", "s2", "1", "");
        let inputs = |pkgs: &[(&str, &str)]| ExecutionInputs {
            script_sha256: String::new(),
            python: "3.11.2".into(),
            packages: pkgs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            now: chrono::DateTime::UNIX_EPOCH,
            replay_of: None,
            record: None,
            package_contents: pkgs
                .iter()
                .map(|(n, v)| (n.to_string(), format!("{n}-{v}-build")))
                .collect(),
        };
        a.inputs = Some(inputs(&[("pandas", "2.1.0"), ("six", "1.16.0")]));
        b.inputs = Some(inputs(&[("pandas", "2.2.0"), ("numpy", "2.0.0")]));
        let c = compare(&a, &[get("/a", 200, "1")], &b, &[get("/b", 404, "2")]);
        assert!(!c.identical);
        assert!(!c.script.same);
        assert_eq!(c.requests.len(), 2);
        assert!(c.requests[0].b.is_none() && c.requests[1].a.is_none());
        let p = &c.inputs.packages;
        assert_eq!(
            p.changed["pandas"],
            ("2.1.0".to_string(), "2.2.0".to_string())
        );
        assert_eq!(p.added["numpy"], "2.0.0");
        assert_eq!(p.removed["six"], "1.16.0");
        assert!(
            p.rebuilt.is_empty(),
            "a new version is a change, not a rebuild"
        );
        assert!(c.inputs.recorded && c.inputs.python.same && c.inputs.now.same);
        // The same version built otherwise.
        let mut rebuilt = a.clone();
        if let Some(i) = rebuilt.inputs.as_mut() {
            i.package_contents.insert("six".into(), "other".into());
        }
        let c = compare(&a, &[], &rebuilt, &[]);
        assert!(!c.inputs.packages.same);
        assert_eq!(
            c.inputs.packages.rebuilt["six"],
            ("six-1.16.0-build".to_string(), "other".to_string())
        );
        assert!(c.inputs.packages.changed.is_empty());
    }
}
