//! The HTTP API of `durable serve`, under `/v1`; JSON in and out, one error
//! shape: `{"error": {"code": "...", "message": "..."}}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State as Extract};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use durable::engine::LoadedWorkflow;
use durable::runner::Runtime;
use durable::store::{Cancelled, RunFilter, RunRecord, RunStatus, Sent, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::dispatch::{Dispatcher, POLL};
use crate::cli::json;

/// What every handler shares.
#[derive(Clone)]
pub struct State {
    pub rt: Arc<Runtime>,
    pub dispatcher: Dispatcher,
    pub token: Option<String>,
    pub max_input_bytes: usize,
    pub max_body_bytes: usize,
    /// Registered workflows: from durable.toml, and over the API.
    pub workflows: Workflows,
    /// Set when the server stops: no new runs.
    pub stopping: Arc<AtomicBool>,
    /// What `/metrics` shows.
    pub metrics: Arc<super::metrics::Metrics>,
}

/// A name runs can be started by.
#[derive(Clone, Debug)]
pub struct Registered {
    /// The component's digest (stored).
    pub digest: String,
    /// A cron schedule, from durable.toml.
    pub schedule: Option<String>,
    /// The input of scheduled runs.
    pub input: Option<Value>,
    /// Registered in durable.toml: the API cannot re-point it.
    pub from_config: bool,
}

/// Registered workflows by name.
pub type Workflows = Arc<Mutex<std::collections::BTreeMap<String, Registered>>>;

/// Loaded components by digest (compiled once per server).
type Loaded = Arc<Mutex<HashMap<String, LoadedWorkflow>>>;

#[derive(Clone)]
struct App {
    state: State,
    loaded: Loaded,
    /// Compiles at once: an upload costs a core for seconds.
    compiling: Arc<tokio::sync::Semaphore>,
}

/// The routes.
pub fn router(state: State) -> Router {
    let limit = state.max_body_bytes;
    let app = App {
        state,
        loaded: Arc::default(),
        compiling: Arc::new(tokio::sync::Semaphore::new(2)),
    };
    // JSON bodies are parsed into a tree: they get the input limit (and
    // room for the rest of the request), not the upload limit.
    let json_limit = app
        .state
        .max_input_bytes
        .saturating_add(64 << 10)
        .min(limit);
    let uploads = Router::new()
        .route("/components", post(put_component))
        .layer(DefaultBodyLimit::max(limit));
    let v1 = Router::new()
        .route("/runs", post(start_run).get(list_runs))
        .route("/runs/{id}", get(show_run))
        .route("/runs/{id}/result", get(run_result))
        .route("/runs/{id}/events/{name}", post(send_event))
        .route("/runs/{id}/cancel", post(cancel_run))
        .route("/runs/{id}/fork", post(fork_run))
        .route("/workflows", post(register_workflow).get(list_workflows))
        .layer(DefaultBodyLimit::max(json_limit))
        .merge(uploads)
        .route_layer(middleware::from_fn_with_state(app.clone(), authorize))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi));
    let metrics = Router::new()
        .route("/metrics", get(render_metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), authorize));
    Router::new()
        .nest("/v1", v1)
        .merge(metrics)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method (see GET /v1/openapi.json)",
            )
        })
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

