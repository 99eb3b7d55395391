//! `logbook log`, `sessions` and `guest list`: read-only views of the journal.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;

use super::CLI_TENANT;
use crate::journal::{
    ChainPos, EventBody, Outcome, RequestedEffect, StoredEvent, plain_text, to_jsonl,
};
use crate::session::Host;

#[derive(clap::Args, Debug)]
pub(crate) struct LogArgs {
    /// The session's name or id.
    pub(crate) session: String,
    /// The events as JSONL: seq, at, hash and body, one a line.
    #[arg(long)]
    pub(crate) json: bool,
    /// Keep printing events as they are appended.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// The whole chain: the logs this one was compacted from, oldest first.
    #[arg(long)]
    pub(crate) all: bool,
}

pub(crate) async fn log(host: &Arc<Host>, args: LogArgs) -> anyhow::Result<ExitCode> {
    if args.follow {
        return Err(anyhow!(
            "--follow needs a server (--url or LOGBOOK_URL): a data directory is locked by the process that writes to it"
        ));
    }
    let info = host.resolve(CLI_TENANT, &args.session).await?;
    let mut out = std::io::stdout().lock();
    let chain = if args.all {
        host.compaction_chain(info.id).await?
    } else {
        vec![info.id]
    };
    for log in chain {
        if args.all && !args.json && writeln!(out, "== log {log}").is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        // Every event shown is checked against its predecessor: a log that
        // was altered is shown up to the damage, then refused.
        let mut pos = ChainPos::START;
        loop {
            let page =
                super::read_checked(host, &args.session, log, &mut pos, super::EVENT_PAGE).await?;
            if page.is_empty() {
                break;
            }
            for event in &page {
                let line = if args.json {
                    to_jsonl(event)
                } else {
                    timeline_line(event)
                };
                // A closed pipe (`| head`) ends the listing quietly.
                if writeln!(out, "{line}").is_err() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One readable line: seq, time of day (UTC), kind, what happened.
pub(crate) fn timeline_line(stored: &StoredEvent) -> String {
    let e = &stored.event;
    let secs = e.at / 1000;
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        e.at % 1000
    );
    format!(
        "{:>5}  {time}  {:<18}  {}",
        e.seq,
        e.body.kind(),
        detail(&e.body)
    )
}

fn detail(body: &EventBody) -> String {
    let short = |s: &str| -> String {
        let one_line = s.replace('\n', " ");
        if one_line.chars().count() > 100 {
            format!("{}…", one_line.chars().take(100).collect::<String>())
        } else {
            one_line
        }
    };
    match body {
        EventBody::Created(c) => {
            let mut line = format!("guest {} ({})", c.guest.name, c.guest.digest);
            if let Some(p) = &c.parent {
                line.push_str(&format!("; fork of {} at seq {}", p.log, p.seq));
            }
            if let Some(p) = &c.compacted_from {
                line.push_str(&format!("; compacted from {} at seq {}", p.log, p.seq));
            }
            if let Some(summary) = &c.summary {
                line.push_str(&format!("; summary: {}", short(summary)));
            }
            line
        }
        EventBody::Input { from, content } => {
            let from = match from {
                crate::journal::Sender::Principal(p) => p.clone(),
                crate::journal::Sender::Log { log, key, .. } => format!("{log} [{key}]"),
            };
            format!("{from}: {}", short(&plain_text(content)))
        }
        EventBody::Requested { key, effect } => match effect {
            RequestedEffect::Model { model, summary, .. } => {
                format!("[{key}] model {model}: {}", short(summary))
            }
            RequestedEffect::Tool(call) => {
                format!("[{key}] tool {} {}", call.name, short(&call.arguments))
            }
            RequestedEffect::Ask(q) => format!("[{key}] ask {}", short(&q.text)),
            RequestedEffect::Sleep { until } => format!("[{key}] sleep until {until}"),
        },
        EventBody::Completed { key, outcome } => match outcome {
            Outcome::Model(r) => format!(
                "[{key}] {}/{} ({:?}, {}): {}",
                r.provider,
                r.model,
                r.stop_reason,
                match r.usage {
                    Some(u) => format!("{} in, {} out", u.input_tokens, u.output_tokens),
                    None => "usage unknown".to_string(),
                },
                short(&describe_blocks(&r.content))
            ),
            Outcome::Tool {
                content,
                is_error,
                parts,
                ..
            } => {
                let parts = match parts.len() {
                    0 => String::new(),
                    1 => " (+1 part)".to_string(),
                    n => format!(" (+{n} parts)"),
                };
                format!(
                    "[{key}] {}{}{parts}",
                    if *is_error { "error: " } else { "" },
                    short(content)
                )
            }
            Outcome::TimerFired => format!("[{key}] timer fired"),
        },
        EventBody::Failed {
            key,
            error,
            message,
            retryable,
            attempt,
        } => format!(
            "[{key}] {error:?} (attempt {attempt}{}): {}",
            if *retryable { ", will retry" } else { "" },
            short(message)
        ),
        EventBody::Cancelled { key } => format!("[{key}]"),
        EventBody::ApprovalRequested {
            key,
            tool,
            question,
        } => match (tool, question) {
            (Some(call), _) => format!("[{key}] tool {} {}", call.name, short(&call.arguments)),
            (_, Some(q)) => format!("[{key}] {}", short(&q.text)),
            _ => format!("[{key}]"),
        },
        EventBody::ApprovalDecided {
            key,
            allow,
            by,
            reason,
        } => format!(
            "[{key}] {} by {by}{}",
            if *allow { "allowed" } else { "denied" },
            reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        EventBody::Output { key, content } => format!("[{key}] {}", short(&plain_text(content))),
        EventBody::Sent { key, target } => format!("[{key}] to {target}"),
        EventBody::GuestChanged { from, to } => format!("{} -> {}", from.digest, to.digest),
        EventBody::GuestFailed { message } => short(message),
        EventBody::Unparked { skip, by, reason } => match skip {
            Some(seq) => format!("by {by}, skipping seq {seq}: {}", short(reason)),
            None => format!("by {by}: {}", short(reason)),
        },
        EventBody::Stopped { by, reason } => format!("by {by}: {}", short(reason)),
        EventBody::Resumed { by } => format!("by {by}"),
        EventBody::Finished { key, result } => format!("[{key}] {}", short(result)),
        EventBody::Continued { log } => format!("in {log}"),
    }
}

fn describe_blocks(blocks: &[crate::journal::ContentBlock]) -> String {
    blocks
        .iter()
        .map(|b| match b {
            crate::journal::ContentBlock::Text { text } => text.clone(),
            crate::journal::ContentBlock::ToolCall(c) => format!("call {} {}", c.name, c.arguments),
            crate::journal::ContentBlock::ToolResult { content, .. } => format!("result {content}"),
            crate::journal::ContentBlock::Reasoning { text, .. } => {
                format!("(reasoning) {}", text.as_deref().unwrap_or(""))
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

pub(crate) async fn sessions(host: &Arc<Host>) -> anyhow::Result<ExitCode> {
    println!(
        "{:<24} {:<36} {:<16} {:>7}",
        "NAME", "ID", "STATUS", "EVENTS"
    );
    let mut pages = super::LogPages::new(host);
    while let Some(page) = pages.next().await? {
        for info in page {
            println!(
                "{:<24} {:<36} {:<16} {:>7}",
                info.name.as_deref().unwrap_or("-"),
                info.id,
                info.status.to_string(),
                info.next_seq
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{ContentBlock, ModelResponse, StopReason, Usage};

    fn completed(usage: Option<Usage>) -> String {
        detail(&EventBody::Completed {
            key: "model-1".into(),
            outcome: Outcome::Model(ModelResponse {
                content: vec![ContentBlock::text("hi")],
                stop_reason: StopReason::EndTurn,
                usage,
                provider: "openai".into(),
                model: "m".into(),
            }),
        })
    }

    #[test]
    fn usage_is_shown_or_said_to_be_unknown_never_zero() {
        let known = completed(Some(Usage {
            input_tokens: 12,
            output_tokens: 3,
        }));
        assert!(known.contains("(EndTurn, 12 in, 3 out)"), "{known}");
        let unknown = completed(None);
        assert!(unknown.contains("(EndTurn, usage unknown)"), "{unknown}");
    }
}
