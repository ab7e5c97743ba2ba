//! The HTTP API of `durable serve`, under `/v1`; JSON in and out, one error
//! shape: `{"error": {"code": "...", "message": "..."}}` (`error.rs`).
//! This file holds the router, the state, the token check and the request
//! counter; `components.rs` uploads and names, `runs.rs` everything about
//! runs.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State as Extract};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

use error::{ApiError, ApiResult, ok};

mod app;
mod components;
mod error;
mod guard;
mod queues;
mod runs;

pub use app::{Registered, State, Workflows};
pub use guard::Hosts;

use app::App;

/// The routes.
pub fn router(state: State) -> Router {
    let limit = state.max_body_bytes;
    let long_polls = Arc::new(tokio::sync::Semaphore::new(state.max_long_polls));
    let uploads = Arc::new(tokio::sync::Semaphore::new(state.max_uploads));
    let app = App {
        state,
        names: Arc::default(),
        uploads,
        compiling: Arc::new(tokio::sync::Semaphore::new(2)),
        long_polls,
    };
    // JSON bodies are parsed into a tree: they get the input limit (and
    // room for the rest of the request), whatever the upload limit is.
    let json_limit = app.state.max_input_bytes.saturating_add(64 << 10);
    // Uploads read their bodies themselves, one --max-uploads turn each,
    // up to --max-body-mb.
    let uploads = Router::new()
        .route(
            "/components",
            post(components::put_component).get(components::list_components),
        )
        .route("/components/{digest}", delete(components::delete_component))
        .layer(DefaultBodyLimit::max(limit));
    let v1 = Router::new()
        .route("/runs", post(runs::start_run).get(runs::list_runs))
        .route("/runs/{id}", get(runs::show_run))
        .route("/runs/{id}/result", get(runs::run_result))
        .route("/runs/{id}/events/{name}", post(runs::send_event))
        .route("/runs/{id}/cancel", post(runs::cancel_run))
        .route("/runs/{id}/fork", post(runs::fork_run))
        .route(
            "/workflows",
            post(components::register_workflow).get(components::list_workflows),
        )
        .route("/queues", get(queues::list_queues))
        .route(
            "/queues/{name}",
            axum::routing::put(queues::put_queue).get(queues::get_queue),
        )
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
        .merge(super::ui::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method (see GET /v1/openapi.json)",
            )
        })
        .layer(middleware::from_fn_with_state(
            app.state.hosts.clone(),
            guard::guard,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
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
        // One credential: with two `Authorization` headers neither is
        // taken.
        let single = request
            .headers()
            .get_all(header::AUTHORIZATION)
            .iter()
            .count()
            == 1;
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .filter(|_| single)
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
    let text = app.state.metrics.render(&app.state.rt).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[cfg(test)]
mod tests {
    /// Every `.route("...")` of this file, as the server answers it.
    fn routes() -> Vec<String> {
        include_str!("mod.rs")
            .split(".route(")
            .skip(1)
            // However rustfmt wraps the call, the path is its first string.
            .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
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
