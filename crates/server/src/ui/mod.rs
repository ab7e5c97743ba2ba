//! The web UI of `durable serve`: one page (`index.html`) and its script and
//! style sheet, embedded in the binary, served at `/` and `/runs/{id}`.
//!
//! The page talks to the public `/v1` API only, like any other client, so
//! nothing here reads the store. The assets hold no data: they are served
//! without the token, and the page asks for the token when the API does.
//! A strict Content-Security-Policy (no inline script or style, nothing
//! from elsewhere) backs up the page's rule of putting guest data in the
//! DOM as text only.
//!
//! With `DURABLE_UI_DIR` set, the files are read from that directory on
//! each request instead: for working on the UI without rebuilding.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// The UI's routes: the page at `/` and `/runs/{id}`, its assets under `/ui/`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| asset("index.html", INDEX)))
        .route("/runs/{*id}", get(|| asset("index.html", INDEX)))
        .route("/ui/app.js", get(|| asset("app.js", SCRIPT)))
        .route("/ui/style.css", get(|| asset("style.css", STYLE)))
}

/// `name`, embedded as `embedded`, or read from `DURABLE_UI_DIR` (a
/// development aid: small files, read on the request's thread).
async fn asset(name: &'static str, embedded: &'static str) -> Response {
    let body = match std::env::var_os("DURABLE_UI_DIR") {
        None => embedded.to_string(),
        Some(dir) => match std::fs::read_to_string(std::path::Path::new(&dir).join(name)) {
            Ok(text) => text,
            Err(e) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("DURABLE_UI_DIR: {name}: {e}"),
                )
                    .into_response();
            }
        },
    };
    let kind = match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "text/html; charset=utf-8",
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
