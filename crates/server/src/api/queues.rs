//! Queues: define or change one (`PUT /v1/queues/{name}`), list them with
//! their counts (`GET /v1/queues`), read one (`GET /v1/queues/{name}`).

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use durable::store::{QueueConfig, QueueState, Rate};
use serde::Deserialize;
use serde_json::{Value, json};

use super::app::App;
use super::error::{ApiError, ApiResult, PathParams, ok, parse};

/// The body of `PUT /v1/queues/{name}`: every limit left out does not
/// hold.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutQueue {
    concurrency: Option<u32>,
    concurrency_key: Option<String>,
    per_key_concurrency: Option<u32>,
    rate: Option<String>,
    burst: Option<u32>,
}

/// A queue as the API shows it.
pub(super) fn queue_json(q: &QueueState) -> Value {
    let c = &q.config;
    json!({
        "name": c.name,
        "concurrency": c.concurrency,
        "concurrency_key": c.concurrency_key,
        "per_key_concurrency": c.per_key_concurrency,
        "rate": c.rate.map(|r| r.to_string()),
        "burst": c.burst,
        "queued": q.queued,
        "active": q.active,
        "tokens": q.tokens,
    })
}

/// Refuses a queue that is not defined (404), naming how to define it.
pub(super) async fn defined(app: &App, name: &str) -> Result<QueueState, ApiError> {
    app.state
        .rt
        .store()
        .queues()
        .await?
        .into_iter()
        .find(|q| q.config.name == name)
        .ok_or_else(|| durable::store::StoreError::QueueNotFound(name.to_string()).into())
}

/// `PUT /v1/queues/{name}`: 201 with the queue when it is new, 200 when
/// its limits changed (its queued runs, their order and its rate's
/// bucket stay).
pub(super) async fn put_queue(
    Extract(app): Extract<App>,
    PathParams(name): PathParams<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: PutQueue = parse(body)?;
    let config = QueueConfig {
        name: name.clone(),
        concurrency: req.concurrency,
        concurrency_key: req.concurrency_key,
        per_key_concurrency: req.per_key_concurrency,
        rate: req
            .rate
            .as_deref()
            .map(Rate::parse)
            .transpose()
            .map_err(ApiError::bad_request)?,
        burst: req.burst.unwrap_or(1),
    };
    config.validate().map_err(ApiError::bad_request)?;
    let store = app.state.rt.store();
    let existed = store.queues().await?.iter().any(|q| q.config.name == name);
    store.put_queue(config).await?;
    // Looser limits may admit runs now.
    app.state.dispatcher.admit_soon();
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    ok(status, queue_json(&defined(&app, &name).await?))
}

/// `GET /v1/queues`.
pub(super) async fn list_queues(Extract(app): Extract<App>) -> ApiResult {
    let queues = app.state.rt.store().queues().await?;
    let list: Vec<Value> = queues.iter().map(queue_json).collect();
    ok(StatusCode::OK, json!({ "queues": list }))
}

/// `GET /v1/queues/{name}`.
pub(super) async fn get_queue(
    Extract(app): Extract<App>,
    PathParams(name): PathParams<String>,
) -> ApiResult {
    ok(StatusCode::OK, queue_json(&defined(&app, &name).await?))
}
