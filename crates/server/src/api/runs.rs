//! Runs: start, list, show, long-poll for the result, events, cancel, fork.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::app::{App, Registered};
use super::components::component;
use super::error::{ApiError, ApiResult, PathParams, ok, parse};
use crate::dispatch::Look;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State as Extract};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use durable::json::same_json;
use durable::store::StartOptions;
use durable::store::{
    Cancelled, Creation, QueuedStart, RunFilter, RunRecord, RunStatus, Sent, StoreError,
};
use durable::tags::Tags;
use durable_api_model as json;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartRun {
    /// A registered workflow's name.
    workflow: Option<String>,
    /// The digest `POST /v1/components` answered.
    component: Option<String>,
    #[serde(default)]
    input: Value,
    id: Option<String>,
    /// The queue to start it in (a registered workflow's own by default).
    queue: Option<String>,
    /// 0-9 in its queue: higher goes first.
    priority: Option<u8>,
    /// Its concurrency key in its queue (the queue's pointer into the
    /// input by default).
    key: Option<String>,
    /// Starts of the workflow with this key within `ms` are one run.
    debounce: Option<DebounceRequest>,
    /// Tags to find the run by (`GET /v1/runs?tag=KEY:VALUE`).
    #[serde(default)]
    tags: Tags,
}

/// `debounce` in `POST /v1/runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DebounceRequest {
    key: String,
    ms: u64,
    #[serde(default)]
    mode: DebounceMode,
}

/// Whose input the debounced run gets.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum DebounceMode {
    /// The last start's.
    #[default]
    Last,
    /// The first start's.
    First,
}

/// Longest debounce window.
const MAX_DEBOUNCE_MS: u64 = 7 * 24 * 3_600_000;

/// Starts run `id` debounced: 201 with a new pending run, 200 with the
/// pending run the start joined.
async fn start_debounced(
    app: &App,
    wf: &durable::runner::LoadedWorkflow,
    id: &str,
    input: &str,
    start_options: &StartOptions,
    debounce: DebounceRequest,
    start: Option<QueuedStart>,
) -> ApiResult {
    durable::store::validate_key("debounce key", &debounce.key).map_err(ApiError::bad_request)?;
    if debounce.ms > MAX_DEBOUNCE_MS {
        return Err(ApiError::bad_request(format!(
            "debounce ms {}: at most {MAX_DEBOUNCE_MS} (7 days)",
            debounce.ms
        )));
    }
    let debounce = durable::store::Debounce {
        key: debounce.key,
        ms: debounce.ms as i64,
        last_wins: debounce.mode == DebounceMode::Last,
    };
    match app
        .state
        .rt
        .debounce(wf, id, input, start_options, debounce, start)
        .await
    {
        Ok(Creation::Created(run)) => {
            app.state.dispatcher.admit_soon();
            ok(StatusCode::CREATED, summary(&run))
        }
        // A run had the id this start asked for.
        Ok(Creation::Existing(run)) if run.id == id => existing(&run, id, input),
        // The pending run of the key.
        Ok(Creation::Existing(run)) => ok(StatusCode::OK, summary(&run)),
        Err(durable::runner::RunError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::bad_request(durable::errors::chain(&e))),
    }
}

pub(super) fn shutting_down(app: &App) -> Result<(), ApiError> {
    if app.state.stopping.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is stopping; start runs on its next start",
        ));
    }
    Ok(())
}

/// The digest of registered workflow `name`.
pub(super) fn registered(app: &App, name: &str) -> Result<Registered, ApiError> {
    app.state
        .workflows
        .lock()
        .ok()
        .and_then(|w| w.get(name).cloned())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no workflow named {name:?} (register it with POST /v1/workflows or in durable.toml)"),
            )
        })
}

