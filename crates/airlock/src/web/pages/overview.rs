//! The overview page: what waits for the operator, counts, the chart, recent runs.

use super::*;

// ----- overview -----

pub struct PendingView {
    pub id: String,
    pub description: String,
    pub missing: Vec<String>,
}

pub struct ProfileCount {
    pub id: String,
    pub count: i64,
    pub max: i64,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: &'static str,
    sandbox: SandboxView,
    /// Where and why the audit log does not check out (empty when it does).
    audit_broken: Option<(i64, String)>,
    active: Vec<ProfileRowView>,
    /// Agent requests waiting for an answer.
    requests: Vec<super::requests::Row>,
    pending: Vec<PendingView>,
    ready_to_lock: Vec<ProfileRowView>,
    profiles_total: usize,
    credentials_total: usize,
    credentials_missing: usize,
    executions_total: i64,
    error_rate: String,
    failed: i64,
    p50: String,
    p90: String,
    p99: String,
    max: String,
    chart: DayChart,
    chart_w: f64,
    chart_h: f64,
    by_profile: Vec<ProfileCount>,
    recent: Vec<ExecRow>,
    stats_days: usize,
}

pub async fn overview(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    require_session(&state, &headers, "/").await?;
    let profiles = state.catalog.list_profiles().await?;
    let creds = state.catalog.list_credentials().await?;
    let active = profiles
        .iter()
        .filter(|p| view::profile_state(p) == "locked")
        .map(profile_row)
        .collect();
    let open: Vec<&ProfileView> = profiles
        .iter()
        .filter(|p| !p.locked && !p.revoked)
        .collect();
    let requests: Vec<super::requests::Row> =
        crate::inbox::list(&state, None, Some(airlock_store::RequestStatus::Pending))
            .await
            .map_err(crate::error::ApiError::from)?
            .iter()
            .map(super::requests::row)
            .collect();
    // A profile that is itself a waiting request is listed once, as the request.
    let asked = |p: &ProfileView| {
        p.request
            .as_ref()
            .is_some_and(|r| r.status == airlock_store::RequestStatus::Pending)
    };
    let pending = open
        .iter()
        .filter(|p| !asked(p) && p.credentials.iter().any(|c| !c.value_exists))
        .map(|p| PendingView {
            id: p.id.clone(),
            description: p.description.clone(),
            missing: missing_values(p),
        })
        .collect();
    let ready_to_lock = open
        .iter()
        .filter(|p| {
            !asked(p) && !p.credentials.is_empty() && p.credentials.iter().all(|c| c.value_exists)
        })
        .map(|p| profile_row(p))
        .collect();

    let now = Utc::now();
    let since = (now - Duration::days(STATS_DAYS as i64 - 1))
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let st = state.store.execution_stats(Some(since)).await?;
    let pct = |p| view::duration(st.duration_percentile(p));
    let top = st.by_profile.iter().map(|(_, n)| *n).max().unwrap_or(0);

    Ok(render(&OverviewPage {
        nav: "overview",
        sandbox: sandbox_view(&state),
        audit_broken: {
            let v = state.audit.verification();
            (v.state == "broken").then(|| {
                (
                    v.broken_at.unwrap_or_default(),
                    v.reason.unwrap_or_default(),
                )
            })
        },
        active,
        requests,
        pending,
        ready_to_lock,
        profiles_total: profiles.len(),
        credentials_total: creds.len(),
        credentials_missing: creds.iter().filter(|c| !c.value_exists).count(),
        executions_total: st.total(),
        error_rate: st.error_rate().map_or_else(|| "—".into(), view::percent),
        failed: st.failed(),
        p50: pct(50.0),
        p90: pct(90.0),
        p99: pct(99.0),
        max: view::duration(st.duration_max()),
        chart: chart::days(&st.by_day, now.date_naive(), STATS_DAYS),
        chart_w: chart::WIDTH,
        chart_h: chart::HEIGHT,
        by_profile: st
            .by_profile
            .iter()
            .take(8)
            .map(|(id, n)| ProfileCount {
                id: id.clone(),
                count: *n,
                max: top,
            })
            .collect(),
        recent: recent_executions(&state, None, 8, &profile_names(&profiles)).await?,
        stats_days: STATS_DAYS,
    }))
}
