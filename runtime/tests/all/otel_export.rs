//! `logbook export --format otel`: a real session's log (the `assistant`
//! guest on EchoModel, with a tool call that fails) as OpenTelemetry traces
//! after the GenAI semantic conventions. The file is read back with the
//! OpenTelemetry project's own message types (`opentelemetry-proto`), parsed
//! by its official Python definitions (`opentelemetry-proto` from PyPI,
//! installed by scripts/otel-proto.sh; LOGBOOK_SKIP_OTEL_PROTO=1 skips that
//! check), and sent to an OTLP/HTTP receiver with `--otlp-endpoint`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use crate::fixtures::*;
use crate::telemetry::{collector, run_off_runtime};

const TOOL_INPUT: &str = r#"/tool fs.read {"path":"missing-notes.txt"}"#;
const SECOND_INPUT: &str = "hello from the second turn";

/// A session `a` of two turns: a model call that asks for `fs.read` of a
/// missing file (the tool fails), a model call after it; then a plain turn.
/// Answers the session's id.
fn two_turns(data: &Path) -> String {
    run_ok(logbook(data).args(["run", "assistant", "--session", "a", "-i", TOOL_INPUT]));
    run_ok(logbook(data).args(["run", "--session", "a", "-i", SECOND_INPUT]));
    let listed = run_ok(logbook(data).arg("sessions")).stdout;
    listed
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("a")).then(|| words.next().map(str::to_string))?
        })
        .expect("session a is listed")
}

fn export(data: &Path, extra: &[&str]) -> String {
    let mut cmd = logbook(data);
    cmd.args(["export", "a", "--format", "otel"]).args(extra);
    run_ok(&mut cmd).stdout
}

fn spans(text: &str) -> Vec<Span> {
    text.lines()
        .map(|line| {
            serde_json::from_str::<ExportTraceServiceRequest>(line)
                .unwrap_or_else(|e| panic!("not an OTLP/JSON export request ({e}): {line}"))
        })
        .flat_map(|r| r.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn attributes(span: &Span) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .map(|a| {
            let value = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::ArrayValue(list)) => list
                    .values
                    .iter()
                    .filter_map(|v| match &v.value {
                        Some(AnyValue::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => format!("{other:?}"),
            };
            (a.key.clone(), value)
        })
        .collect()
}

#[test]
fn a_log_exports_as_genai_spans_one_per_turn_model_call_and_tool_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let id = two_turns(data);
    let text = export(data, &[]);
    let found = spans(&text);
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "invoke_agent assistant",
            "chat default",
            "execute_tool fs.read",
            "chat default",
            "invoke_agent assistant",
            "chat default",
        ],
        "a turn, its model calls and its tool call, in the order they opened"
    );

    // One trace, the log's: its id is the log's UUID.
    let trace = hex::encode(&found[0].trace_id);
    assert_eq!(trace, id.replace('-', ""));
    assert!(found.iter().all(|s| s.trace_id == found[0].trace_id));
    let ids: HashSet<&[u8]> = found.iter().map(|s| s.span_id.as_slice()).collect();
    assert_eq!(ids.len(), found.len(), "span ids are unique");
    assert!(found.iter().all(|s| s.span_id.len() == 8));

    // Each effect is a child of its turn, and lies within it.
    for (turn, children) in [(0, 1..4), (4, 5..6)] {
        let parent = &found[turn];
        assert!(parent.parent_span_id.is_empty(), "a turn is a root span");
        assert_eq!(parent.kind, SpanKind::Internal as i32);
        for child in &found[children] {
            assert_eq!(child.parent_span_id, parent.span_id, "{}", child.name);
            assert!(child.start_time_unix_nano >= parent.start_time_unix_nano);
            assert!(child.end_time_unix_nano <= parent.end_time_unix_nano);
            assert!(child.start_time_unix_nano <= child.end_time_unix_nano);
        }
    }

    // The attributes the GenAI conventions name.
    let turn = attributes(&found[0]);
    assert_eq!(turn["gen_ai.operation.name"], "invoke_agent");
    assert_eq!(turn["gen_ai.agent.name"], "assistant");
    assert_eq!(turn["gen_ai.conversation.id"], id);
    assert_eq!(turn["gen_ai.request.model"], "default");
    assert_eq!(turn["logbook.input.from"], "cli");
    assert_eq!(turn["logbook.session.name"], "a");
    let chat = attributes(&found[1]);
    assert_eq!(chat["gen_ai.operation.name"], "chat");
    assert_eq!(chat["gen_ai.request.model"], "default");
    assert_eq!(chat["gen_ai.response.model"], "echo");
    assert_eq!(chat["gen_ai.response.finish_reasons"], "tool_call");
    assert_eq!(chat["gen_ai.conversation.id"], id);
    assert_eq!(found[1].kind, SpanKind::Client as i32);
    let second_chat = attributes(&found[3]);
    assert_eq!(second_chat["gen_ai.response.finish_reasons"], "stop");
    // The turn's usage is the sum of its model calls'.
    for token in ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"] {
        let sum: u64 = [&chat, &second_chat]
            .iter()
            .map(|a| a[token].parse::<u64>().expect("a count"))
            .sum();
        assert_eq!(turn[token], sum.to_string(), "{token}");
    }
    let tool = attributes(&found[2]);
    assert_eq!(tool["gen_ai.operation.name"], "execute_tool");
    assert_eq!(tool["gen_ai.tool.name"], "fs.read");
    assert_eq!(tool["gen_ai.tool.call.id"], tool["logbook.effect.key"]);
    assert!(!tool["gen_ai.tool.description"].is_empty());
    assert_eq!(tool["error.type"], "tool_error", "the file is missing");
    assert_eq!(
        found[2].status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );

    // Content stays out unless asked for.
    for secret in ["missing-notes.txt", SECOND_INPUT, "gen_ai.input.messages"] {
        assert!(
            !text.contains(secret),
            "{secret:?} is in a spans file without content"
        );
    }
    // The same log gives the same file.
    assert_eq!(export(data, &[]), text, "an export is reproducible");

    let with = spans(&export(data, &["--include-content"]));
    let second_turn: serde_json::Value =
        serde_json::from_str(&attributes(&with[4])["gen_ai.input.messages"]).expect("JSON");
    assert_eq!(second_turn[0]["role"], "user");
    assert_eq!(second_turn[0]["parts"][0]["type"], "text");
    assert_eq!(second_turn[0]["parts"][0]["content"], SECOND_INPUT);
    let arguments: serde_json::Value =
        serde_json::from_str(&attributes(&with[2])["gen_ai.tool.call.arguments"]).expect("JSON");
    assert_eq!(arguments["path"], "missing-notes.txt");
    let answer: serde_json::Value =
        serde_json::from_str(&attributes(&with[1])["gen_ai.output.messages"]).expect("JSON");
    assert_eq!(answer[0]["role"], "assistant");
    assert_eq!(answer[0]["finish_reason"], "tool_call");
    assert_eq!(answer[0]["parts"][0]["type"], "tool_call");

    // Written to a file with --output, the same lines.
    let file = data.join("a.otlp.json");
    let mut cmd = logbook(data);
    cmd.args(["export", "a", "--format", "otel", "--output"])
        .arg(&file);
    run_ok(&mut cmd);
    assert_eq!(std::fs::read_to_string(&file).expect("the file"), text);
    official_definitions_read(&file, found.len());
}

