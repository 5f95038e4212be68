//! The executions list and one execution's page.

use super::*;

// ----- executions -----

#[derive(Deserialize, Default)]
pub struct ExecQuery {
    #[serde(default)]
    profile: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    page: Option<i64>,
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "executions.html")]
struct ExecutionsPage {
    nav: &'static str,
    rows: Vec<ExecRow>,
    total: i64,
    first: i64,
    last: i64,
    page: i64,
    pages: i64,
    prev_href: String,
    next_href: String,
    profile: String,
    status: String,
    from: String,
    to: String,
    filtered: bool,
    statuses: Vec<String>,
    profiles: Vec<Choice>,
}

fn parse_day(name: &str, s: &str) -> Result<Option<NaiveDate>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| ApiError::invalid(format!("{name} must be a date such as 2026-01-31")))
}

pub async fn executions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ExecQuery>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/executions")).await?;
    let status = match q.status.as_str() {
        "" => None,
        s => Some(ExecutionStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(format!("status must be one of {}", ExecutionStatus::list()))
        })?),
    };
    let from = parse_day("from", &q.from)?;
    let to = parse_day("to", &q.to)?;
    let page = q.page.unwrap_or(1).max(1);
    let mut f = ExecutionFilter {
        profile_id: Some(q.profile.clone()).filter(|p| !p.is_empty()),
        status,
        created_from: from.map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()),
        // The end date is inclusive: everything before the next midnight.
        created_to: to.map(|d| {
            (d + Duration::days(1))
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
        }),
        limit: PAGE_SIZE,
        offset: 0,
    };
    let total = state.store.executions_count(&f).await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = page.min(pages);
    f.offset = (page - 1) * PAGE_SIZE;
    let all_profiles = state.catalog.list_profiles().await?;
    let names = profile_names(&all_profiles);
    let rows: Vec<ExecRow> = state
        .store
        .executions_list(&f)
        .await?
        .iter()
        .map(|s| exec_row(s, &names))
        .collect();
    let href = |p: i64| {
        let p = p.to_string();
        format!(
            "{PREFIX}/executions{}",
            view::query(&[
                ("profile", &q.profile),
                ("status", &q.status),
                ("from", &q.from),
                ("to", &q.to),
                ("page", if p == "1" { "" } else { &p }),
            ])
        )
    };
    let profiles = all_profiles
        .into_iter()
        .map(|p| Choice {
            label: if p.description.is_empty() {
                p.id.clone()
            } else {
                format!("{} ({})", truncate(&p.description, 40), p.id)
            },
            value: p.id,
        })
        .collect();
    Ok(render(&ExecutionsPage {
        nav: "executions",
        first: if rows.is_empty() { 0 } else { f.offset + 1 },
        last: f.offset + rows.len() as i64,
        rows,
        total,
        page,
        pages,
        prev_href: if page > 1 {
            href(page - 1)
        } else {
            String::new()
        },
        next_href: if page < pages {
            href(page + 1)
        } else {
            String::new()
        },
        filtered: !(q.profile.is_empty()
            && q.status.is_empty()
            && q.from.is_empty()
            && q.to.is_empty()),
        profile: q.profile,
        status: q.status,
        from: q.from,
        to: q.to,
        statuses: ExecutionStatus::ALL
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        profiles,
    }))
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

pub struct Exchange {
    pub request_id: String,
    pub model: String,
    pub prompt: String,
    pub response: String,
}

pub struct Redaction {
    pub field: String,
    pub name: String,
    pub count: i64,
    /// How many of `count` replaced only part of the value.
    pub partial: i64,
}

