//! Typed MCP content against a server nobody here wrote: the reference
//! server "everything" from npm (`@modelcontextprotocol/server-everything`,
//! pinned; `scripts/mcp-everything.sh` installs it under target/). Its image
//! is a real PNG, its progress notifications and structured results are the
//! TypeScript SDK's. LOGBOOK_SKIP_MCP_EVERYTHING=1 skips these tests.

use std::path::PathBuf;

use logbook::config::{McpServerConfig, Policy};
use logbook::effects::Live;
use logbook::journal::{EventBody, Outcome, PartData, StoredEvent, ToolPart};
use logbook::session::Activity;

use crate::fixtures::*;

const VERSION: &str = "2026.8.31";

/// The server's entry point, or `None` when the caller asked to skip.
fn everything() -> Option<PathBuf> {
    if std::env::var("LOGBOOK_SKIP_MCP_EVERYTHING").is_ok_and(|v| v == "1") {
        eprintln!(
            "skipped: LOGBOOK_SKIP_MCP_EVERYTHING=1 (this test needs the MCP reference server)"
        );
        return None;
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../target/mcp-everything/{VERSION}/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
    ));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/mcp-everything.sh (npm, about 15 s), \
         or set LOGBOOK_SKIP_MCP_EVERYTHING=1 to skip this test",
        path.display()
    );
    Some(path)
}

fn config_with_everything(entry: &std::path::Path) -> logbook::config::Config {
    let mut config = config();
    config.mcp.insert(
        "everything".into(),
        McpServerConfig {
            command: Some("node".into()),
            args: vec![entry.display().to_string(), "stdio".into()],
            ..McpServerConfig::default()
        },
    );
    config
        .tools
        .policy
        .insert("everything.*".into(), Policy::Allow);
    config
}

/// The tool outcomes of `log`, in order.
fn tool_outcomes(log: &[StoredEvent]) -> Vec<Outcome> {
    log.iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Completed {
                outcome: o @ Outcome::Tool { .. },
                ..
            } => Some(o.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_servers_image_links_structure_and_progress_stay_typed() {
    use base64::Engine;
    let Some(entry) = everything() else { return };
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with_everything(&entry));
    let session = start(&host, "assistant", "everything").await;
    let mut live = session.subscribe_live();
    for call in [
        "/tool everything.get-tiny-image {}",
        "/tool everything.get-resource-links {\"count\": 2}",
        "/tool everything.get-structured-content {\"location\": \"New York\"}",
        "/tool everything.trigger-long-running-operation {\"duration\": 2, \"steps\": 4}",
    ] {
        say(&session, call).await;
        assert_eq!(settle(&session).await, Activity::Idle, "{call}");
    }
    let log = events(&host, session.id()).await;
    let outcomes = tool_outcomes(&log);
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    for outcome in &outcomes {
        let Outcome::Tool { is_error, .. } = outcome else {
            unreachable!()
        };
        assert!(!is_error, "{outcome:?}");
    }

    // The image is a part, and a real PNG, not base64 in the text.
    let Outcome::Tool { content, parts, .. } = &outcomes[0] else {
        unreachable!()
    };
    assert!(
        content.contains("Here's the image you requested"),
        "{content}"
    );
    assert!(
        !content.contains("iVBOR"),
        "no image in the text: {content}"
    );
    let [
        ToolPart::Image {
            mime_type,
            data: PartData::Base64(data),
            ..
        },
    ] = parts.as_slice()
    else {
        panic!("one inline image: {parts:?}")
    };
    assert_eq!(mime_type, "image/png");
    let png = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Resource links are parts with their addresses.
    let Outcome::Tool { parts, .. } = &outcomes[1] else {
        unreachable!()
    };
    let links: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            ToolPart::ResourceLink { uri, .. } => Some(uri.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(links.len(), 2, "{parts:?}");

    // The structured result is kept as JSON.
    let Outcome::Tool { structured, .. } = &outcomes[2] else {
        unreachable!()
    };
    let structured: serde_json::Value =
        serde_json::from_str(structured.as_deref().expect("a structured result")).unwrap();
    assert!(structured["temperature"].is_number(), "{structured}");

    // Progress reached live observers (the last report may come with the
    // answer, after which it is of no use), and never the log.
    let mut progress = Vec::new();
    while let Ok(item) = live.try_recv() {
        if let Live::Progress(p) = item {
            progress.push((p.progress, p.total));
        }
    }
    assert!(progress.len() >= 3, "{progress:?}");
    assert_eq!(
        &progress[..3],
        &[(1.0, Some(4.0)), (2.0, Some(4.0)), (3.0, Some(4.0))]
    );
}
