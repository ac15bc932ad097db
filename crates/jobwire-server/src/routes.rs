//! The route table: every endpoint of the `/v1` API, in one place.

mod dashboard;
mod health;
mod jobs;
mod keys;

use crate::error::ApiError;
use crate::transport::{channel, ws};
use crate::AppState;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use jobwire_proto::ErrorCode;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let cors = cors(&state);
    let router = Router::new()
        .route("/v1/jobs", post(jobs::create).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route(
            "/v1/jobs/{id}/events",
            post(jobs::publish).get(jobs::events),
        )
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
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
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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
