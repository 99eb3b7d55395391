//! The request guard over real sockets, one rule at a time, with the headers a
//! browser would send: bodies must say they are JSON (or wasm for guests);
//! a foreign `Origin` or a cross-site `Sec-Fetch-Site` is refused, the
//! server's own origin is served; only a listed origin gets CORS answers;
//! with no tokens, only loopback (or listed) `Host` names are served. Each
//! refused request is also checked to have left the log untouched.

use logbook::config::Config;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::fixtures::*;
use crate::server::{Answer, Api, Server, WRITE_A, assert_error, tenants_config};

/// An origin nobody lists.
const FOREIGN: &str = "http://evil.example";
/// The origin the tests list in `[server] allowed_origins`.
const LISTED: &str = "http://localhost:5173";

/// Status, headers and body (JSON, or the text as a JSON string).
async fn exchange(request: RequestBuilder) -> (StatusCode, HeaderMap, Value) {
    let response = request.send().await.expect("an answer");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a whole answer");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

/// A header's value as text ("" when absent).
fn value<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `POST path` with a JSON body, as the type `kind` says.
fn post_as(api: &Api, path: &str, kind: Option<&str>, body: &str) -> RequestBuilder {
    let request = api.request(Method::POST, path).body(body.to_string());
    match kind {
        Some(kind) => request.header(header::CONTENT_TYPE, kind),
        None => request,
    }
}

/// The test configuration with `[server]` lists.
fn config_listing(origins: &[&str], hosts: &[&str]) -> Config {
    let mut config = config();
    config.server.allowed_origins = origins.iter().map(|s| s.to_string()).collect();
    config.server.allowed_hosts = hosts.iter().map(|s| s.to_string()).collect();
    config
}

/// The number of events of session `c`.
async fn log_len(api: &Api) -> usize {
    api.all_events("c").await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_say_they_are_json_or_wasm() {
    let server = Server::start(config()).await;
    let api = server.api(None);
    api.add_guest("counter").await; // as application/wasm
    api.session("counter", "c").await;

    let (status, body) = api
        .send(
            api.request(Method::POST, "/v1/guests?name=again")
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(guest_bytes("counter")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let input = "/v1/sessions/c/input";
    let inc = r#"{"text": "inc"}"#;
    let cases: Vec<(&str, RequestBuilder, &str)> = vec![
        (
            "text/plain input",
            post_as(&api, input, Some("text/plain"), inc),
            "application/json",
        ),
        (
            "text/plain input with a charset",
            post_as(&api, input, Some("text/plain;charset=UTF-8"), inc),
            "application/json",
        ),
        (
            "form input",
            post_as(
                &api,
                input,
                Some("application/x-www-form-urlencoded"),
                "text=inc",
            ),
            "application/json",
        ),
        (
            "multipart input",
            post_as(&api, input, Some("multipart/form-data; boundary=x"), inc),
            "application/json",
        ),
        (
            "an input with no type",
            post_as(&api, input, None, inc),
            "application/json",
        ),
        (
            "text/plain approval",
            post_as(
                &api,
                "/v1/sessions/c/approvals/k",
                Some("text/plain"),
                r#"{"allow": true}"#,
            ),
            "application/json",
        ),
        (
            "text/plain put by name",
            api.request(Method::PUT, "/v1/sessions/by-name/d")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(r#"{"guest": "counter"}"#),
            "application/json",
        ),
        (
            "a guest as JSON",
            api.request(Method::POST, "/v1/guests?name=g")
                .header(header::CONTENT_TYPE, "application/json")
                .body(guest_bytes("counter")),
            "application/wasm",
        ),
        (
            "a guest as a form",
            api.request(Method::POST, "/v1/guests?name=g")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(guest_bytes("counter")),
            "application/wasm",
        ),
    ];
    for (what, request, wanted) in cases {
        let answer: Answer = api.send(request).await;
        eprintln!("{what}: {} {}", answer.0, answer.1);
        assert_error(&answer, 415, "unsupported_media_type");
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(wanted), "{what}: {message}");
    }
    assert_eq!(log_len(&api).await, 1, "only `created` is in the log");
    let (status, guests) = api.get("/v1/guests").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        guests["guests"].as_array().map(Vec::len),
        Some(2),
        "{guests}"
    );
    assert_error(&api.get("/v1/sessions/d").await, 404, "not_found");

    // JSON with parameters, in any case, is JSON.
    for kind in ["application/json; charset=utf-8", "Application/JSON"] {
        let (status, body) = api.send(post_as(&api, input, Some(kind), inc)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{kind}: {body}");
    }
    assert_eq!(log_len(&api).await, 1 + 2 * 2, "two inputs, two outputs");

    // A POST without a body needs no type: a fork with no options.
    let (status, fork) = api
        .send(api.request(Method::POST, "/v1/sessions/c/fork"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{fork}");
    assert_eq!(
        fork["head"], 5,
        "the parent's events 0..=4, then the fork's `created`: {fork}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_and_the_servers_own_is_served() {
    let server = Server::start(config()).await;
    let api = server.api(None);
    api.add_guest("counter").await;
    api.session("counter", "c").await;
    let own = api.base.clone();
    let port = own.rsplit(':').next().expect("a port").to_string();
    let input = "/v1/sessions/c/input";
    let inc = r#"{"text": "inc"}"#;
    let json_type = Some("application/json");

    let refused: Vec<(&str, RequestBuilder)> = vec![
        (
            "a foreign origin's input",
            post_as(&api, input, json_type, inc).header(header::ORIGIN, FOREIGN),
        ),
        (
            "a foreign origin's read",
            api.request(Method::GET, "/v1/sessions/c")
                .header(header::ORIGIN, FOREIGN),
        ),
        (
            "a foreign origin's guest",
            api.request(Method::POST, "/v1/guests?name=g")
                .header(header::ORIGIN, FOREIGN)
                .header(header::CONTENT_TYPE, "application/wasm")
                .body(guest_bytes("counter")),
        ),
        (
            "another port of the same host",
            post_as(&api, input, json_type, inc)
                .header(header::ORIGIN, "http://127.0.0.1:1".to_string()),
        ),
        (
            "another scheme of the same host",
            post_as(&api, input, json_type, inc)
                .header(header::ORIGIN, format!("https://127.0.0.1:{port}")),
        ),
        (
            "an opaque origin",
            post_as(&api, input, json_type, inc).header(header::ORIGIN, "null"),
        ),
        (
            "cross-site without an origin",
            post_as(&api, input, json_type, inc).header("sec-fetch-site", "cross-site"),
        ),
        (
            "same-site without an origin",
            post_as(&api, input, json_type, inc).header("sec-fetch-site", "same-site"),
        ),
    ];
    for (what, request) in refused {
        let (status, headers, body) = exchange(request).await;
        eprintln!("{what}: {status} {body}");
        assert_error(&(status, body.clone()), 403, "forbidden_origin");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("allowed_origins"), "{what}: {message}");
        assert!(
            headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "{what}: no CORS header for a refused origin: {headers:?}"
        );
    }
    let (_, _, body) =
        exchange(post_as(&api, input, json_type, inc).header(header::ORIGIN, FOREIGN)).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(FOREIGN), "names the origin: {message}");
    assert_eq!(log_len(&api).await, 1, "nothing refused reached the log");

    // The server's own pages, and what no browser marks as cross-site.
    let (status, headers, body) =
        exchange(post_as(&api, input, json_type, inc).header(header::ORIGIN, &own)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
        "same-origin needs no CORS: {headers:?}"
    );
    for site in ["same-origin", "none"] {
        let (status, _, body) = exchange(
            api.request(Method::GET, "/v1/sessions/c")
                .header("sec-fetch-site", site),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{site}: {body}");
    }
    assert_eq!(
        log_len(&api).await,
        3,
        "the own origin's input and its output"
    );

    // curl's view of the operations endpoints.
    for path in ["/healthz", "/metrics"] {
        let (status, headers, _) = exchange(api.request(Method::GET, path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_listed_origin_gets_cors_answers() {
    let server = Server::start(config_listing(&[LISTED], &[])).await;
    let api = server.api(None);
    api.add_guest("counter").await;
    api.session("counter", "c").await;
    let input = "/v1/sessions/c/input";
    let preflight = |origin: &str| {
        api.request(Method::OPTIONS, "/v1/sessions/c/approvals/k")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
    };

    // The listed origin's preflight is answered.
    let (status, headers, _) = exchange(preflight(LISTED)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{headers:?}");
    assert_eq!(value(&headers, "access-control-allow-origin"), LISTED);
    assert_eq!(
        value(&headers, "access-control-allow-methods"),
        "GET, POST, PUT"
    );
    assert_eq!(
        value(&headers, "access-control-allow-headers"),
        "content-type, authorization, last-event-id"
    );
    let vary: Vec<&str> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(vary.contains(&"origin"), "{vary:?}");

    // Its requests get CORS headers, errors included, so the page can read them.
    let (status, headers, body) = exchange(
        post_as(&api, input, Some("application/json"), r#"{"text": "inc"}"#)
            .header(header::ORIGIN, LISTED),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(value(&headers, "access-control-allow-origin"), LISTED);
    assert_eq!(value(&headers, "vary"), "origin");
    let (status, headers, body) = exchange(
        post_as(&api, input, Some("text/plain"), r#"{"text": "inc"}"#)
            .header(header::ORIGIN, LISTED),
    )
    .await;
    assert_error(&(status, body), 415, "unsupported_media_type");
    assert_eq!(value(&headers, "access-control-allow-origin"), LISTED);
    assert_eq!(log_len(&api).await, 3, "one input and its output");

    // Nobody else gets any.
    let others = vec![
        ("a foreign preflight", preflight(FOREIGN), 403),
        ("a preflight of the own origin", preflight(&api.base), 405),
        (
            "a preflight without an origin",
            api.request(Method::OPTIONS, input)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST"),
            405,
        ),
        (
            "a plain read",
            api.request(Method::GET, "/v1/sessions/c"),
            200,
        ),
    ];
    for (what, request, expected) in others {
        let (status, headers, body) = exchange(request).await;
        assert_eq!(status.as_u16(), expected, "{what}: {body}");
        for name in [
            "access-control-allow-origin",
            "access-control-allow-methods",
            "access-control-allow-headers",
        ] {
            assert!(
                headers.get(name).is_none(),
                "{what}: no {name}: {headers:?}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_tokens_only_loopback_and_listed_hosts_are_served() {
    let server = Server::start(config_listing(&[], &["logbook.test"])).await;
    let api = server.api(None);
    api.add_guest("counter").await;
    api.session("counter", "c").await;
    let port = api.base.rsplit(':').next().expect("a port").to_string();
    let read = |host: String| {
        api.request(Method::GET, "/v1/sessions/c")
            .header(header::HOST, host)
    };

    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.1.2.3:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_string(),
        "logbook.test:9".to_string(),
    ] {
        let (status, _, body) = exchange(read(host.clone())).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    for host in [
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("10.0.0.1:{port}"),
        format!("[::2]:{port}"),
    ] {
        let (status, _, body) = exchange(read(host.clone())).await;
        assert_error(&(status, body.clone()), 403, "forbidden_host");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("allowed_hosts"), "{host}: {message}");
    }

    // A page under a rebound name is same-origin with itself: still refused.
    let rebound = format!("evil.example:{port}");
    let (status, _, body) = exchange(
        post_as(
            &api,
            "/v1/sessions/c/input",
            Some("application/json"),
            r#"{"text": "inc"}"#,
        )
        .header(header::HOST, &rebound)
        .header(header::ORIGIN, format!("http://{rebound}")),
    )
    .await;
    assert_error(&(status, body), 403, "forbidden_host");
    assert_eq!(log_len(&api).await, 1, "nothing reached the log");

    // The own origin under a loopback name is served.
    let (status, _, body) = exchange(
        post_as(
            &api,
            "/v1/sessions/c/input",
            Some("application/json"),
            r#"{"text": "inc"}"#,
        )
        .header(header::HOST, format!("localhost:{port}"))
        .header(header::ORIGIN, format!("http://localhost:{port}")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    server.stop().await;

    // With tokens the server may sit behind any name: the token decides.
    let (config, token, _) = tenants_config();
    let server = Server::start(config).await;
    let api = server.api(Some(token));
    let (status, _, body) = exchange(
        api.request(Method::GET, "/v1/sessions")
            .header(header::HOST, "logbook.example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = exchange(
        api.request(Method::GET, "/v1/sessions")
            .header(header::HOST, "logbook.example.com")
            .header(header::ORIGIN, FOREIGN),
    )
    .await;
    assert_error(&(status, body), 403, "forbidden_origin");
    server.stop().await;
}

/// Our own client, the CLI with `--url`, sends what the guard wants: it
/// sends input and decides an approval on a server that refuses browsers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_passes_the_guard() {
    let server = Server::start(config()).await;
    let api = server.api(None);
    api.add_guest("assistant").await;
    api.session("assistant", "a").await;
    let base = api.base.clone();
    let unused = bare_data_dir();
    let cli = move |args: Vec<String>| {
        let data = unused.path().to_path_buf();
        let base = base.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                run_ok(logbook(&data).arg("--url").arg(&base).args(&args))
            })
            .await
            .expect("the CLI ran")
        }
    };
    let said = cli(vec![
        "send".into(),
        "a".into(),
        WRITE_A.into(),
        "--wait".into(),
    ])
    .await;
    eprintln!("{}", said.stdout);
    let (_, info) = api.get("/v1/sessions/a").await;
    assert_eq!(info["status"], "waiting-approval", "{info}");
    let key = info["pending_approvals"][0]["key"]
        .as_str()
        .expect("a pending approval")
        .to_string();
    cli(vec!["approve".into(), "a".into(), key]).await;
    let info = api.wait_status("a", "idle").await;
    assert_eq!(info["pending_approvals"], serde_json::json!([]));
    server.stop().await;
}
