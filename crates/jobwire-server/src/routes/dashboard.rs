//! The dashboard: `GET /` and `GET /assets/*`, served from the bundle embedded at
//! build time (`dashboard/dist/`, see `build.rs`), or from `--dashboard-dir` on disk
//! when set (for working on the dashboard without rebuilding the server).

use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jobwire_proto::ErrorCode;
use std::borrow::Cow;

/// (path under `dist/`, bytes) for every file of the embedded bundle.
static EMBEDDED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// `GET /`: the dashboard's page.
pub(crate) async fn index(State(st): State<AppState>) -> Response {
    match asset(&st, "index.html").await {
        Some(body) => reply("index.html", body),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "this jobwire binary was built without the dashboard (dashboard/dist is missing); \
             run `npm ci && npm run build` in dashboard/ and rebuild, or pass --dashboard-dir\n",
        )
            .into_response(),
    }
}

/// `GET /assets/{*path}`: the page's scripts, styles and images.
pub(crate) async fn assets(State(st): State<AppState>, ApiPath(path): ApiPath<String>) -> Response {
    let rel = format!("assets/{path}");
    if !safe(&rel) {
        return ApiError::new(ErrorCode::RouteNotFound, "no such dashboard asset").into_response();
    }
    match asset(&st, &rel).await {
        Some(body) => reply(&rel, body),
        None => ApiError::new(ErrorCode::RouteNotFound, "no such dashboard asset").into_response(),
    }
}

/// The bytes of `rel` (a path under `dist/`): from `--dashboard-dir` if set, else embedded.
async fn asset(st: &AppState, rel: &str) -> Option<Cow<'static, [u8]>> {
    match &st.config.dashboard_dir {
        Some(dir) => tokio::fs::read(dir.join(rel)).await.ok().map(Cow::Owned),
        None => EMBEDDED
            .iter()
            .find(|(p, _)| *p == rel)
            .map(|(_, b)| Cow::Borrowed(*b)),
    }
}

/// Only plain relative paths: no `..`, no hidden files, no backslashes.
fn safe(rel: &str) -> bool {
    rel.split('/').all(|seg| {
        !seg.is_empty()
            && !seg.starts_with('.')
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    })
}

fn reply(rel: &str, body: Cow<'static, [u8]>) -> Response {
    let ext = rel.rsplit('.').next().unwrap_or("");
    let ctype = match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    };
    let mut resp = body.into_owned().into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    // Assets are not content-hashed (the build must be reproducible): revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if ext == "html" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; connect-src 'self' http: https: ws: wss:; \
                 img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn only_plain_relative_paths_are_served() {
        assert!(safe("assets/app.js"));
        assert!(safe("assets/img/logo.svg"));
        assert!(!safe("assets/../secret"));
        assert!(!safe("assets/.env"));
        assert!(!safe("assets//x"));
        assert!(!safe("assets/a\\b"));
        assert!(!safe("assets/%2e%2e"));
    }
}
