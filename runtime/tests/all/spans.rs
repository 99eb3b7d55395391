//! Tracing spans: one per HTTP request (tower-http's `TraceLayer`), one per
//! session actor (its log and tenant), one per effect (log, key, attempt).
//! A layer captures the name and fields of every span of those names
//! in-process. It is the test process's global subscriber (a thread-local
//! one misses spans whose callsites other tests' threads registered first),
//! enabled for those spans only, so other tests pay for nothing else; this
//! test picks out its own session's spans by their log id.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::fixtures::*;
use crate::server::Server;

/// A span's name and fields.
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    fields: BTreeMap<String, String>,
}

/// Every span created, with its fields.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S> tracing_subscriber::Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _cx: Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        if let Ok(mut seen) = self.0.lock() {
            seen.push(Seen {
                name: attrs.metadata().name().to_string(),
                fields,
            });
        }
    }
}

/// The process's capture, installed as the global subscriber on first use.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let only_ours = tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && matches!(meta.name(), "request" | "session" | "effect")
        });
        tracing_subscriber::registry()
            .with(capture.clone().with_filter(only_ours))
            .try_init()
            .expect("no other global subscriber in the test process");
        capture
    })
}

impl Capture {
    fn named(&self, name: &str) -> Vec<Seen> {
        self.0
            .lock()
            .expect("the capture")
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sessions_and_effects_have_spans() {
    let capture = capture();
    let server = Server::start(config()).await;
    let api = server.api(None);
    api.add_guest("assistant").await;
    let id = api.session("assistant", "traced").await;
    let answer = api
        .send_and_wait("traced", "/tool fs.read {\"path\": \"x\"}")
        .await;
    assert_eq!(answer["status"], "idle", "{answer}");

    let requests = capture.named("request");
    assert!(
        requests.iter().any(
            |r| r.fields.get("method").map(String::as_str) == Some("POST")
                && r.fields
                    .get("uri")
                    .is_some_and(|u| u.contains("/v1/sessions/traced/input"))
        ),
        "{requests:?}"
    );
    let sessions = capture.named("session");
    assert!(
        sessions.iter().any(|s| s.fields.get("log") == Some(&id)
            && s.fields.get("tenant").map(String::as_str) == Some(TENANT)),
        "{sessions:?}"
    );
    let effects = capture.named("effect");
    let of = |kind: &str| {
        effects
            .iter()
            .find(|e| {
                e.fields.get("kind").map(String::as_str) == Some(kind)
                    && e.fields.get("log") == Some(&id)
            })
            .unwrap_or_else(|| panic!("no {kind} effect span in {effects:?}"))
            .clone()
    };
    let model = of("model");
    assert_eq!(model.fields.get("log"), Some(&id), "{model:?}");
    assert_eq!(model.fields.get("attempt").map(String::as_str), Some("1"));
    assert!(model.fields.contains_key("key"), "{model:?}");
    let tool = of("tool");
    assert_eq!(tool.fields.get("log"), Some(&id), "{tool:?}");
    assert_eq!(tool.fields.get("tool").map(String::as_str), Some("fs.read"));
    server.stop().await;
}
