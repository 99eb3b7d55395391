//! API errors: every one is `{"error": {"code", "message"}}` with its status.
//!
//! Invariant: every variant of [`SessionError`], [`JournalError`] and
//! [`GuestError`] is mapped by name (no catch-all), so a new one must be
//! placed here: 4xx when the request is at fault (it can never succeed as
//! sent) or lost a race (409, 429, 503: it may go again), 500 `internal`,
//! logged with `tracing::error!`, when the host is (damaged data, a bug).
//! [`ErrorBody`] is that shape, as `/v1/openapi.json` describes it (the
//! component `Error`) and as every answer serializes it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::guest::GuestError;
use crate::journal::{FormatError, JournalError};
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

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    pub(crate) error: ErrorDetail,
}

/// An error's stable code and readable message.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable, machine-readable: `not_found`, `name_taken`, ... (docs/http-api.md).
    pub(crate) code: String,
    /// For people; its wording may change.
    pub(crate) message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
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
            E::AlreadyStopped(_) => (StatusCode::CONFLICT, "already_stopped"),
            E::NotStopped(_) => (StatusCode::CONFLICT, "not_stopped"),
            E::NoReason | E::NoStopReason => (StatusCode::BAD_REQUEST, "bad_request"),
            E::BadSkip { .. } => (StatusCode::BAD_REQUEST, "bad_seq"),
            E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "event_too_large"),
            E::NoPendingApproval(_) => (StatusCode::NOT_FOUND, "no_pending_approval"),
            E::AlreadyDecided(_) => (StatusCode::CONFLICT, "already_decided"),
            // The request is at fault: as sent, it can never succeed.
            E::BadSessionName(_) | E::BadGuestName(_) => (StatusCode::BAD_REQUEST, "bad_name"),
            E::ConfigNotObject { .. } => (StatusCode::BAD_REQUEST, "bad_config"),
            E::BadSeq { .. } => (StatusCode::BAD_REQUEST, "bad_seq"),
            E::SameGuest { .. } => (StatusCode::CONFLICT, "same_guest"),
            E::BadImport { .. } | E::EmptyImport => (StatusCode::BAD_REQUEST, "bad_import"),
            E::ImportGuestMissing { .. } => (StatusCode::NOT_FOUND, "unknown_guest"),
            E::Guest(g) => guest(g),
            E::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            E::Journal(j) => journal(j),
            // The host is at fault: damaged data, a bug, a setup that
            // cannot work. Logged; the client can do nothing about it.
            E::Corrupt { .. }
            | E::TaskFailed { .. }
            | E::SnapshotEncode(_)
            | E::Io { .. }
            | E::DataDir { .. }
            | E::Config(_)
            | E::Effects(_)
            | E::Stopped => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {e}");
        }
        ApiError::new(status, code, e.to_string())
    }
}

/// The status and code of a guest that cannot be loaded or run.
fn guest(e: &GuestError) -> (StatusCode, &'static str) {
    use GuestError as G;
    match e {
        // The uploaded component is at fault.
        G::NotAComponent(_) | G::ForbiddenImport { .. } | G::WrongWorld(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_guest")
        }
        // The pool is full, or instantiation failed: a later request may
        // succeed.
        G::Instantiate(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        // No room under a memory budget, even after idle instances
        // hibernated: nothing was written; a later request may succeed.
        G::MemoryBudget(_) => (StatusCode::TOO_MANY_REQUESTS, "memory_budget"),
        // A guest's own failure parks its session and answers `parked`;
        // reaching a client as such is the host's fault, as is machine code
        // the engine cannot load.
        G::Trap(_) | G::OutOfFuel { .. } | G::OutOfMemory { .. } | G::Compiled(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

/// The status and code of a journal failure.
fn journal(e: &JournalError) -> (StatusCode, &'static str) {
    use JournalError as J;
    match e {
        J::LimitReached { .. } => (StatusCode::TOO_MANY_REQUESTS, "limit"),
        J::NameTaken { .. } => (StatusCode::CONFLICT, "name_taken"),
        // Another writer appended first: the request may go again.
        J::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        J::LogExists(_) => (StatusCode::CONFLICT, "conflict"),
        J::UnknownLog(_) => (StatusCode::NOT_FOUND, "not_found"),
        J::NoSeq { .. } => (StatusCode::BAD_REQUEST, "bad_seq"),
        J::GuestNotStored { .. } => (StatusCode::NOT_FOUND, "unknown_guest"),
        J::BadLog { .. } | J::Format(FormatError::Jsonl(_) | FormatError::NotCanonical { .. }) => {
            (StatusCode::BAD_REQUEST, "bad_import")
        }
        // The session moved to or from another worker as the request
        // went: nothing was written, and the request may go again.
        J::Leased { .. } | J::Fenced { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        // The journal cannot write now (a full disk, a closed writer, a
        // lost database): whether the request was written is unknown;
        // the log says.
        J::Storage(_) | J::Unwritable(_) | J::Postgres(_) | J::Closed => {
            (StatusCode::SERVICE_UNAVAILABLE, "journal_unavailable")
        }
        // Damaged data (a stored body that does not decode, and any kind
        // of format error a later version adds), a commit the host should
        // never have built, a journal this build must not write to, a
        // journal URL or TLS check that refused the connect (at start,
        // before any request).
        J::BadUrl(_)
        | J::Tls(_)
        | J::Corrupt(_)
        | J::Format(_)
        | J::ChainBroken { .. }
        | J::CreatedNotFirst { .. }
        | J::BadParent { .. }
        | J::SchemaTooNew { .. }
        | J::ReadOnly => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> ApiError {
        ApiError::from(SessionError::from(e))
    }
}