/// A duration in milliseconds as the network table shows it.
fn duration_text(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// One connection attempt through the egress proxy.
pub struct Egress {
    pub at: Ts,
    pub target: String,
    pub request: String,
    pub bytes_up: i64,
    pub bytes_down: i64,
    /// `1.2 s`, `35 ms`; empty for attempts logged before durations were recorded.
    pub duration: String,
    /// `allowed`, `refused`, or `failed` (allowed, but the destination was not
    /// reached: DNS, connection, timeout).
    pub outcome: &'static str,
    pub reason: String,
    pub violation: bool,
    /// Sealed credentials substituted into the request, comma-separated.
    pub substituted: String,
    /// The HTTP status and (recording profiles) the body's SHA-256, shortened.
    pub answer: String,
    /// The body's whole SHA-256, for the title.
    pub body_sha256: String,
}

/// An execution's input record, for display.
pub struct Inputs {
    pub python: String,
    pub now: Ts,
    /// `name version` per package, comma-separated; empty when none.
    pub packages: String,
    /// How many HTTP answers the record keeps (`record: full`); `None` when it
    /// keeps hashes only.
    pub answers: Option<i64>,
}

/// Another execution of the same profile, to compare with.
pub struct Other {
    pub id: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    nav: &'static str,
    id: String,
    profile_id: String,
    /// The profile's description (empty when none).
    profile_name: String,
    /// Still pending, running or waiting for the LLM: the page refreshes itself.
    live: bool,
    /// Time spent waiting for LLM answers (not part of `duration`), when any.
    llm_wait: Option<String>,
    status: String,
    script: String,
    script_sha256: String,
    script_lines: usize,
    stdout: String,
    stderr: String,
    result: Option<String>,
    error: Option<String>,
    llm_request: Option<String>,
    exchanges: Vec<Exchange>,
    redactions: Vec<Redaction>,
    egress: Vec<Egress>,
    inputs: Option<Inputs>,
    others: Vec<Other>,
    timeout: i64,
    duration: String,
    created: Ts,
    started: Option<Ts>,
    completed: Option<Ts>,
}

fn pretty_json(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

pub async fn execution(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/executions/{id}")).await?;
    let r = state
        .store
        .execution_get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no execution has this id"))?;
    let exchanges = r
        .llm_exchanges
        .iter()
        .map(|x| Exchange {
            request_id: x.request_id.clone(),
            model: x.model.clone(),
            prompt: x.prompt.clone(),
            response: x.response.clone(),
        })
        .collect();
    let redactions = r
        .redactions
        .iter()
        .map(|x| Redaction {
            field: x.field.clone(),
            name: x.name.clone(),
            count: x.count as i64,
            partial: x.partial as i64,
        })
        .collect();
    let egress = state
        .store
        .egress_list(&r.id)
        .await?
        .into_iter()
        .map(|e| Egress {
            at: view::ts(e.at),
            target: format!("{}:{}", e.host, e.port),
            request: match &e.path {
                Some(path) => format!("{} {path}", e.method),
                None => e.method.clone(),
            },
            bytes_up: e.bytes_up,
            bytes_down: e.bytes_down,
            duration: e.duration_ms.map(duration_text).unwrap_or_default(),
            outcome: match (
                e.allowed,
                airlock_egress::attempt_failed(e.allowed, &e.reason),
            ) {
                (true, _) => "allowed",
                (false, true) => "failed",
                (false, false) => "refused",
            },
            reason: e.reason,
            violation: e.violation,
            substituted: e.substituted.join(", "),
            answer: match (e.status, &e.body_sha256) {
                (Some(s), Some(h)) => format!("{s} · {}…", &h[..h.len().min(12)]),
                (Some(s), None) => s.to_string(),
                (None, _) => String::new(),
            },
            body_sha256: e.body_sha256.unwrap_or_default(),
        })
        .collect();
    let answers = match r.inputs.as_ref().and_then(|i| i.record) {
        Some(airlock_store::RecordMode::Full) => Some(state.store.answers_count(&r.id).await?),
        _ => None,
    };
    let inputs = r.inputs.as_ref().map(|i| Inputs {
        answers,
        python: i.python.clone(),
        now: view::ts(i.now),
        packages: i
            .packages
            .iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    });
    let others = state
        .store
        .executions_list(&airlock_store::ExecutionFilter {
            profile_id: Some(r.profile_id.clone()),
            limit: 50,
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|s| s.id != r.id)
        .map(|s| Other {
            label: format!("{} · {} · {}", view::ts(s.created_at).text, s.status, s.id),
            id: s.id,
        })
        .collect();
    Ok(render(&ExecutionPage {
        nav: "executions",
        id: r.id.clone(),
        profile_id: r.profile_id.clone(),
        profile_name: match state
            .catalog
            .get_profile(&r.profile_id, ProfileLookup::Id)
            .await
        {
            Ok(p) => p.description,
            // The execution outlives a deleted profile: it keeps the id only.
            Err(crate::catalog::CatalogError::NoProfile(_)) => String::new(),
            Err(e) => return Err(e.into()),
        },
        live: matches!(
            r.status,
            ExecutionStatus::AwaitingApproval
                | ExecutionStatus::Pending
                | ExecutionStatus::Running
                | ExecutionStatus::AwaitingLlm
        ),
        llm_wait: (r.llm_wait_ms > 0).then(|| view::duration(Some(r.llm_wait_ms))),
        status: r.status.to_string(),
        script_lines: r.script.lines().count(),
        script: r.script.clone(),
        script_sha256: r.script_sha256.clone(),
        stdout: r.stdout.clone(),
        stderr: r.stderr.clone(),
        result: r.result.as_deref().map(pretty_json),
        error: r.error.clone(),
        llm_request: r
            .llm_request
            .as_ref()
            .and_then(|q| serde_json::to_string_pretty(q).ok()),
        exchanges,
        redactions,
        egress,
        inputs,
        others,
        timeout: r.timeout_secs,
        duration: view::duration(r.execution_time_ms),
        created: view::ts(r.created_at),
        started: view::ts_opt(r.started_at),
        completed: view::ts_opt(r.completed_at),
    }))
}
