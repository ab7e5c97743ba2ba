//! Components (uploads, compiled once per server) and the names runs can be
//! started by: `/v1/components`, `/v1/workflows`.

use super::app::{App, Registered};
use super::error::{ApiError, ApiResult, PathParams, ok, parse};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use durable::runner::LoadedWorkflow;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub(super) struct ComponentQuery {
    /// The workflow name runs started by the component's digest get; a
    /// component keeps the first name it is stored with ("workflow" when
    /// none is given).
    name: Option<String>,
}

/// `POST /v1/components?name=NAME`: the `.wasm` bytes; checked, compiled,
/// stored. Answers `{digest, name, world}`: 201 when new, 200 when stored
/// already (with the name it kept).
///
/// At most `--max-uploads` bodies are read at once: the others wait for
/// their turn before a byte of theirs is buffered.
pub(super) async fn put_component(
    Extract(app): Extract<App>,
    q: Result<Query<ComponentQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(name) = &q.name {
        durable::runner::validate_workflow_name(name).map_err(ApiError::bad_request)?;
    }
    let limit = app.state.max_body_bytes;
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        // Refused before it takes a turn or a byte of memory.
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the upload is over --max-body-mb ({} MiB)", limit >> 20),
        ));
    }
    let _turn = app
        .uploads
        .acquire()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    // A client that stops sending holds its turn no longer than this.
    let read = tokio::time::timeout(UPLOAD_READ, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the upload did not arrive within {} s; send it whole, at once",
                    UPLOAD_READ.as_secs()
                ),
            )
        })?;
    let bytes = read.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the upload could not be read whole ({e}); the server takes uploads up to \
                     --max-body-mb ({} MiB)",
                app.state.max_body_bytes >> 20
            ),
        )
    })?;
    // The buffer itself, not a copy of it.
    let bytes = Vec::from(bytes);
    let wf = load(&app, q.name.as_deref().unwrap_or(DEFAULT_NAME), bytes).await?;
    let known = app
        .state
        .rt
        .store()
        .component_names(std::slice::from_ref(&wf.digest))
        .await?;
    let name = app
        .state
        .rt
        .store()
        .put_component(&wf.digest, wf.bytes.clone(), q.name.as_deref())
        .await?
        .unwrap_or_else(|| DEFAULT_NAME.to_string());
    remember_name(&app, &wf.digest, &name);
    let status = match known.is_empty() {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    ok(
        status,
        json!({"digest": wf.digest, "name": name, "world": "durable:workflow/workflow"}),
    )
}

/// Longest time an upload's body may take to arrive.
const UPLOAD_READ: std::time::Duration = std::time::Duration::from_secs(60);

/// The name runs of a component get when none was ever given.
const DEFAULT_NAME: &str = "workflow";

fn remember_name(app: &App, digest: &str, name: &str) {
    if let Ok(mut names) = app.names.lock() {
        names.insert(digest.to_string(), name.to_string());
    }
}

