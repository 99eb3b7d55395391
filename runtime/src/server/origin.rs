//! The request guard: one layer over the whole API that decides, before any
//! handler runs, whether a request may come from where it comes from.
//!
//! A web page can make a browser send requests to `127.0.0.1`: a `no-cors`
//! fetch or a form may POST `text/plain`, `multipart/form-data` or
//! `application/x-www-form-urlencoded` anywhere, and a page reached under a
//! rebound DNS name is same-origin with itself. The guard closes each way in:
//!
//! 1. **Host** (only while no bearer token is configured, the loopback-only
//!    mode): the `Host` must be a loopback name or literal (`localhost`,
//!    `127.0.0.0/8`, `[::1]`, any port) or listed in `[server] allowed_hosts`;
//!    else 403 `forbidden_host`. A request without `Host` is not from a
//!    browser and passes.
//! 2. **Origin**: a request with `Origin` passes only if it is the server's own
//!    (`http://` + the request's `Host`) or listed in `[server]
//!    allowed_origins`; else 403 `forbidden_origin`. `Origin: null` never
//!    passes. A request whose `Sec-Fetch-Site` is `cross-site` or `same-site`
//!    passes only with a listed origin.
//! 3. **Preflight**: `OPTIONS` with `Access-Control-Request-Method` from a
//!    listed origin is answered here (204); from anyone else it was refused
//!    by 2, or (own origin, no origin) goes on to the router.
//! 4. **Content type**: a request that carries a body (`Content-Length` > 0 or
//!    any `Transfer-Encoding`) must say `application/json`, or for
//!    `POST /v1/guests` `application/wasm` / `application/octet-stream`
//!    (parameters such as `; charset=utf-8` allowed); else 415
//!    `unsupported_media_type`. None of these is a type a page may send
//!    without a preflight, so a body that reaches a handler was either sent by
//!    a non-browser client or passed 2 and 3.
//!
//! Invariants: CORS headers (`Access-Control-Allow-Origin` with the exact
//! origin, and `Vary: Origin`) go only on answers to a listed origin, never
//! on any other; a refused request never reaches a handler, so it touches no
//! session and no log.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::config::ServerConfig;

/// Methods a listed origin may use, as the preflight answers them.
const ALLOW_METHODS: &str = "GET, POST, PUT";
/// Request headers a listed origin may set, as the preflight answers them.
const ALLOW_HEADERS: &str = "content-type, authorization, last-event-id";
/// The path whose body is a wasm component rather than JSON.
const GUESTS_PATH: &str = "/v1/guests";

/// What the guard lets through, built once from the configuration.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    /// Listed foreign origins, lowercased.
    allowed_origins: Vec<String>,
    /// Listed hosts, lowercased: `name` (any port) or `name:port`.
    allowed_hosts: Vec<String>,
    /// No bearer token is configured: the `Host` rule applies.
    loopback_only: bool,
}

/// Where a request that may pass comes from.
enum Source {
    /// No origin, or the server's own: no CORS headers.
    Plain,
    /// A listed foreign origin: CORS headers on whatever is answered.
    Listed(HeaderValue),
}

impl RequestGuard {
    /// The guard for `config`; `loopback_only` while no token is configured.
    pub(crate) fn new(config: &ServerConfig, loopback_only: bool) -> RequestGuard {
        let lower = |list: &[String]| list.iter().map(|s| s.to_ascii_lowercase()).collect();
        RequestGuard {
            allowed_origins: lower(&config.allowed_origins),
            allowed_hosts: lower(&config.allowed_hosts),
            loopback_only,
        }
    }

    /// Rules 1 and 2: where the request comes from, or why it may not.
    fn source(&self, headers: &HeaderMap, host: Option<&str>) -> Result<Source, ApiError> {
        if self.loopback_only
            && let Some(host) = host
            && !self.host_allowed(host)
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!(
                    "Host {host:?} is not served: with no bearer tokens configured the server answers only to localhost, 127.0.0.0/8 and [::1] (a page under another name may be a DNS-rebinding attack); add the name to [server] allowed_hosts in the configuration to serve it"
                ),
            ));
        }
        let fetch_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let cross_site = matches!(fetch_site.as_deref(), Some("cross-site" | "same-site"));
        let Some(origin) = headers.get(header::ORIGIN) else {
            if cross_site {
                return Err(forbidden(
                    "a cross-site request without an Origin header is refused; a page that should reach this server must be listed in [server] allowed_origins in the configuration".to_string(),
                ));
            }
            return Ok(Source::Plain);
        };
        let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        let text = origin.to_str().unwrap_or_default().to_ascii_lowercase();
        if self.allowed_origins.contains(&text) {
            return Ok(Source::Listed(origin.clone()));
        }
        let own = host.is_some_and(|host| {
            text.strip_prefix("http://")
                .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
        });
        if own && !cross_site {
            return Ok(Source::Plain);
        }
        Err(forbidden(format!(
            "cross-origin request from {shown} refused; to let pages of that origin call this server, add \"{shown}\" to [server] allowed_origins in the configuration"
        )))
    }

    /// Whether `host` (a `Host` header: name, IPv4 or `[IPv6]`, with an
    /// optional port) is loopback or listed.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let (name, port) = split_host(&host);
        if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return false;
        }
        is_loopback(name)
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| match split_host(allowed) {
                    (_, Some(_)) => *allowed == host,
                    (allowed_name, None) => allowed_name == name,
                })
    }
}