/// An error answer.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            status,
            code,
            message: message.to_string(),
        }
    }

    fn bad_request(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn invalid(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let (status, code) = match &e {
            StoreError::RunNotFound(_) | StoreError::StepNotFound { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            StoreError::AlreadyFinished { .. } | StoreError::RunExists(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            StoreError::Locked { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, crate::cli::run::chain(&e))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> ApiError {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        ApiError::new(
            e.status(),
            code,
            format!(
                "{} (the server takes bodies up to --max-body-mb)",
                e.body_text()
            ),
        )
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, axum::Json(body)).into_response())
}

/// A JSON body of type `T`.
fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not the JSON expected: {e}")))
}

/// Counts every answer by route template and status, for `/metrics`.
async fn count(Extract(app): Extract<App>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    app.state
        .metrics
        .request(&route, response.status().as_u16());
    response
}

/// Equal strings, in a time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a request without the server's token, when it has one.
async fn authorize(Extract(app): Extract<App>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs `Authorization: Bearer <token>` (its --token)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn health() -> ApiResult {
    ok(StatusCode::OK, json!({"status": "ok"}))
}

/// The API's OpenAPI 3 document (docs/api.md says the same for people).
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn render_metrics(Extract(app): Extract<App>) -> ApiResult {
    let text = app.state.metrics.render(app.state.rt.store()).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[derive(Deserialize)]
struct ComponentQuery {
    /// The workflow name runs of this component get (default: "workflow").
    name: Option<String>,
}

/// `POST /v1/components?name=NAME`: the `.wasm` bytes; checked, compiled,
/// stored. Answers `{digest, name, world}`.
async fn put_component(
    Extract(app): Extract<App>,
    q: Result<Query<ComponentQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let bytes = body?.to_vec();
    let name = q.name.unwrap_or_else(|| "workflow".to_string());
    if durable::history::validate_name(&name).is_err() {
        return Err(ApiError::bad_request(format!(
            "{name:?} is not a workflow name"
        )));
    }
    let wf = load(&app, &name, bytes).await?;
    app.state
        .rt
        .store()
        .put_component(&wf.digest, wf.bytes.clone())
        .await?;
    ok(
        StatusCode::CREATED,
        json!({"digest": wf.digest, "name": wf.name, "world": "durable:workflow/workflow"}),
    )
}

/// Compiles (or takes from the compile cache) on a blocking thread.
async fn load(app: &App, name: &str, bytes: Vec<u8>) -> Result<LoadedWorkflow, ApiError> {
    let _turn = app
        .compiling
        .acquire()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    let rt = app.state.rt.clone();
    let name = name.to_string();
    let wf = tokio::task::spawn_blocking(move || rt.load(&name, bytes))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?
        .map_err(|e| ApiError::invalid(crate::cli::run::chain(&e)))?;
    if let Ok(mut m) = app.loaded.lock() {
        m.insert(wf.digest.clone(), wf.clone());
    }
    Ok(wf)
}

/// A component uploaded before (to this server or, stored, to an earlier
/// one).
async fn component(
    app: &App,
    digest: &str,
    name: Option<&str>,
) -> Result<LoadedWorkflow, ApiError> {
    if let Some(wf) = app.loaded.lock().ok().and_then(|m| m.get(digest).cloned()) {
        let mut wf = wf;
        if let Some(n) = name {
            n.clone_into(&mut wf.name);
        }
        return Ok(wf);
    }
    let bytes = app
        .state
        .rt
        .store()
        .component(digest)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no component with digest {digest}; upload it with POST /v1/components"),
            )
        })?;
    load(app, name.unwrap_or("workflow"), bytes).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRun {
    /// A registered workflow's name.
    workflow: Option<String>,
    /// The digest `POST /v1/components` answered.
    component: Option<String>,
    #[serde(default)]
    input: Value,
    id: Option<String>,
}

fn shutting_down(app: &App) -> Result<(), ApiError> {
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
fn registered(app: &App, name: &str) -> Result<Registered, ApiError> {
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
async fn start_run(Extract(app): Extract<App>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    shutting_down(&app)?;
    let req: StartRun = parse(body)?;
    let digest = match (&req.workflow, &req.component) {
        (Some(name), None) => registered(&app, name)?.digest,
        (None, Some(digest)) => digest.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `workflow` (a registered name) and `component` (a digest)",
            ));
        }
    };
    let input = req.input.to_string();
    if input.len() > app.state.max_input_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the run input is {} bytes, over the input size limit of {} bytes (--max-input-bytes)",
                input.len(),
                app.state.max_input_bytes
            ),
        ));
    }
    let wf = component(&app, &digest, req.workflow.as_deref()).await?;
    let id = req
        .id
        .unwrap_or_else(|| crate::cli::run::new_run_id(&wf.name));
    durable::runner::validate_run_id(&id).map_err(ApiError::bad_request)?;
    not_a_tick_id(&app, &id)?;
    let store = app.state.rt.store();
    if let Some(run) = store.run(&id).await? {
        // Interrupted or waiting, the dispatcher takes it up when due.
        if !same_json(&run.input, &input) {
            return Err(conflict(&id));
        }
        return ok(StatusCode::OK, summary(&run));
    }
    if !app
        .state
        .dispatcher
        .start_run(wf, id.clone(), input.clone())
    {
        // Started a moment ago by another request: wait for its record.
        tokio::time::sleep(POLL).await;
    }
    // The drive claims the run at once; answer when it is recorded.
    for _ in 0..200 {
        if let Some(run) = store.run(&id).await? {
            if !same_json(&run.input, &input) {
                return Err(conflict(&id));
            }
            return ok(StatusCode::CREATED, summary(&run));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        format!("run {id} was not recorded within a second; look it up with GET /v1/runs/{id}"),
    ))
}