/// `POST /v1/runs {component, input, id?}`: 201 with the new run; the same
/// id with the same input: 200 with the run as it is; another input: 409.
pub(super) async fn start_run(
    Extract(app): Extract<App>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    shutting_down(&app)?;
    let req: StartRun = parse(body)?;
    // A caller's trace: the run's drives become its spans' children. A
    // malformed one is ignored, as W3C Trace Context asks.
    let trace_parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(durable::trace::TraceContext::parse)
        .map(|t| t.traceparent());
    let (digest, queue) = match (&req.workflow, &req.component) {
        (Some(name), None) => {
            let r = registered(&app, name)?;
            (r.digest, req.queue.clone().or(r.queue))
        }
        (None, Some(digest)) => (digest.clone(), req.queue.clone()),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `workflow` (a registered name) and `component` (a digest)",
            ));
        }
    };
    let input = req.input.to_string();
    within_input_limit(&app, "the run input", &input)?;
    durable::tags::validate_start(&req.tags).map_err(ApiError::bad_request)?;
    let start_options = StartOptions {
        tags: req.tags.clone(),
        trace_parent,
    };
    let wf = component(&app, &digest, req.workflow.as_deref()).await?;
    let id = req
        .id
        .unwrap_or_else(|| durable::runner::new_run_id(&wf.name));
    durable::runner::validate_run_id(&id).map_err(ApiError::bad_request)?;
    not_a_tick_id(&app, &id)?;
    if queue.is_none() && (req.priority.is_some() || req.key.is_some()) {
        return Err(ApiError::bad_request(
            "`priority` and `key` are a queue's: name a `queue` (or start a workflow registered with one)",
        ));
    }
    let start = queue.map(|queue| QueuedStart {
        queue,
        key: req.key,
        priority: req.priority.unwrap_or(0),
    });
    if let Some(q) = start.as_ref().map(|s| &s.queue) {
        // Not a name any queue can have (a NUL, a '/'): 400 before the
        // database sees it.
        durable::runner::validate_step_name(q)
            .map_err(|e| ApiError::bad_request(format!("queue {q:?}: {}", e.reason)))?;
    }
    if let Some(k) = start.as_ref().and_then(|s| s.key.as_deref()) {
        durable::store::validate_key("key", k).map_err(ApiError::bad_request)?;
    }
    if let Some(start) = &start
        && start.priority > durable::store::MAX_PRIORITY
    {
        return Err(ApiError::bad_request(format!(
            "priority {} is out of range: 0 (the default) to {}",
            start.priority,
            durable::store::MAX_PRIORITY
        )));
    }
    if let Some(debounce) = req.debounce {
        return start_debounced(&app, &wf, &id, &input, &start_options, debounce, start).await;
    }
    if let Some(start) = start {
        return match app
            .state
            .rt
            .enqueue(&wf, &id, &input, &start_options, start)
            .await
        {
            Ok(Creation::Created(run)) => {
                app.state.dispatcher.admit_soon();
                ok(StatusCode::CREATED, summary(&run))
            }
            Ok(Creation::Existing(run)) => existing(&run, &id, &input),
            Err(durable::runner::RunError::Store(e)) => Err(e.into()),
            Err(e) => Err(ApiError::bad_request(durable::errors::chain(&e))),
        };
    }
    let (tell, told) = tokio::sync::oneshot::channel();
    if !app
        .state
        .dispatcher
        .start_run(wf, id.clone(), input.clone(), start_options, tell)
    {
        // A task of this server holds a run with this id: it exists, or
        // another request's start is about to commit it.
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            if let Some(run) = app.state.rt.store().run_for_reading(&id).await? {
                return existing(&run, &id, &input);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!("run {id} is being started by another request; look it up with GET /v1/runs/{id}"),
                )
                .retry_after(1));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The drive answers once the start is committed (one group commit
    // with the other starts and steps of the moment): no read here.
    match tokio::time::timeout(START_WAIT, told).await {
        Ok(Ok(Creation::Created(run))) => ok(StatusCode::CREATED, summary(&run)),
        Ok(Ok(Creation::Existing(run))) => existing(&run, &id, &input),
        // The drive stopped before its commit (it logs why), or the
        // writer is that far behind.
        Ok(Err(_)) | Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("run {id} could not be started now; try again (the server log says why)"),
        )
        .retry_after(1)),
    }
}

/// The answer to a start whose id a run has already: 200 with it if it
/// has the same input, else 409.
fn existing(run: &RunRecord, id: &str, input: &str) -> ApiResult {
    if !same_json(&run.input, input) {
        return Err(conflict(id));
    }
    ok(StatusCode::OK, summary(run))
}

/// How long a start waits for its run's record.
const START_WAIT: Duration = Duration::from_secs(5);

