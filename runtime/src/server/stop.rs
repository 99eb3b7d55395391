//! `POST /v1/sessions/ID/stop` and `/resume`: an operator's brake on a
//! session (session::stop). Made by the session's tenant, like every write
//! (another tenant gets 404); 409 `already_stopped` / `not_stopped` when
//! there is nothing to do, 409 `finished` for a finished session.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::bodies::Appended;
use super::error::{ApiError, ErrorBody};
use super::extract::Path;

/// `POST /v1/sessions/ID/stop`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopBody {
    /// Why, in the operator's words (required, not empty).
    #[schema(min_length = 1)]
    reason: String,
}

/// `POST /v1/sessions/ID/stop` `{"reason": "…"}`: append `stopped`; the
/// host starts nothing more for the session until it is resumed.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/stop", tag = "sessions",
    params(("id" = String, Path, description = "The session's id, or a name that reaches it.")),
    request_body = StopBody,
    responses(
        (status = 200, description = "`stopped` is durable", body = Appended),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`already_stopped`, `finished`, `conflict`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
    )
)]
pub(crate) async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let body: StopBody = caller.json(body).await?;
    let by = caller.tenant.clone();
    let seq = state
        .host
        .stop(&caller.tenant, &id, &by, &body.reason)
        .await?;
    Ok(Json(Appended { seq }).into_response())
}

/// `POST /v1/sessions/ID/resume` (no body): append `resumed`; the host
/// performs what the guest wants from then on.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/resume", tag = "sessions",
    params(("id" = String, Path, description = "The session's id, or a name that reaches it.")),
    responses(
        (status = 200, description = "`resumed` is durable", body = Appended),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`not_stopped`, `conflict`", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let by = caller.tenant.clone();
    let seq = state.host.resume(&caller.tenant, &id, &by).await?;
    Ok(Json(Appended { seq }).into_response())
}
