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
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopBody {
    reason: String,
}

/// `POST /v1/sessions/ID/stop` `{"reason": "…"}`: append `stopped`; the
/// host starts nothing more for the session until it is resumed.
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
    Ok(Json(json!({ "seq": seq })).into_response())
}

/// `POST /v1/sessions/ID/resume` (no body): append `resumed`; the host
/// performs what the guest wants from then on.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let by = caller.tenant.clone();
    let seq = state.host.resume(&caller.tenant, &id, &by).await?;
    Ok(Json(json!({ "seq": seq })).into_response())
}