/// Refuses an id in a schedule's space (`NAME@...` of a scheduled
/// workflow): only its ticks may have those.
pub(super) fn not_a_tick_id(app: &App, id: &str) -> Result<(), ApiError> {
    let workflows = app
        .state
        .workflows
        .lock()
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "lock"))?;
    for (name, r) in workflows.iter() {
        if r.schedule.is_some() && id.starts_with(&format!("{name}@")) {
            return Err(ApiError::bad_request(format!(
                "run ids {name}@... belong to the schedule of workflow {name}; choose another id"
            )));
        }
    }
    Ok(())
}

pub(super) fn conflict(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("run {id} exists with another input; choose another id"),
    )
}

/// `{id, status, output, error, waiting_for}`.
pub(super) fn summary(run: &RunRecord) -> Value {
    json!({
        "id": run.id,
        "workflow": run.workflow,
        "status": run.status.as_str(),
        "output": run.output.as_deref().map(json::parse_json),
        "error": run.error,
        "waiting_for": run.waiting_for,
        "queue": run.queue,
    })
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    workflow: Option<String>,
    /// Text, so that any integer (negative, huge) is brought into range.
    limit: Option<String>,
    after: Option<String>,
    prefix: Option<String>,
    /// Only the child workflows of this run.
    parent: Option<String>,
    /// Only runs with this tag, `KEY:VALUE`.
    tag: Option<String>,
    #[serde(default)]
    counts: bool,
}

/// `GET /v1/runs?status=&workflow=&prefix=&parent=&tag=&limit=&after=&counts=`:
/// newest first. An empty parameter is no filter (what a form sends).
pub(super) async fn list_runs(
    Extract(app): Extract<App>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (workflow, prefix, parent) = (given(q.workflow), given(q.prefix), given(q.parent));
    let status = match given(q.status).as_deref() {
        None => None,
        Some(s) => Some(RunStatus::parse_name(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status {s:?}: expected queued, running, waiting, succeeded, failed or cancelled"
            ))
        })?),
    };
    let limit = page_size(q.limit.as_deref())?;
    let tags = match given(q.tag) {
        None => Vec::new(),
        Some(t) => vec![durable::tags::parse(&t, ':').map_err(ApiError::bad_request)?],
    };
    let store = app.state.rt.store();
    let runs = store
        .list(RunFilter {
            status,
            workflow: workflow.clone(),
            limit: limit + 1,
            after: given(q.after),
            prefix: prefix.clone(),
            parent: parent.clone(),
            tags: tags.clone(),
        })
        .await?;
    // One more than asked says whether there is a next page.
    let next = (runs.len() > limit).then(|| runs[limit - 1].run.id.clone());
    let runs: Vec<json::ListedRun> = runs.iter().take(limit).map(json::ListedRun::new).collect();
    if !q.counts {
        return ok(StatusCode::OK, json!({ "runs": runs, "next": next }));
    }
    let mut counts = serde_json::Map::new();
    for s in [
        "queued",
        "running",
        "waiting",
        "succeeded",
        "failed",
        "cancelled",
    ] {
        counts.insert(s.into(), 0.into());
    }
    for (status, n) in store
        .count_by_status(workflow, prefix, parent, tags.into_iter().next())
        .await?
    {
        counts.insert(status, n.into());
    }
    ok(
        StatusCode::OK,
        json!({ "runs": runs, "next": next, "counts": counts }),
    )
}

#[derive(Deserialize)]
pub(super) struct ShowQuery {
    #[serde(default)]
    logs: bool,
}

/// `GET /v1/runs/{id}?logs=true`: the `show --json` shape (docs/json.md).
pub(super) async fn show_run(
    Extract(app): Extract<App>,
    PathParams(id): PathParams<String>,
    q: Result<Query<ShowQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let detail = app.state.rt.store().detail(&id, q.logs).await?;
    let shown = json::shown_run(&detail, q.logs);
    Ok(axum::Json(shown).into_response())
}

#[derive(Deserialize)]
pub(super) struct ResultQuery {
    /// How long to wait for the run to end: `30s`, `500ms`, or ms.
    wait: Option<String>,
}

/// Longest long poll.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(300);

