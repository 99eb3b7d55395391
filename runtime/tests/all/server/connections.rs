//! Connections and the HTTP layer under the routes, over raw sockets where a
//! client library would not send the bytes: the connection cap, the header
//! and idle timeouts (a live event stream outlives the idle timeout), the
//! errors hyper answers before any route (JSON like every other),
//! `Last-Event-ID` past the log, and who may read `/metrics`.
//!
//! Timeouts are set small and waited for by what can be seen (a socket the
//! server closes, an answer that comes), never measured.

use logbook::config::{MetricsAccess, ModelConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// The test configuration with these `[server]` settings.
fn config_with(server: ServerConfig) -> Config {
    Config { server, ..config() }
}

/// A caller that keeps no idle connection (a pooled one would hold a
/// connection of the cap).
fn unpooled(server: &Server) -> Api {
    let _ = http(); // installs the TLS provider reqwest needs to build
    Api {
        base: server.api.base.clone(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(GUARD)
            .build()
            .expect("an HTTP client"),
        token: None,
    }
}

/// The server's `host:port`.
fn addr(server: &Server) -> String {
    server
        .api
        .base
        .strip_prefix("http://")
        .expect("an http base")
        .to_string()
}

/// Read until the server closes `stream`; what it sent before.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    match guard(stream.read_to_end(&mut bytes)).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading until the server closes: {e}"),
    }
    bytes
}

/// An answer read off a raw socket.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Send `request` as it is on a new connection and read the answer until
/// the server closes.
async fn raw_exchange(addr: &str, request: &[u8]) -> RawAnswer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send the request");
    let bytes = until_closed(&mut stream).await;
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("a whole head: {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let content_type = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_string())
    });
    RawAnswer {
        status,
        content_type,
        body: bytes[end + 4..].to_vec(),
    }
}

/// Assert a raw answer is the API's JSON error `status` with `code`.
#[track_caller]
fn assert_raw_error(what: &str, answer: &RawAnswer, status: u16, code: &str) {
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/json"),
        "{what}: {answer:?}"
    );
    let body: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("{what}: a JSON body ({e}): {answer:?}"));
    let status = StatusCode::from_u16(status).expect("a status");
    assert_eq!(answer.status, status.as_u16(), "{what}: {body}");
    assert_error(&(status, body), status.as_u16(), code);
}

