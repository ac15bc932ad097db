//! The route table: every endpoint of the `/v1` API, in one place.

mod dashboard;
mod health;
pub(crate) mod jobs;
mod keys;

use crate::error::ApiError;
use crate::transport::{channel, ws};
use crate::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use jobwire_proto::ErrorCode;
use std::net::SocketAddr;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let cors = cors(&state);
    let router: Router<AppState> = Router::new()
        .route("/v1/jobs", post(jobs::create).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route(
            "/v1/jobs/{id}/events",
            post(jobs::publish).get(jobs::events),
        )
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/heartbeat", post(jobs::heartbeat))
        .route("/v1/jobs/{id}/control", get(jobs::control))
        .route("/v1/jobs/{id}/children", get(jobs::children))
        .route("/v1/jobs/{id}/ws", get(ws::single))
        .route("/v1/ws", get(ws::multiplexed))
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/keys/{id}", delete(keys::revoke))
        .route("/v1/projects/{project}/ws", get(channel::project))
        .route("/v1/notifications/ws", get(channel::notifications))
        .route("/v1/openapi.json", get(health::openapi))
        .route("/", get(dashboard::index))
        .route("/assets/{*path}", get(dashboard::assets))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    let router = crate::compat::routes(router, &state.config.compat)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), read_body))
        .layer(middleware::map_response_with_state(
            state.clone(),
            count_client_errors,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        // Spans carry the path only: a `?token=` must never reach a log line.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state);
    match cors {
        Some(c) => router.layer(c),
        None => router,
    }
}

/// CORS for browsers, only when an Origin allow-list is configured.
fn cors(state: &AppState) -> Option<CorsLayer> {
    let origins = state.auth.allowed_origins.as_ref()?;
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("x-api-key"),
            ]),
    )
}

/// Reads a request's body before its handler runs, within `--body-timeout` and
/// holding a per-IP connection slot meanwhile: a body that trickles in gets 408
/// `request_timeout` and its connection is closed, so slow bodies cannot pile up.
async fn read_body(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let slot = match st.limiter.acquire_body(ip) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = req.into_parts();
    let limit = st.config.max_body_bytes;
    let read = tokio::time::timeout(st.config.body_timeout, axum::body::to_bytes(body, limit));
    let bytes = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_big {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "request body exceeds the size limit",
                )
            } else {
                ApiError::new(ErrorCode::BadRequest, "the request body could not be read")
            }
            .into_response();
        }
        Err(_) => {
            st.hub.metrics().body_timeouts.inc();
            let mut resp = ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {:?}",
                    st.config.body_timeout
                ),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
    };
    drop(slot);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Counts every HTTP 4xx answer in `jobwire_client_errors_total`.
async fn count_client_errors(State(st): State<AppState>, resp: Response) -> Response {
    if resp.status().is_client_error() {
        st.hub.metrics().client_errors.inc();
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        "no endpoint at this path; see /v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}