/// Compiles (or takes from the compile cache) on a blocking thread; the
/// runtime keeps it loaded within its budget (`--max-loaded-mb`).
pub(super) async fn load(
    app: &App,
    name: &str,
    bytes: Vec<u8>,
) -> Result<LoadedWorkflow, ApiError> {
    let _turn = app
        .compiling
        .acquire()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    let rt = app.state.rt.clone();
    let name = name.to_string();
    let loaded = tokio::task::spawn_blocking(move || {
        let loaded = rt.load(&name, bytes);
        // A compile's scratch memory (and an upload's body) goes back to
        // the system, not only to the allocator.
        durable::runner::release_freed_memory();
        loaded
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    loaded.map_err(|e| ApiError::invalid(durable::errors::chain(&e)))
}

/// A component stored before (uploaded to this server or to another one
/// sharing the database), loaded, named `name` or, when `None`, by the
/// name it was stored with.
pub(super) async fn component(
    app: &App,
    digest: &str,
    name: Option<&str>,
) -> Result<LoadedWorkflow, ApiError> {
    let name = match name {
        Some(n) => n.to_string(),
        None => stored_name(app, digest).await?,
    };
    if let Some(mut wf) = app.state.rt.loaded(digest) {
        wf.name = name;
        return Ok(wf);
    }
    let bytes = app
        .state
        .rt
        .store()
        .component(digest)
        .await?
        .ok_or_else(|| no_component(digest))?;
    load(app, &name, bytes).await
}

fn no_component(digest: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no component with digest {digest}; upload it with POST /v1/components"),
    )
}

/// The name a component was stored with.
async fn stored_name(app: &App, digest: &str) -> Result<String, ApiError> {
    if let Some(n) = app.names.lock().ok().and_then(|n| n.get(digest).cloned()) {
        return Ok(n);
    }
    let found = app
        .state
        .rt
        .store()
        .component_names(&[digest.to_string()])
        .await?;
    let name = match found.into_iter().next() {
        Some((_, n)) => n.unwrap_or_else(|| DEFAULT_NAME.to_string()),
        None => return Err(no_component(digest)),
    };
    remember_name(app, digest, &name);
    Ok(name)
}

/// `GET /v1/components`: every stored component, with the runs that use
/// it.
pub(super) async fn list_components(Extract(app): Extract<App>) -> ApiResult {
    let list: Vec<Value> = app
        .state
        .rt
        .store()
        .components()
        .await?
        .iter()
        .map(|c| {
            json!({
                "digest": c.digest,
                "name": c.name.as_deref().unwrap_or(DEFAULT_NAME),
                "bytes": c.bytes,
                "added_at_ms": c.added_at_ms,
                "runs": c.runs,
                "open_runs": c.open_runs,
            })
        })
        .collect();
    ok(StatusCode::OK, json!({ "components": list }))
}

/// `DELETE /v1/components/{digest}`: a component no run and no registered
/// workflow uses (409 otherwise).
pub(super) async fn delete_component(
    Extract(app): Extract<App>,
    PathParams(digest): PathParams<String>,
) -> ApiResult {
    let names: Vec<String> = app
        .state
        .workflows
        .lock()
        .map(|w| {
            w.iter()
                .filter(|(_, r)| r.digest == digest)
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default();
    if !names.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "component {digest} is registered as workflow {}; register another component \
                 under that name first",
                names.join(", ")
            ),
        ));
    }
    app.state.rt.store().delete_component(&digest).await?;
    app.state.rt.unload(&digest);
    if let Ok(mut n) = app.names.lock() {
        n.remove(&digest);
    }
    ok(StatusCode::OK, json!({"digest": digest, "deleted": true}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Register {
    name: String,
    component: String,
    /// The queue its runs are started in.
    queue: Option<String>,
}

pub(super) fn workflow_json(name: &str, r: &Registered) -> Value {
    json!({"name": name, "digest": r.digest, "schedule": r.schedule, "input": r.input, "queue": r.queue})
}

/// `GET /v1/workflows`.
pub(super) async fn list_workflows(Extract(app): Extract<App>) -> ApiResult {
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
pub(super) async fn register_workflow(
    Extract(app): Extract<App>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: Register = parse(body)?;
    durable::runner::validate_workflow_name(&req.name).map_err(ApiError::bad_request)?;
    if let Some(q) = &req.queue {
        super::queues::defined(&app, q).await?;
    }
    // Known, and compiled, before the name points at it.
    let loaded = component(&app, &req.component, Some(&req.name)).await?;
    let mut workflows = app
        .state
        .workflows
        .lock()
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "lock"))?;
    let entry = Registered {
        digest: req.component.clone(),
        schedule: None,
        input: None,
        queue: req.queue.clone(),
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
    // Child workflows of the name run it from now on, as new runs do.
    app.state.rt.link(&req.name, &loaded);
    workflows.insert(req.name, entry);
    // Runs that backed off because a child of this name was unknown go
    // on now, not after their back-off.
    app.state.dispatcher.forget_failures();
    ok(status, shown)
}