/// Refuses an id in a schedule's space (`NAME@...` of a scheduled
/// workflow): only its ticks may have those.
fn not_a_tick_id(app: &App, id: &str) -> Result<(), ApiError> {
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

fn conflict(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("run {id} exists with another input; choose another id"),
    )
}

fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// `{id, status, output, error, waiting_for}`.
fn summary(run: &RunRecord) -> Value {
    json!({
        "id": run.id,
        "workflow": run.workflow,
        "status": run.status.as_str(),
        "output": run.output.as_deref().map(json::parse_json),
        "error": run.error,
        "waiting_for": run.waiting_for,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    workflow: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

/// `GET /v1/runs?status=&workflow=&limit=`: newest first.
async fn list_runs(
    Extract(app): Extract<App>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(RunStatus::parse_name(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status {s:?}: expected running, waiting, succeeded, failed or cancelled"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let runs = app
        .state
        .rt
        .store()
        .list(RunFilter {
            status,
            workflow: q.workflow,
            limit: limit + 1,
            after: q.after,
        })
        .await?;
    // One more than asked says whether there is a next page.
    let next = (runs.len() > limit).then(|| runs[limit - 1].run.id.clone());
    let runs: Vec<json::ListedRun> = runs.iter().take(limit).map(json::ListedRun::new).collect();
    ok(StatusCode::OK, json!({ "runs": runs, "next": next }))
}

#[derive(Deserialize)]
struct ShowQuery {
    #[serde(default)]
    logs: bool,
}

/// `GET /v1/runs/{id}?logs=true`: the `show --json` shape (docs/json.md).
async fn show_run(
    Extract(app): Extract<App>,
    Path(id): Path<String>,
    q: Result<Query<ShowQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let detail = app.state.rt.store().detail(&id, q.logs).await?;
    let shown = json::shown_run(&detail, q.logs);
    Ok(axum::Json(shown).into_response())
}

#[derive(Deserialize)]
struct ResultQuery {
    /// How long to wait for the run to end: `30s`, `500ms`, or ms.
    wait: Option<String>,
}

/// Longest long poll.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// `GET /v1/runs/{id}/result?wait=30s`: the run's summary once it has
/// ended, or as it is when the wait is over.
async fn run_result(
    Extract(app): Extract<App>,
    Path(id): Path<String>,
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
    let watch = app.state.dispatcher.watch(&id);
    loop {
        let run = app
            .state
            .rt
            .store()
            .run_for_reading(&id)
            .await?
            .ok_or_else(|| StoreError::RunNotFound(id.clone()))?;
        let stopping = app.state.stopping.load(Ordering::SeqCst);
        if !run.status.is_open() || stopping || tokio::time::Instant::now() >= deadline {
            return ok(StatusCode::OK, summary(&run));
        }
        // A drive of this run by this server ending wakes the poll at
        // once; a run driven by another process is seen within POLL.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::select! {
            () = watch.drive_ended() => {}
            () = tokio::time::sleep(POLL.min(left)) => {}
        }
    }
}

fn parse_wait(w: &str) -> Option<Duration> {
    let w = w.trim();
    if let Some(ms) = w.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(s) = w.strip_suffix('s') {
        return s
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
    }
    w.parse().ok().map(Duration::from_millis)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendEvent {
    #[serde(default)]
    data: Value,
    id: Option<String>,
}

/// `POST /v1/runs/{id}/events/{name} {data, id?}`: stored (201), or, with
/// an id the run already has an event of, nothing stored (200).
async fn send_event(
    Extract(app): Extract<App>,
    Path((id, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    durable::history::validate_name(&name)
        .map_err(|e| ApiError::bad_request(format!("invalid event name: {e}")))?;
    let req: SendEvent = parse(body)?;
    if let Some(eid) = &req.id
        && (eid.is_empty() || eid.len() > 256)
    {
        return Err(ApiError::bad_request("an event id is 1 to 256 bytes"));
    }
    let payload = req.data.to_string();
    if payload.len() > app.state.max_input_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the payload is {} bytes, over the limit of {} bytes (--max-input-bytes)",
                payload.len(),
                app.state.max_input_bytes
            ),
        ));
    }
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
async fn cancel_run(Extract(app): Extract<App>, Path(id): Path<String>) -> ApiResult {
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
struct ForkRun {
    from_step: String,
    id: Option<String>,
}

/// `POST /v1/runs/{id}/fork {from_step, id?}`: a new run from the history
/// before that step, started at once.
async fn fork_run(
    Extract(app): Extract<App>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    shutting_down(&app)?;
    let req: ForkRun = parse(body)?;
    let new_id = req
        .id
        .unwrap_or_else(|| format!("{id}-fork-{}", durable::store::now_ms()));
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    name: String,
    component: String,
}

fn workflow_json(name: &str, r: &Registered) -> Value {
    json!({"name": name, "digest": r.digest, "schedule": r.schedule, "input": r.input})
}

/// `GET /v1/workflows`.
async fn list_workflows(Extract(app): Extract<App>) -> ApiResult {
    let list: Vec<Value> = app
        .state
        .workflows
        .lock()
        .map(|w| w.iter().map(|(n, r)| workflow_json(n, r)).collect())
        .unwrap_or_default();
    ok(StatusCode::OK, json!({ "workflows": list }))
}

/// `POST /v1/workflows {name, component}`: a name for an uploaded
/// component; new runs of the name use it. Names from durable.toml stay.
async fn register_workflow(
    Extract(app): Extract<App>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: Register = parse(body)?;
    durable::history::validate_name(&req.name)
        .map_err(|e| ApiError::bad_request(format!("workflow name: {e}")))?;
    // Known, and compiled, before the name points at it.
    component(&app, &req.component, Some(&req.name)).await?;
    let mut workflows = app
        .state
        .workflows
        .lock()
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "lock"))?;
    let entry = Registered {
        digest: req.component.clone(),
        schedule: None,
        input: None,
        from_config: false,
    };
    let status = match workflows.get(&req.name) {
        Some(r) if r.from_config => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "workflow {:?} is registered in durable.toml; change it there",
                    req.name
                ),
            ));
        }
        Some(_) => StatusCode::OK,
        None => StatusCode::CREATED,
    };
    let shown = workflow_json(&req.name, &entry);
    workflows.insert(req.name, entry);
    ok(status, shown)
}

#[cfg(test)]
mod tests {
    /// Every `.route("...")` of this file, as the server answers it.
    fn routes() -> Vec<String> {
        include_str!("api.rs")
            .split(".route(\"")
            .skip(1)
            .filter_map(|r| r.split('"').next())
            .filter(|r| r.starts_with('/'))
            .map(|r| {
                if r == "/metrics" {
                    r.to_string()
                } else {
                    format!("/v1{r}")
                }
            })
            .collect()
    }

    #[test]
    fn every_route_of_the_server_is_in_the_openapi_document_and_back() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("valid JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let routes = routes();
        assert!(routes.len() >= 11, "{routes:?}");
        for r in &routes {
            assert!(paths.contains_key(r), "{r} is not in openapi.json");
        }
        for p in paths.keys() {
            assert!(
                routes.contains(p),
                "openapi.json has {p}, which the server does not"
            );
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(super::same_secret(b"s3cret", b"s3cret"));
        assert!(!super::same_secret(b"s3cret", b"s3creT"));
        assert!(!super::same_secret(b"s3cret", b"s3cre"));
    }
}
