//! The OTLP exporter: `logbook run` with `[telemetry] otlp` (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) sends its spans to a collector. The
//! collector here is an OTLP/HTTP receiver on `127.0.0.1:0` that decodes the
//! protobuf with the OpenTelemetry project's own message types
//! (`opentelemetry-proto`) and keeps each span's name and attributes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

use crate::fixtures::*;

/// A received span: its name, attributes, and its service's name.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) name: String,
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) service: String,
}

pub(crate) type Spans = Arc<Mutex<Vec<Received>>>;

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Start the receiver; its base URL and what it has received.
pub(crate) async fn collector() -> (String, Spans, tokio::task::JoinHandle<()>) {
    let spans = Spans::default();
    let kept = spans.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body)
                    .expect("the exporter sends OTLP protobuf");
                let mut kept = kept.lock().expect("the spans");
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .map(|a| text(a.value.as_ref()))
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            kept.push(Received {
                                name: span.name.clone(),
                                attributes: span
                                    .attributes
                                    .iter()
                                    .map(|a| (a.key.clone(), text(a.value.as_ref())))
                                    .collect(),
                                service: service.clone(),
                            });
                        }
                    }
                }
                // An empty ExportTraceServiceResponse: everything accepted.
                (
                    [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, spans, task)
}

/// Run `logbook` to its end off the async workers (the collector runs there).
pub(crate) async fn run_off_runtime(mut cmd: std::process::Command) -> Ran {
    tokio::task::spawn_blocking(move || run_ok(&mut cmd))
        .await
        .expect("the command's thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_named_by_the_configuration_or_the_environment() {
    let (url, spans, server) = collector().await;
    let dir = data_dir();
    let data = dir.path();

    // `[telemetry] otlp`: a model call's effect span arrives, with its fields.
    std::fs::write(
        data.join("logbook.toml"),
        format!("[telemetry]\notlp = \"{url}\"\nservice_name = \"logbook-test\"\n"),
    )
    .expect("write the configuration");
    let mut cmd = logbook(data);
    cmd.args(["run", "assistant", "--session", "a", "-i", "hello"]);
    let ran = run_off_runtime(cmd).await;
    assert_eq!(ran.stdout, "echo: hello\n", "{ran:?}");
    // The process flushed its spans before it exited.
    let got = spans.lock().expect("the spans").clone();
    let model = got
        .iter()
        .find(|s| {
            s.name == "effect" && s.attributes.get("kind").map(String::as_str) == Some("model")
        })
        .unwrap_or_else(|| panic!("no model effect span in {got:?}"));
    assert_eq!(model.service, "logbook-test");
    assert_eq!(
        model.attributes.get("attempt").map(String::as_str),
        Some("1")
    );
    assert!(model.attributes.contains_key("key"), "{model:?}");
    assert!(model.attributes.contains_key("log"), "{model:?}");
    // (The session's own span ends when its actor stops, which a process
    // that exits at once may not wait for: it is not looked for here.)

    // No configuration, the standard environment variable: spans arrive too.
    std::fs::remove_file(data.join("logbook.toml")).expect("remove the configuration");
    spans.lock().expect("the spans").clear();
    let mut cmd = logbook(data);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &url).args([
        "run",
        "assistant",
        "--session",
        "b",
        "-i",
        "hi",
    ]);
    run_off_runtime(cmd).await;
    let got = spans.lock().expect("the spans").clone();
    assert!(
        got.iter()
            .any(|s| s.name == "effect" && s.service == "logbook"),
        "{got:?}"
    );

    // Neither: nothing is sent.
    spans.lock().expect("the spans").clear();
    let mut cmd = logbook(data);
    cmd.args(["run", "--session", "b", "-i", "again"]);
    run_off_runtime(cmd).await;
    assert!(spans.lock().expect("the spans").is_empty());
    server.abort();
}
