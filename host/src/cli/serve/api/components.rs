//! Components (uploads, compiled once per server) and the names runs can be
//! started by: `/v1/components`, `/v1/workflows`.

use super::error::{ApiError, ApiResult, ok, parse};
use super::{App, Registered};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State as Extract};
use axum::http::StatusCode;
use durable::runner::LoadedWorkflow;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub(super) struct ComponentQuery {
    /// The workflow name runs of this component get (default: "workflow").
    name: Option<String>,
}

/// `POST /v1/components?name=NAME`: the `.wasm` bytes; checked, compiled,
/// stored. Answers `{digest, name, world}`.
pub(super) async fn put_component(
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
pub(super) async fn component(
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
pub(super) struct Register {
    name: String,
    component: String,
}

pub(super) fn workflow_json(name: &str, r: &Registered) -> Value {
    json!({"name": name, "digest": r.digest, "schedule": r.schedule, "input": r.input})
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