/// `GET /v1/runs/{id}/result?wait=30s`: the run's summary once it has
/// ended, or as it is when the wait is over.
pub(super) async fn run_result(
    Extract(app): Extract<App>,
    PathParams(id): PathParams<String>,
    q: Result<Query<ResultQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let wait = match q.wait.as_deref() {
        None => Duration::ZERO,
        Some(w) => parse_wait(w).ok_or_else(|| {
            ApiError::bad_request(format!(
                "wait {w:?}: expected a duration such as 30s or 500ms"
            ))
        })?,
    }
    .min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Waiting costs a permit: a long poll holds a connection and a task,
    // so their number is bounded (--max-long-polls).
    let _permit = match wait.is_zero() {
        true => None,
        false => Some(app.long_polls.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many long polls are open (--max-long-polls); try again, or poll without wait",
            )
            .retry_after(1)
        })?),
    };
    let watch = app.state.dispatcher.watch(&id);
    loop {
        // Registered before the look: a drive that ends in between still
        // wakes this poll.
        let woken = watch.next();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let over =
            app.state.stopping.load(Ordering::SeqCst) || tokio::time::Instant::now() >= deadline;
        // A drive of this server hands its waiters the run as it left it;
        // while one holds the run there is nothing to read.
        let run = match watch.look() {
            Look::Ended(run) => Some(run),
            Look::Driven if !over => None,
            Look::Driven | Look::Unknown => Some(Arc::new(
                app.state
                    .rt
                    .store()
                    .run_for_reading(&id)
                    .await?
                    .ok_or_else(|| StoreError::RunNotFound(id.clone()))?,
            )),
        };
        if let Some(run) = run
            && (!run.status.is_open() || over)
        {
            return ok(StatusCode::OK, summary(&run));
        }
        // No look at the database until something happens to the run: a
        // drive of it by this server ends, the server sees another process
        // ended it (within OTHERS_POLL), or the server stops.
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// A wait as a query gives it: `30s`, `1.5s`, `500ms`, or a number of ms.
/// Longer than [`MAX_WAIT`] is [`MAX_WAIT`]; anything else (negative, not
/// a number, not finite) is `None`. Never panics, whatever the text.
pub(super) fn parse_wait(w: &str) -> Option<Duration> {
    let w = w.trim();
    let (number, unit_ms) = if let Some(ms) = w.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = w.strip_suffix('s') {
        (s, 1000.0)
    } else {
        (w, 1.0)
    };
    // Digits and at most one point: no signs, exponents, `inf` or `NaN`.
    let mut points = 0;
    let plain = !number.is_empty()
        && number.chars().all(|c| {
            points += usize::from(c == '.');
            c.is_ascii_digit() || c == '.'
        })
        && points <= 1
        && number != ".";
    if !plain {
        return None;
    }
    let ms = number.parse::<f64>().ok()? * unit_ms;
    if !ms.is_finite() || ms < 0.0 {
        return None;
    }
    Some(if ms >= MAX_WAIT.as_millis() as f64 {
        MAX_WAIT
    } else {
        Duration::from_micros((ms * 1000.0) as u64)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendEvent {
    #[serde(default)]
    data: Value,
    id: Option<String>,
}

/// `POST /v1/runs/{id}/events/{name} {data, id?}`: stored (201), or, with
/// an id the run already has an event of, nothing stored (200).
pub(super) async fn send_event(
    Extract(app): Extract<App>,
    PathParams((id, name)): PathParams<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    durable::names::validate_step_name(&name)
        .map_err(|e| ApiError::bad_request(format!("invalid event name: {e}")))?;
    let req: SendEvent = parse(body)?;
    if let Some(eid) = &req.id
        && (eid.is_empty() || eid.len() > 256)
    {
        return Err(ApiError::bad_request("an event id is 1 to 256 bytes"));
    }
    let payload = req.data.to_string();
    within_input_limit(&app, "the payload", &payload)?;
    match app
        .state
        .rt
        .store()
        .send_event(&id, &name, req.id.as_deref(), &payload)
        .await?
    {
        Sent::Stored { seq } => {
            // A run that waited for it is due now: take it up at once
            // rather than at the next poll.
            if let Ok(Some(None)) = app.state.rt.store().due(&id).await {
                app.state.dispatcher.resume(id);
            }
            ok(StatusCode::CREATED, json!({"stored": true, "seq": seq}))
        }
        Sent::Duplicate => ok(StatusCode::OK, json!({"stored": false})),
    }
}

/// `POST /v1/runs/{id}/cancel`: at once when no process drives the run,
/// else at its next durable call.
pub(super) async fn cancel_run(
    Extract(app): Extract<App>,
    PathParams(id): PathParams<String>,
) -> ApiResult {
    match app.state.rt.store().cancel(&id).await {
        Ok(Cancelled::Now) => ok(StatusCode::OK, json!({"id": id, "cancelled": "now"})),
        Ok(Cancelled::Requested) => ok(StatusCode::OK, json!({"id": id, "cancelled": "requested"})),
        Err(StoreError::AlreadyFinished {
            status: RunStatus::Cancelled,
            ..
        }) => ok(StatusCode::OK, json!({"id": id, "cancelled": "already"})),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForkRun {
    from_step: String,
    id: Option<String>,
}

/// `POST /v1/runs/{id}/fork {from_step, id?}`: a new run from the history
/// before that step, started at once.
pub(super) async fn fork_run(
    Extract(app): Extract<App>,
    PathParams(id): PathParams<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    shutting_down(&app)?;
    let req: ForkRun = parse(body)?;
    // No run has an id that is not one: there is nothing to fork (404, as
    // for any missing run), whatever the new id would be.
    if durable::runner::validate_run_id(&id).is_err() {
        return Err(StoreError::RunNotFound(id).into());
    }
    let new_id = req
        .id
        .unwrap_or_else(|| format!("{id}-fork-{}", durable::clock::now_ms()));
    durable::runner::validate_run_id(&new_id).map_err(ApiError::bad_request)?;
    not_a_tick_id(&app, &new_id)?;
    let run = app
        .state
        .rt
        .store()
        .fork(&id, &req.from_step, &new_id)
        .await?;
    app.state.dispatcher.resume(new_id);
    ok(StatusCode::CREATED, summary(&run))
}

/// `limit=`: runs per page, 1 to 1000 (100 when not given); any integer
/// outside is brought into range, anything else is refused.
fn page_size(limit: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = limit.map(str::trim) else {
        return Ok(100);
    };
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "limit={text:?}: expected a number of runs, 1 to 1000"
        )));
    }
    if text.starts_with('-') {
        return Ok(1);
    }
    Ok(digits.parse::<usize>().map_or(1000, |n| n.clamp(1, 1000)))
}

/// Refuses a run input or event payload over `--max-input-bytes` (413).
fn within_input_limit(app: &App, what: &str, json: &str) -> Result<(), ApiError> {
    let limit = app.state.max_input_bytes;
    if json.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{what} is {} bytes, over the input size limit of {limit} bytes (--max-input-bytes)",
                json.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{MAX_WAIT, page_size, parse_wait};

    #[test]
    fn a_page_size_is_brought_into_range_whatever_the_integer() {
        assert_eq!(page_size(None).ok(), Some(100));
        for (text, want) in [
            ("5", 5),
            ("0", 1),
            ("-1", 1),
            ("99999999999999999999999", 1000),
            ("1000", 1000),
        ] {
            assert_eq!(page_size(Some(text)).ok(), Some(want), "{text}");
        }
        for bad in ["", "x", "1e3", "--1"] {
            assert!(page_size(Some(bad)).is_err(), "{bad}");
        }
    }
    use std::time::Duration;

    #[test]
    fn waits_parse_and_absurd_ones_are_capped_or_refused() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait(" 2s "), Some(Duration::from_secs(2)));
        // Longer than the longest long poll: the longest long poll.
        for long in [
            "1e20s",
            "100000000000000000000000000000s",
            "99999999999999999999ms",
        ] {
            let parsed = parse_wait(long);
            assert!(
                parsed.is_none() || parsed == Some(MAX_WAIT),
                "{long}: {parsed:?}"
            );
        }
        assert_eq!(
            parse_wait("100000000000000000000000000000s"),
            Some(MAX_WAIT)
        );
        for junk in [
            "", "s", "ms", ".s", "-1s", "1e3", "inf", "infs", "NaNs", "1..2s", "+5s", "5 s",
            "1_000ms", "\u{0}",
        ] {
            assert_eq!(parse_wait(junk), None, "{junk:?}");
        }
    }

    /// Random text made of what waits are made of never panics the parser.
    #[test]
    fn wait_parsing_survives_random_text() {
        const ALPHABET: &[u8] = b"0123456789.msSeE+-_ infNa\x00\xff";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let len = (next() % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            if let Some(d) = parse_wait(&text) {
                assert!(d <= MAX_WAIT, "{text:?} gave {d:?}");
            }
        }
    }
}
