//! The HTTP API under `/v1` (see `docs/http-api.md`): sessions as durable
//! objects, addressable by id or name, activated only when something needs
//! their guest, and observed live over Server-Sent Events.
//!
//! `run(listener, host, settings, shutdown)` takes its listener and shutdown
//! signal, so tests start it on `127.0.0.1:0`. Invariants: every error is
//! `{"error": {"code", "message"}}`, those hyper answers before any route
//! included (`wire.rs`); another tenant's session or guest is a 404, never a
//! 403; nothing is acknowledged before it is durable; every request, routed
//! or not, passes the request guard (`origin.rs`) first, so no web page on
//! another origin reaches a handler; connections are capped and timed out
//! (`connection.rs`), so idle or half-sent ones cannot take every open file;
//! every `/v1` route is in `/v1/openapi.json`, built with it (`api.rs`).

mod api;
mod auth;
mod bodies;
mod connection;
mod error;
mod events;
mod extract;
mod guests;
mod limits;
mod origin;
mod sessions;
mod stop;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use auth::{ServeError, Tenants};
pub use error::ApiError;
pub use limits::{OpenFiles, connection_cap, raise_open_files_limit};

use crate::config::MetricsAccess;
use crate::metrics::Readings;
use crate::session::Host;

/// Server settings that are not in the configuration file.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Largest request body, in bytes, unless the tenant's limit says otherwise.
    pub max_body_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_body_bytes: 16 << 20,
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) host: Arc<Host>,
    pub(crate) tenants: Arc<Tenants>,
    pub(crate) settings: ServerSettings,
    /// Turns true when the server shuts down: live event streams end then,
    /// or graceful shutdown would wait for their clients forever.
    pub(crate) closing: tokio::sync::watch::Receiver<bool>,
    /// `/v1/openapi.json`, serialized once.
    pub(crate) openapi: Bytes,
}

impl AppState {
    /// The caller's tenant and its body limit.
    pub(crate) fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let tenant = self.tenants.tenant(headers)?;
        let max_body = self
            .host
            .config()
            .tenants
            .get(&tenant)
            .and_then(|t| t.limits.max_body_bytes)
            .unwrap_or(self.settings.max_body_bytes);
        Ok(Caller { tenant, max_body })
    }
}

/// How much of a body over the limit is read and dropped before the 413.
const DRAIN_BYTES: usize = 1 << 20;

/// Read and drop up to [`DRAIN_BYTES`] of a body that will not be used.
pub(crate) async fn drain(body: Body) {
    use futures_util::StreamExt;
    let mut chunks = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = chunks.next().await {
        seen = seen.saturating_add(chunk.len());
        if seen > DRAIN_BYTES {
            break;
        }
    }
}

/// Who is calling.
pub(crate) struct Caller {
    pub(crate) tenant: String,
    pub(crate) max_body: usize,
}

impl Caller {
    /// The request body, refused with 413 past the caller's limit.
    ///
    /// A body over the limit is still read, up to [`DRAIN_BYTES`] more, and
    /// dropped: a server that answers and closes while the client is still
    /// sending makes the client's kernel see a reset, and the client loses
    /// the 413 it was meant to read.
    pub(crate) async fn body(&self, body: Body) -> Result<Bytes, ApiError> {
        use futures_util::StreamExt;
        let mut chunks = body.into_data_stream();
        let mut kept = Vec::new();
        let mut seen = 0usize;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            seen = seen.saturating_add(chunk.len());
            if seen <= self.max_body {
                kept.extend_from_slice(&chunk);
            } else if seen > self.max_body.saturating_add(DRAIN_BYTES) {
                break;
            }
        }
        if seen > self.max_body {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {} bytes", self.max_body),
            ));
        }
        Ok(Bytes::from(kept))
    }

    /// The request body as JSON of type `T`, refused with 400 and the reason.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        body: Body,
    ) -> Result<T, ApiError> {
        parse_json(&self.body(body).await?)
    }

    /// Like [`Caller::json`], but no body at all is `T::default()`: for
    /// requests whose every field is optional.
    pub(crate) async fn json_or_default<T: serde::de::DeserializeOwned + Default>(
        &self,
        body: Body,
    ) -> Result<T, ApiError> {
        let bytes = self.body(body).await?;
        if bytes.is_empty() {
            return Ok(T::default());
        }
        parse_json(&bytes)
    }
}

