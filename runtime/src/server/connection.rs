//! Connections: accepted under a cap, served one by one with hyper's HTTP/1
//! under a header timeout and an idle timeout, and drained on shutdown.
//!
//! Invariants:
//! - At most `max_connections` sockets are open at once, event streams
//!   included. A connection holds its permit until its socket is closed
//!   (`wire::Socket`); past the cap the listener is not polled, so new
//!   connections wait in the kernel's listen backlog (no file of ours is
//!   spent on them) and are served in turn as others close.
//! - A request head must arrive whole within `header_read_timeout`, counted
//!   from when hyper starts waiting for it: on a new connection, and on a
//!   kept-alive one after each answer. So a silent connection, or one that
//!   sends half a head, is closed then, without an answer.
//! - A connection on which no byte moves for `idle_timeout` is closed,
//!   unless a handler is at work on a request whose body it is not waiting
//!   for (an input that waits for its turn to end moves no byte for
//!   minutes). An event stream is never idle while its client reads: its
//!   keep-alive comments move bytes; a client that stops reading one stops
//!   them moving, and is closed.
//! - On shutdown the listener closes first; each connection then finishes
//!   the request it serves (event streams end on the `closing` signal) and
//!   closes, a silent one at once, a half-sent head by its header timeout;
//!   `serve` returns once every socket is closed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::error::ApiError;
use super::limits::Limits;
use super::wire::Socket;

/// hyper's smallest read buffer: a head limit below it still reads this much.
const MIN_READ_BUFFER: usize = 8192;
/// Pause after an accept error that is not about one connection (out of
/// files, out of memory), so the loop does not spin while it lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// What is going on on one connection, for its idle timeout.
pub(super) struct Activity {
    start: Instant,
    /// Milliseconds after `start` when a byte last moved, or a handler ended.
    last: AtomicU64,
    /// Handlers at work on a request (HTTP/1: none or one).
    at_work: AtomicUsize,
    /// The handler waits for more of its request body: the client owes bytes.
    waiting_for_body: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            at_work: AtomicUsize::new(0),
            waiting_for_body: AtomicBool::new(false),
        }
    }

    /// Something happened now.
    pub(super) fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// A handler works on a request and owes the client an answer.
    fn serving(&self) -> bool {
        self.at_work.load(Ordering::Relaxed) > 0 && !self.waiting_for_body.load(Ordering::Relaxed)
    }

    /// Completes once the connection has been idle for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let quiet = self.quiet_for();
            if quiet >= timeout && !self.serving() {
                return;
            }
            let wait = if quiet >= timeout {
                timeout
            } else {
                timeout - quiet
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A handler at work, from the request to its answer's head.
struct AtWork(Arc<Activity>);

impl AtWork {
    fn begin(activity: &Arc<Activity>) -> AtWork {
        activity.at_work.fetch_add(1, Ordering::Relaxed);
        AtWork(activity.clone())
    }
}

impl Drop for AtWork {
    fn drop(&mut self) {
        self.0.at_work.fetch_sub(1, Ordering::Relaxed);
        self.0.waiting_for_body.store(false, Ordering::Relaxed);
        // The answer starts now: its silence is counted from here.
        self.0.touch();
    }
}

/// A request body that tells its connection when the handler waits for it.
struct RequestBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.activity
            .waiting_for_body
            .store(polled.is_pending(), Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.activity
            .waiting_for_body
            .store(false, Ordering::Relaxed);
    }
}

/// The router, as hyper calls it on one connection.
#[derive(Clone)]
struct Service {
    router: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    max_uri_bytes: usize,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let at_work = AtWork::begin(&self.activity);
        let target = request
            .uri()
            .path_and_query()
            .map_or(0, |target| target.as_str().len());
        if target > self.max_uri_bytes {
            let refused = ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!(
                    "the request target (path and query) is longer than {} bytes",
                    self.max_uri_bytes
                ),
            );
            return Box::pin(async move {
                drop(at_work);
                Ok(refused.into_response())
            });
        }
        let activity = self.activity.clone();
        let request = request.map(|inner| Body::new(RequestBody { inner, activity }));
        let answered = hyper::service::Service::call(&self.router, request);
        Box::pin(async move {
            let response = answered.await;
            drop(at_work);
            response
        })
    }
}

/// Serve `app` on `listener` under `limits` until `shutdown` completes; then
/// say so on `close` (live event streams end), stop accepting, and wait for
/// every connection to finish what it serves and close.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    close: watch::Sender<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_head_bytes)
        .max_buf_size(limits.max_head_bytes.max(MIN_READ_BUFFER));
    let http = Arc::new(http);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        // The permit first: past the cap, connections wait in the backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!("accept error: {e}");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let activity = Arc::new(Activity::new());
        let socket = Socket::new(stream, permit, activity.clone(), &limits);
        tokio::spawn(connection(
            socket,
            activity,
            app.clone(),
            http.clone(),
            limits.clone(),
            close.subscribe(),
        ));
    }
    let _ = close.send(true);
    drop(listener);
    // Each open socket holds a permit: all of them back means all closed.
    let all = u32::try_from(limits.max_connections).expect("the cap fits a u32 (limits.rs)");
    let _closed = permits.acquire_many(all).await;
}

/// Serve one connection to its end, its idle timeout, or shutdown.
async fn connection(
    socket: Socket,
    activity: Arc<Activity>,
    app: Router,
    http: Arc<http1::Builder>,
    limits: Arc<Limits>,
    mut closing: watch::Receiver<bool>,
) {
    let service = Service {
        router: TowerToHyperService::new(app),
        activity: activity.clone(),
        max_uri_bytes: limits.max_uri_bytes,
    };
    let served = http.serve_connection(TokioIo::new(socket), service);
    tokio::pin!(served);
    let mut draining = false;
    loop {
        tokio::select! {
            ended = served.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!("connection ends: {e}");
                }
                return;
            }
            () = activity.idle(limits.idle_timeout) => {
                tracing::debug!("idle connection closed");
                return;
            }
            Ok(_) = closing.wait_for(|closing| *closing), if !draining => {
                served.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// An accept error about one connection that has already gone: accept the
/// next at once.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset
    )
}
