//! API errors: every one is `{"error": {"code", "message"}}` with its status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::journal::JournalError;
use crate::session::SessionError;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with a status, a stable code and a readable message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        use SessionError as E;
        let (status, code) = match &e {
            E::UnknownSession(_) => (StatusCode::NOT_FOUND, "not_found"),
            E::UnknownGuest(_) => (StatusCode::NOT_FOUND, "unknown_guest"),
            E::NameTaken(_) => (StatusCode::CONFLICT, "name_taken"),
            E::Finished(_) => (StatusCode::CONFLICT, "finished"),
            E::Parked(_) => (StatusCode::CONFLICT, "parked"),
            E::NotParked(_) => (StatusCode::CONFLICT, "not_parked"),
            E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "event_too_large"),
            E::NoPendingApproval(_) => (StatusCode::NOT_FOUND, "no_pending_approval"),
            E::AlreadyDecided(_) => (StatusCode::CONFLICT, "already_decided"),
            E::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            E::Guest(g) if !g.is_guest_fault() => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_guest")
            }
            E::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            E::Journal(JournalError::LimitReached { .. }) => {
                (StatusCode::TOO_MANY_REQUESTS, "limit")
            }
            E::Journal(JournalError::NameTaken { .. }) => (StatusCode::CONFLICT, "name_taken"),
            // Another writer appended first: the request may go again.
            E::Journal(JournalError::Conflict { .. }) => (StatusCode::CONFLICT, "conflict"),
            // The session moved to or from another worker as the request
            // went: nothing was written, and the request may go again.
            E::Journal(JournalError::Leased { .. } | JournalError::Fenced { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            // The journal cannot write now (a full disk, a closed writer, a
            // lost database): whether the request was written is unknown;
            // the log says.
            E::Journal(
                JournalError::Storage(_) | JournalError::Postgres(_) | JournalError::Closed,
            ) => (StatusCode::SERVICE_UNAVAILABLE, "journal_unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {e}");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> ApiError {
        ApiError::from(SessionError::from(e))
    }
}