/// A request body as `T`. Every body of the API is a JSON object (`null`
/// where the body is optional): serde would also read a struct from an array
/// of its fields in order, which the API does not take.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(ApiError::bad_request(
            "invalid JSON body: an object is expected, not an array",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Refuse to serve beyond loopback when no tenant has a token.
pub fn check_exposure(addr: &SocketAddr, tenants: &Tenants) -> Result<(), ServeError> {
    if !tenants.enabled() && !addr.ip().is_loopback() {
        return Err(ServeError::Exposed { addr: *addr });
    }
    Ok(())
}

/// The API's routes.
pub fn router(host: Arc<Host>, tenants: Tenants, settings: ServerSettings) -> Router {
    // Nobody closes these: event streams last as long as their clients.
    let (_, closing) = tokio::sync::watch::channel(false);
    app(host, tenants, settings, closing)
}

fn app(
    host: Arc<Host>,
    tenants: Tenants,
    settings: ServerSettings,
    closing: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let guard = Arc::new(origin::RequestGuard::new(
        &host.config().server,
        !tenants.enabled(),
    ));
    let (v1, document) = api::v1();
    let state = AppState {
        host,
        tenants: Arc::new(tenants),
        settings,
        closing,
        openapi: Bytes::from(
            serde_json::to_vec(&document).expect("an OpenAPI document always serializes"),
        ),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(guard, origin::guard))
        // Outermost: a request refused by the guard has its span too. The
        // span names the method and path (never headers: tokens are there).
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(
                    tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO),
                )
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        )
}

/// Serve the API on `listener` until `shutdown` completes; then stop taking
/// connections, end live event streams, let requests in flight finish, and
/// stop every session. The process's open-files limit is raised first, and
/// the connection cap sized below it unless `[server] max_connections` says.
pub async fn run(
    listener: tokio::net::TcpListener,
    host: Arc<Host>,
    tenants: Tenants,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    check_exposure(&addr, &tenants).map_err(std::io::Error::other)?;
    let files = raise_open_files_limit();
    let limits = limits::Limits::new(&host.config().server, files.now);
    tracing::info!(
        "open files limit {} (was {}); at most {} connections",
        files.now,
        files.before,
        limits.max_connections
    );
    // Resuming reads every log with effects in flight: connections are
    // taken meanwhile (a request for a log not yet resumed activates it).
    let resuming = host.clone();
    tokio::spawn(async move {
        match resuming.resume_all().await {
            Ok(n) if n > 0 => tracing::info!("resumed {n} sessions with effects in flight"),
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot resume sessions: {e}"),
        }
    });
    // With a journal other workers share: take over the sessions of those
    // that die.
    host.start_sweeper();
    let (close, closing) = tokio::sync::watch::channel(false);
    let app = app(host.clone(), tenants, settings, closing);
    connection::serve(listener, app, limits, shutdown, close).await;
    host.close().await;
    Ok(())
}

/// The host's metrics; with `[server] metrics = "token"` (the default) only
/// for a caller with a tenant's token, when tokens are configured.
/// Readiness: 200 while the journal can write, 503 `journal_unavailable`
/// (saying why) while it cannot, for instance after a write failed on a full
/// disk and until the file reopens. `/healthz` stays the liveness check: the
/// process serves, and reads go on.
async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    match state.host.journal().unwritable() {
        None => Ok("ready\n"),
        Some(why) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "journal_unavailable",
            format!("the journal cannot write: {why}"),
        )),
    }
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if state.host.config().server.metrics == MetricsAccess::Token {
        state.tenants.tenant(&headers)?;
    }
    let host = &state.host;
    let stats = host.journal().stats();
    let sessions = host.journal().count_logs().await.unwrap_or(0);
    let text = host.metrics().render(Readings {
        resident: host.resident_sessions(None),
        guest_memory_bytes: host.guest_memory(None),
        sessions,
        appended_events: stats.events,
        append_requests: stats.requests,
        fsync_batches: stats.commits,
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