/// The OpenTelemetry project's Python definitions parse every line (they
/// refuse an unknown field or a wrong type) and see every span.
fn official_definitions_read(file: &Path, expected: usize) {
    if std::env::var("LOGBOOK_SKIP_OTEL_PROTO").is_ok_and(|v| v == "1") {
        eprintln!("skipped: LOGBOOK_SKIP_OTEL_PROTO=1 (the official OTLP definitions)");
        return;
    }
    let python =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/otel-proto/1.45.2/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/otel-proto.sh (pip, about 10 s), \
         or set LOGBOOK_SKIP_OTEL_PROTO=1 to skip this check",
        python.display()
    );
    const CHECK: &str = r#"
import json, re, sys
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
n = 0
for line in open(sys.argv[1], encoding="utf-8"):
    raw = json.loads(line)
    request = json_format.Parse(line, ExportTraceServiceRequest())
    for rs, raw_rs in zip(request.resource_spans, raw["resourceSpans"]):
        assert rs.resource.attributes[0].key == "service.name"
        for ss, raw_ss in zip(rs.scope_spans, raw_rs["scopeSpans"]):
            for span, raw_span in zip(ss.spans, raw_ss["spans"]):
                # OTLP/JSON writes ids in hex (protobuf's own JSON would use base64).
                assert re.fullmatch("[0-9a-f]{32}", raw_span["traceId"]), raw_span["traceId"]
                assert re.fullmatch("[0-9a-f]{16}", raw_span["spanId"]), raw_span["spanId"]
                assert 0 < span.start_time_unix_nano <= span.end_time_unix_nano
                assert span.kind in (1, 3), span.kind
                n += 1
print(n)
"#;
    let ran = run_ok(
        std::process::Command::new(python)
            .arg("-c")
            .arg(CHECK)
            .arg(file),
    );
    assert_eq!(ran.stdout.trim(), expected.to_string(), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_sent_to_an_otlp_collector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    let data_for_setup = data.clone();
    tokio::task::spawn_blocking(move || two_turns(&data_for_setup))
        .await
        .expect("the session");
    let (url, received, _collector) = collector().await;
    let mut cmd = logbook(&data);
    cmd.args(["export", "a", "--format", "otel", "--otlp-endpoint", &url]);
    let ran = run_off_runtime(cmd).await;
    assert!(ran.stderr.contains("sent 6 spans"), "{}", ran.stderr);
    let received = received.lock().expect("the spans").clone();
    let names: Vec<&str> = received.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 6);
    assert_eq!(names[0], "invoke_agent assistant");
    assert_eq!(names[2], "execute_tool fs.read");
    assert!(received.iter().all(|s| s.service == "logbook"));
    assert_eq!(received[1].attributes["gen_ai.response.model"], "echo");

    // A collector that is not there is an error that names it.
    let mut cmd = logbook(&data);
    cmd.args([
        "export",
        "a",
        "--format",
        "otel",
        "--otlp-endpoint",
        "http://127.0.0.1:9/",
    ]);
    let ran = tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .expect("the command");
    assert!(!ran.status.success());
    assert!(
        ran.stderr.contains("http://127.0.0.1:9/v1/traces"),
        "{}",
        ran.stderr
    );
}

#[test]
fn otel_flags_need_the_otel_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_ok(logbook(dir.path()).args(["run", "counter", "--session", "c", "-i", "inc"]));
    let ran = run(logbook(dir.path()).args(["export", "c", "--include-content"]));
    assert!(!ran.status.success());
    assert!(ran.stderr.contains("--format otel"), "{}", ran.stderr);
    let ran = run(logbook(dir.path()).args([
        "export",
        "c",
        "--format",
        "otel",
        "--otlp-endpoint",
        "http://127.0.0.1:9",
        "--output",
        "x.json",
    ]));
    assert!(!ran.status.success());
    assert!(ran.stderr.contains("give one"), "{}", ran.stderr);
}
