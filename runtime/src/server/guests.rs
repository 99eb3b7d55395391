//! `/v1/guests`: upload a guest component, list the tenant's guests.
//!
//! Invariant: a guest is stored only after it compiled and its imports were
//! checked, so every stored guest can be instantiated.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::bodies::{GuestList, GuestQuery};
use super::error::{ApiError, ErrorBody};
use super::extract::Query;
use crate::journal::GuestRef;

/// `POST /v1/guests?name=NAME`, the component as the body.
#[utoipa::path(
    post, path = "/v1/guests", tag = "guests",
    params(GuestQuery),
    request_body(
        description = "The guest: a WebAssembly component (`wasm32-wasip2`).",
        content(
            (Vec<u8> = "application/wasm"),
            (Vec<u8> = "application/octet-stream"),
        )
    ),
    responses(
        (status = 201, description = "Compiled, checked and stored", body = GuestRef),
        (status = 409, description = "`conflict`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 422, description = "`invalid_guest`: not a component, or an import it may not have", body = ErrorBody),
    )
)]
pub(crate) async fn add(
    State(state): State<AppState>,
    Query(query): Query<GuestQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let Some(name) = query.name else {
        return Err(ApiError::bad_request(
            "name the guest: POST /v1/guests?name=NAME",
        ));
    };
    let bytes = caller.body(body).await?;
    let guest = state.host.add_guest(&caller.tenant, &name, &bytes).await?;
    Ok((StatusCode::CREATED, Json(guest)).into_response())
}

/// `GET /v1/guests`.
#[utoipa::path(
    get, path = "/v1/guests", tag = "guests",
    responses((status = 200, description = "The tenant's guests", body = GuestList))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let guests = state.host.journal().guests(&caller.tenant).await?;
    Ok(Json(GuestList { guests }).into_response())
}
