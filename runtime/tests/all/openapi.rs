//! `/v1/openapi.json` against what the server does: every route it serves
//! under `/v1` is in the document with the same methods and nothing else is;
//! every documented operation is in docs/http-api.md; real answers of a
//! real server on loopback validate against the document's schemas.

use std::collections::BTreeSet;

use logbook::server::{ServerSettings, Tenants};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::server::{Api, Server};

/// The document, fetched from a server.
async fn document(api: &Api) -> Value {
    let response = api
        .request(Method::GET, "/v1/openapi.json")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response.headers()[reqwest::header::CONTENT_TYPE].clone();
    assert_eq!(kind, "application/json");
    response.json().await.expect("a JSON document")
}

/// The methods (uppercase) of every path of the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("a path item").keys() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// The paths a router serves, read from its `Debug` form, which lists every
/// route's path (axum prints them as strings). OpenAPI's form: `{*x}` is `{x}`.
fn served_paths(router: &axum::Router) -> BTreeSet<String> {
    let shown = format!("{router:?}");
    shown
        .split('"')
        .filter(|s| s.starts_with("/v1"))
        .map(|s| s.replace("{*", "{"))
        .collect()
}

/// The methods a router serves `path` with, from the `Allow` header of its
/// 405 to a method no route has.
async fn served_methods(api: &Api, path: &str) -> BTreeSet<String> {
    let concrete: String = path
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "probe"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let method = Method::from_bytes(b"PROBE").expect("a method");
    let response = api
        .request(method, &concrete)
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        response.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "{path} is served: it has methods"
    );
    let allow = response
        .headers()
        .get(reqwest::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    allow
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty() && m != "HEAD")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_route_is_in_the_document_and_nothing_else() {
    let server = Server::start(config()).await;
    let doc = document(&server.api).await;
    let documented = documented(&doc);

    let dir = data_dir();
    let config = config();
    let tenants = Tenants::from_config(&config).expect("tenants");
    let router = logbook::server::router(
        open_host_with(dir.path(), config),
        tenants,
        ServerSettings::default(),
    );
    let paths = served_paths(&router);
    // The Debug form is not axum's API: make sure it still names the routes.
    for known in [
        "/v1/guests",
        "/v1/sessions/{id}",
        "/v1/sessions/by-name/{name}",
    ] {
        assert!(paths.contains(known), "{known} not found in {paths:?}");
    }
    let mut served = BTreeSet::new();
    for path in &paths {
        for method in served_methods(&server.api, path).await {
            served.insert((method, path.clone()));
        }
    }
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not in /v1/openapi.json: {undocumented:?}; in it but not served: {unserved:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_in_the_http_api_docs() {
    let server = Server::start(config()).await;
    let doc = document(&server.api).await;
    let page_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/http-api.md");
    let page = std::fs::read_to_string(page_path).expect("docs/http-api.md");
    let mut missing = Vec::new();
    for (method, path) in documented(&doc) {
        // The docs write parameters in capitals: `/v1/sessions/ID/approvals/KEY`.
        let shown = path
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => name.to_uppercase(),
                    None => s.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        let line = format!("{method} {shown}");
        if !page.contains(&line) {
            missing.push(line);
        }
    }
    assert!(missing.is_empty(), "not in docs/http-api.md: {missing:?}");
    assert_eq!(doc["openapi"], "3.1.0");
    // The unpark that the server refuses without a reason says so.
    let reason = &doc["components"]["schemas"]["UnparkBody"]["properties"]["reason"];
    assert_eq!(reason["minLength"], 1, "{reason}");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    server.stop().await;
}

/// Validates answers against the document's response schemas.
struct Schemas {
    doc: Value,
}

impl Schemas {
    /// Assert that `body`, answered `status` to `method path_template`, is
    /// what the document says for that status in `application/json`.
    #[track_caller]
    fn check(&self, method: &str, template: &str, status: StatusCode, body: &Value) {
        let operation = &self.doc["paths"][template][method];
        assert!(operation.is_object(), "{method} {template} is documented");
        let response = &operation["responses"][status.as_str()];
        assert!(
            response.is_object(),
            "{method} {template} documents {status}: {body}"
        );
        let schema = &response["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {template} {status} is JSON");
        // The schema with the document's components beside it, so that its
        // `#/components/...` references resolve in it.
        let root = json!({"allOf": [schema], "components": self.doc["components"]});
        let validator = jsonschema::draft202012::new(&root).expect("a valid schema");
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: {errors:?} in {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_validate_against_the_document() {
    let server = Server::start(config()).await;
    let api = &server.api;
    let schemas = Schemas {
        doc: document(api).await,
    };

    let (status, body) = api
        .call(
            Method::POST,
            "/v1/guests?name=counter",
            Some(guest_bytes("counter")),
        )
        .await;
    schemas.check("post", "/v1/guests", status, &body);
    let (status, body) = api.get("/v1/guests").await;
    schemas.check("get", "/v1/guests", status, &body);

    let (status, body) = api
        .post("/v1/sessions", json!({"guest": "counter", "name": "c1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    schemas.check("post", "/v1/sessions", status, &body);
    let (status, body) = api
        .call(
            Method::PUT,
            "/v1/sessions/by-name/team/c2",
            Some(json!({"guest": "counter"}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    schemas.check("put", "/v1/sessions/by-name/{name}", status, &body);

    let (status, body) = api
        .post("/v1/sessions/c1/input", json!({"text": "add 2"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    schemas.check("post", "/v1/sessions/{id}/input", status, &body);
    let (status, body) = api
        .post("/v1/sessions/c1/input?wait=idle", json!({"text": "add 3"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body["outputs"].as_array().expect("outputs").is_empty());
    schemas.check("post", "/v1/sessions/{id}/input", status, &body);

    let (status, body) = api.get("/v1/sessions/c1").await;
    schemas.check("get", "/v1/sessions/{id}", status, &body);
    let (status, body) = api.get("/v1/sessions?limit=1").await;
    assert!(!body["next"].is_null(), "a page with a next: {body}");
    schemas.check("get", "/v1/sessions", status, &body);
    let (status, body) = api.get("/v1/sessions/c1/events").await;
    assert!(body["events"].as_array().expect("events").len() > 3);
    schemas.check("get", "/v1/sessions/{id}/events", status, &body);
    let (status, body) = api.post("/v1/sessions/c1/fork", json!({"at": 1})).await;
    schemas.check("post", "/v1/sessions/{id}/fork", status, &body);

    // Errors, in the one shape.
    let answer = api.get("/v1/sessions/nope").await;
    schemas.check("get", "/v1/sessions/{id}", answer.0, &answer.1);
    let answer = api.post("/v1/sessions", json!({"guest": 7})).await;
    schemas.check("post", "/v1/sessions", answer.0, &answer.1);
    let answer = api
        .post("/v1/sessions/c1/approvals/k", json!({"allow": true}))
        .await;
    schemas.check(
        "post",
        "/v1/sessions/{id}/approvals/{key}",
        answer.0,
        &answer.1,
    );
    let answer = api
        .post("/v1/sessions/c1/unpark", json!({"reason": "r"}))
        .await;
    schemas.check("post", "/v1/sessions/{id}/unpark", answer.0, &answer.1);

    // A wrong body does not validate: the check can fail.
    let wrong = json!({"id": 7});
    let caught = std::panic::catch_unwind(|| {
        schemas.check("get", "/v1/sessions/{id}", StatusCode::OK, &wrong);
    });
    assert!(caught.is_err(), "a session without its fields is refused");
    server.stop().await;
}

// ----- what schemathesis found -----

/// serde reads a struct from a JSON array of its fields in order, so
/// `[null, null]` was a fork with every default and `["counter"]` a session:
/// bodies the document (objects) refuses. Every body is an object, or for a
/// fork nothing or `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_an_array_is_refused() {
    let server = Server::start(config()).await;
    let api = &server.api;
    api.add_guest("counter").await;
    api.session("counter", "c1").await;
    let array = |v: Value| Some(v.to_string().into_bytes());
    for (method, path, body) in [
        (Method::POST, "/v1/sessions/c1/fork", json!([null, null])),
        (Method::POST, "/v1/sessions", json!(["counter", "c2"])),
        (Method::PUT, "/v1/sessions/by-name/c3", json!(["counter"])),
        (Method::POST, "/v1/sessions/c1/input", json!(["add 2"])),
        (Method::POST, "/v1/sessions/c1/approvals/k", json!([true])),
        (Method::POST, "/v1/sessions/c1/unpark", json!([null, "r"])),
    ] {
        let shown = format!("{method} {path}");
        let answer = api.call(method, path, array(body)).await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{shown}: {}", answer.1);
        crate::server::assert_error(&answer, 400, "bad_request");
    }
    let (_, page) = api.get("/v1/sessions").await;
    assert_eq!(page["total"], 1, "nothing was made: {page}");
    // `null` is still a fork with every default, as documented.
    let (status, body) = api
        .call(Method::POST, "/v1/sessions/c1/fork", array(Value::Null))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server.stop().await;
}

/// `PUT /v1/sessions/by-name/NAME` on a session that exists answered 200
/// without looking at the body: a `config` that is not an object passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_whose_config_is_not_an_object_is_refused_when_the_session_exists() {
    let server = Server::start(config()).await;
    let api = &server.api;
    api.add_guest("counter").await;
    api.session("counter", "c1").await;
    let answer = api
        .call(
            Method::PUT,
            "/v1/sessions/by-name/c1",
            Some(
                json!({"guest": "counter", "config": 3})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    crate::server::assert_error(&answer, 400, "bad_config");
    server.stop().await;
}
