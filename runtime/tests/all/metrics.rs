//! `/metrics` read by a real OpenMetrics parser: the Python client's
//! (`prometheus_client.openmetrics.parser`, pinned, installed into a venv
//! under target/tmp on first use; it refuses what Prometheus would refuse:
//! a counter without `_total`, buckets out of order, a missing `# EOF`).
//! It checks the types: what only goes up is a counter; the per-tenant
//! series and the turn and model-call histograms are there.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::fixtures::*;
use crate::server::Server;

const PROMETHEUS_CLIENT: &str = "0.26.0";

/// A Python with `prometheus_client` installed.
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("prometheus-client-{PROMETHEUS_CLIENT}"));
        let python = venv.join("bin/python");
        if !python.exists() {
            let made = Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .expect("run python3 -m venv");
            assert!(made.success(), "python3 -m venv {}", venv.display());
            let installed = Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet"])
                .arg(format!("prometheus_client=={PROMETHEUS_CLIENT}"))
                .status()
                .expect("run pip");
            assert!(installed.success(), "pip install prometheus_client");
        }
        python
    })
}

/// Parse an exposition with the OpenMetrics parser: each family's name,
/// type and samples (name, labels, value), as JSON.
fn parse(text: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).expect("write the exposition");
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
print(json.dumps([
    {"name": f.name, "type": f.type,
     "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
    for f in text_string_to_metric_families(text)
]))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("run the parser");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("the parser's JSON")
}

fn family<'a>(families: &'a [Value], name: &str) -> &'a Value {
    families
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(family: &Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    family["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {family}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_the_openmetrics_parser_with_counters_tenants_and_latencies() {
    let server = Server::start(config()).await;
    let api = server.api(None);
    api.add_guest("counter").await;
    api.add_guest("assistant").await;
    api.session("counter", "c").await;
    api.session("assistant", "a").await;
    for _ in 0..2 {
        api.send_and_wait("c", "inc").await;
    }
    let answer = api.send_and_wait("a", "hello").await;
    assert_eq!(answer["status"], "idle", "{answer}");

    let (_, text) = api.get("/metrics").await;
    let text = text.as_str().expect("metrics are text");
    let families = parse(text);

    for name in [
        "logbook_appended_events",
        "logbook_append_requests",
        "logbook_fsync_batches",
    ] {
        let f = family(&families, name);
        assert_eq!(f["type"], "counter", "{name} only goes up: {f}");
        assert!(sample(f, &format!("{name}_total"), &[]) > 0.0, "{f}");
    }
    let inputs = family(&families, "logbook_inputs");
    assert_eq!(inputs["type"], "counter");
    assert_eq!(
        sample(inputs, "logbook_inputs_total", &[("tenant", TENANT)]),
        3.0
    );
    let effects = family(&families, "logbook_effects");
    assert_eq!(
        sample(
            effects,
            "logbook_effects_total",
            &[("tenant", TENANT), ("kind", "model")]
        ),
        1.0
    );
    let turns = family(&families, "logbook_turn_seconds");
    assert_eq!(turns["type"], "histogram");
    assert_eq!(
        sample(turns, "logbook_turn_seconds_count", &[("tenant", TENANT)]),
        3.0,
        "one turn per input"
    );
    let calls = family(&families, "logbook_model_call_seconds");
    assert_eq!(calls["type"], "histogram");
    assert_eq!(sample(calls, "logbook_model_call_seconds_count", &[]), 1.0);
    server.stop().await;
}