/// A name and an optional port, from `name`, `name:port`, `[v6]` or `[v6]:port`.
fn split_host(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => {
                let (name, rest) = host.split_at(end + 1);
                (name, rest.strip_prefix(':'))
            }
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

/// `localhost`, an IPv4 literal in `127.0.0.0/8`, or `[::1]`.
fn is_loopback(name: &str) -> bool {
    if name == "localhost" {
        return true;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", message)
}

/// Rule 4: a body says it is what its route reads.
fn check_content_type(request: &Request) -> Result<(), ApiError> {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if !has_body {
        return Ok(());
    }
    let sent = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = sent
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let guest = request.method() == Method::POST && request.uri().path() == GUESTS_PATH;
    let (accepted, wanted): (&[&str], &str) = if guest {
        (
            &["application/wasm", "application/octet-stream"],
            "a guest is a wasm component: send content-type: application/wasm (or application/octet-stream)",
        )
    } else {
        (
            &["application/json"],
            "this route reads JSON: send content-type: application/json",
        )
    };
    if essence.as_deref().is_some_and(|e| accepted.contains(&e)) {
        return Ok(());
    }
    let got = match &sent {
        Some(sent) => format!("got {sent:?}"),
        None => "got no content-type".to_string(),
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("{wanted} ({got})"),
    ))
}

/// The layer: apply the rules, answer a listed origin's preflight, and put
/// CORS headers on every answer to a listed origin.
pub(crate) async fn guard(
    State(guard): State<Arc<RequestGuard>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_string()));
    let source = match guard.source(request.headers(), host.as_deref()) {
        Ok(source) => source,
        Err(refused) => return refuse(refused, request).await,
    };
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = match (&source, preflight) {
        (Source::Listed(_), true) => preflight_answer(),
        _ => match check_content_type(&request) {
            Ok(()) => next.run(request).await,
            Err(refused) => refuse(refused, request).await,
        },
    };
    if let Source::Listed(origin) = source {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// Answer a refusal after reading (up to a bound) and dropping the body the
/// client is still sending: answering first would leave its bytes on a
/// kept-alive connection, and the client's next request on it would fail.
async fn refuse(refused: ApiError, request: Request) -> Response {
    super::drain(request.into_body()).await;
    refused.into_response()
}

fn preflight_answer() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    headers.append(
        header::VARY,
        HeaderValue::from_static("access-control-request-method, access-control-request-headers"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(hosts: &[&str]) -> RequestGuard {
        let config = ServerConfig {
            allowed_origins: vec!["http://localhost:5173".into()],
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..ServerConfig::default()
        };
        RequestGuard::new(&config, true)
    }

    #[test]
    fn loopback_hosts_pass_and_others_need_listing() {
        let g = guard(&["logbook.internal", "box.lan:8080"]);
        for host in [
            "localhost",
            "LOCALHOST:7878",
            "127.0.0.1:7878",
            "127.9.8.7",
            "[::1]:7878",
            "[::1]",
            "logbook.internal:1",
            "box.lan:8080",
        ] {
            assert!(g.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example:7878",
            "localhost.evil.example",
            "128.0.0.1",
            "[::2]:7878",
            "0.0.0.0",
            "box.lan:8081",
            "box.lan",
            "localhost:x",
            "localhost:",
            "[::1",
        ] {
            assert!(!g.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn own_and_listed_origins_pass_others_do_not() {
        let g = guard(&[]);
        let with = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(
                    header::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                    HeaderValue::from_str(value).expect("a value"),
                );
            }
            headers
        };
        let host = Some("127.0.0.1:7878");
        let ok = |h: HeaderMap| g.source(&h, host).is_ok();
        assert!(ok(with(&[])));
        assert!(ok(with(&[("origin", "http://127.0.0.1:7878")])));
        assert!(ok(with(&[("origin", "http://localhost:5173")])));
        assert!(ok(with(&[
            ("origin", "http://localhost:5173"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(ok(with(&[("sec-fetch-site", "same-origin")])));
        assert!(ok(with(&[("sec-fetch-site", "none")])));
        assert!(!ok(with(&[("origin", "http://127.0.0.1:8000")])));
        assert!(!ok(with(&[("origin", "https://127.0.0.1:7878")])));
        assert!(!ok(with(&[("origin", "null")])));
        assert!(!ok(with(&[("sec-fetch-site", "same-site")])));
        assert!(!ok(with(&[("sec-fetch-site", "cross-site")])));
        assert!(!ok(with(&[
            ("origin", "http://127.0.0.1:7878"),
            ("sec-fetch-site", "cross-site")
        ])));
        // A rebound name is same-origin with itself, and still refused.
        let rebound = with(&[("origin", "http://evil.example:7878")]);
        assert!(g.source(&rebound, Some("evil.example:7878")).is_err());
    }
}