/// Read `stream` until its next keep-alive comment.
async fn next_comment(stream: &mut SseStream) {
    loop {
        if let Some(end) = stream.pending.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = stream.pending.drain(..end + 2).collect();
            if frame.starts_with(b":") {
                return;
            }
            continue;
        }
        let chunk = guard(stream.response.chunk())
            .await
            .expect("read the stream")
            .expect("the stream goes on");
        stream.pending.extend_from_slice(&chunk);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_cap_time_out_and_healthz_answers() {
    const CAP: usize = 3;
    let server = Server::start(config_with(ServerConfig {
        max_connections: Some(CAP),
        header_read_timeout_ms: 300,
        idle_timeout_ms: 600_000,
        ..ServerConfig::default()
    }))
    .await;
    // Twice the cap of clients that connect and say nothing: the first
    // ones take every place, the rest wait in the backlog.
    let mut idle = Vec::new();
    for _ in 0..2 * CAP {
        idle.push(TcpStream::connect(addr(&server)).await.expect("connect"));
    }
    let (status, body) = unpooled(&server).get("/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!("ok\n")));
    for (i, stream) in idle.iter_mut().enumerate() {
        let sent = until_closed(stream).await;
        assert!(sent.is_empty(), "silent client {i} is closed unanswered");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_head_is_closed_after_the_header_timeout() {
    let server = Server::start(config_with(ServerConfig {
        header_read_timeout_ms: 300,
        idle_timeout_ms: 600_000,
        ..ServerConfig::default()
    }))
    .await;
    let mut stream = TcpStream::connect(addr(&server)).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n")
        .await
        .expect("send half a head");
    let sent = until_closed(&mut stream).await;
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    unpooled(&server).still_serves_healthz().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_and_a_long_request_outlive_the_idle_timeout() {
    let mut config = config_with(ServerConfig {
        header_read_timeout_ms: 600_000,
        idle_timeout_ms: 500,
        sse_keep_alive_ms: 100,
        ..ServerConfig::default()
    });
    // A model call that takes longer than the idle timeout.
    config.models.insert(
        "default".into(),
        ModelConfig {
            provider: "echo".into(),
            delay_ms: Some(1_500),
            ..ModelConfig::default()
        },
    );
    let server = Server::start(config).await;
    // Pooled connections would be closed as idle under the client's feet.
    let api = unpooled(&server);
    api.add_guest("counter").await;
    api.add_guest("assistant").await;
    api.session("counter", "c").await;
    api.session("assistant", "a").await;
    let mut stream = SseStream::open(&api, "c", None).await;
    assert_eq!(stream.next().await.expect("created").id, 0);

    // A kept-alive connection that goes quiet after its answer is closed:
    // by the idle timeout, as the header timeout is far off.
    let mut quiet = TcpStream::connect(addr(&server)).await.expect("connect");
    quiet
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send");
    let sent = until_closed(&mut quiet).await;
    let sent = String::from_utf8_lossy(&sent);
    assert!(
        sent.starts_with("HTTP/1.1 200 OK") && sent.ends_with("ok\n"),
        "{sent}"
    );

    // The stream, quiet as long but for its keep-alive comments, goes on.
    let (status, body) = api
        .post("/v1/sessions/c/input", json!({"text": "inc"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let next = stream.next().await.expect("the stream goes on");
    assert_eq!((next.id, next.kind.as_str()), (1, "input"));

    // A request whose handler waits longer than the idle timeout, moving no
    // byte, gets its answer.
    let answer = api.send_and_wait("a", "hello").await;
    assert_eq!(output_texts(&answer), ["echo: hello"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_silent_connections() {
    let server = Server::start(config_with(ServerConfig {
        header_read_timeout_ms: 600_000,
        idle_timeout_ms: 600_000,
        ..ServerConfig::default()
    }))
    .await;
    let mut silent = TcpStream::connect(addr(&server)).await.expect("connect");
    let mut kept = TcpStream::connect(addr(&server)).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send");
    let mut answer = vec![0u8; 256];
    let n = guard(kept.read(&mut answer)).await.expect("an answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200 OK"));
    // Both timeouts are far past the guard: only shutdown closes these.
    server.stop().await;
    assert!(until_closed(&mut silent).await.is_empty());
    assert!(until_closed(&mut kept).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_a_connection_waits_and_streams_count() {
    let server = Server::start(config_with(ServerConfig {
        max_connections: Some(2),
        header_read_timeout_ms: 600_000,
        idle_timeout_ms: 600_000,
        sse_keep_alive_ms: 50,
        ..ServerConfig::default()
    }))
    .await;
    let api = unpooled(&server);
    api.add_guest("counter").await;
    api.session("counter", "c").await;
    let mut first = SseStream::open(&api, "c", None).await;
    let mut second = SseStream::open(&api, "c", None).await;
    for stream in [&mut first, &mut second] {
        assert_eq!(stream.next().await.expect("created").id, 0);
    }
    let third = {
        let api = api.clone();
        tokio::spawn(async move { api.get("/healthz").await })
    };
    // The server goes on serving the two streams: a third connection had
    // every chance to be answered, had it been let in.
    for _ in 0..3 {
        next_comment(&mut first).await;
        next_comment(&mut second).await;
    }
    assert!(
        !third.is_finished(),
        "a third connection waits while two streams hold the cap of two"
    );
    drop(first);
    let (status, body) = guard(third).await.expect("the third request");
    assert_eq!((status, body), (StatusCode::OK, json!("ok\n")));
    drop(second);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_event_id_the_log_does_not_have_is_refused_not_wrapped() {
    let server = Server::start(config()).await;
    let api = server.api(None);
    api.add_guest("counter").await;
    api.session("counter", "c").await;
    let resume = |id: String| {
        api.request(Method::GET, "/v1/sessions/c/events")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header("Last-Event-ID", id)
    };
    for id in [u64::MAX.to_string(), "1".to_string(), "-1".to_string()] {
        let answer = api.send(resume(id.clone())).await;
        assert_error(&answer, 400, "bad_request");
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("Last-Event-ID"), "{id}: {message}");
    }
    // The last seq there is resumes after it.
    let mut stream = SseStream::open(&api, "c", Some(0)).await;
    let (status, _) = api
        .post("/v1/sessions/c/input", json!({"text": "inc"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(stream.next().await.expect("the input").id, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_answered_before_any_route_are_json() {
    let server = Server::start(config_with(ServerConfig {
        // Above hyper's own bound on a target (64 KiB), so that it answers
        // a longer one itself.
        max_head_bytes: 128 << 10,
        max_uri_bytes: 1024,
        ..ServerConfig::default()
    }))
    .await;
    let api = server.api(None);
    api.add_guest("counter").await;
    api.session("counter", "c").await;
    let addr = addr(&server);
    let get = |target: &[u8], headers: &str| {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n")
                .as_bytes(),
        );
        request
    };
    let long_target = |n: usize| format!("/v1/sessions/c?x={}", "a".repeat(n)).into_bytes();
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: {i}\r\n")).collect();
    let big_header = format!("x-big: {}\r\n", "a".repeat(200 << 10));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a bad request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "a raw byte 0xFF in the path",
            get(b"/v1/sessions/\xff", ""),
            400,
            "bad_request",
        ),
        (
            "percent-encoded non-UTF-8 in the path",
            get(b"/v1/sessions/%FF%FE", ""),
            400,
            "bad_request",
        ),
        (
            "a malformed content-length",
            b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ten\r\n\r\n"
                .to_vec(),
            400,
            "bad_request",
        ),
        (
            "a target over max_uri_bytes",
            get(&long_target(2_000), ""),
            414,
            "uri_too_long",
        ),
        (
            "a target over hyper's bound",
            get(&long_target(70_000), ""),
            414,
            "uri_too_long",
        ),
        (
            "a head over max_head_bytes",
            get(b"/healthz", &big_header),
            431,
            "headers_too_large",
        ),
        (
            "more than 100 headers",
            get(b"/healthz", &many_headers),
            431,
            "headers_too_large",
        ),
    ];
    for (what, request, status, code) in &cases {
        let answer = raw_exchange(&addr, request).await;
        assert_raw_error(what, &answer, *status, code);
        api.still_serves("c").await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_token_when_tenants_are_configured() {
    let (config, token_a, _) = tenants_config();
    let server = Server::start(config.clone()).await;
    let answer = server.api(None).get("/metrics").await;
    assert_error(&answer, 401, "unauthorized");
    assert_error(
        &server.api(Some("not-a-token")).get("/metrics").await,
        401,
        "unauthorized",
    );
    let (status, text) = server.api(Some(token_a)).get("/metrics").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        metric(text.as_str().expect("text"), "logbook_sessions").is_some(),
        "{text}"
    );
    server.stop().await;

    // Public: a scraper without a token reads them.
    let mut public = config;
    public.server.metrics = MetricsAccess::Public;
    let server = Server::start(public).await;
    let (status, text) = server.api(None).get("/metrics").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    server.stop().await;
}

impl Api {
    /// `/healthz` answers `ok`.
    async fn still_serves_healthz(&self) {
        let (status, body) = self.get("/healthz").await;
        assert_eq!((status, body), (StatusCode::OK, json!("ok\n")));
    }
}
