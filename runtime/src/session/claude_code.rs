//! Reading a Claude Code session transcript (`~/.claude/projects/*/*.jsonl`)
//! into the steps of a conversation: what the user said, what the model
//! answered, what the tools returned. Pure: no storage, no guest. Turning
//! the steps into a log is `session::import_from`'s job.
//!
//! Invariants:
//! - every line is accounted for: it becomes steps, or it is kept verbatim
//!   (its exact text) with why, or it is the torn last line, which is
//!   reported and left out;
//! - an assistant message that Claude Code wrote as several lines (one per
//!   content block, all with the same `message.id`) is one answer;
//! - the order of the steps is the order of the lines.
//!
//! Out of scope for now (kept verbatim): compaction (`compact_boundary`,
//! `isCompactSummary`), sidechains, meta lines. `parentUuid` branches are
//! not followed: the file's order is the conversation's.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::journal::{ContentBlock, ModelResponse, StopReason, ToolCall, Usage};

/// The provider name the anthropic wire gives its reasoning blocks: a
/// thinking block's signature is only ever sent back to it.
const PROVIDER: &str = "anthropic";

/// One step of the conversation, with the transcript lines it came from.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// Unix ms of its (last) line.
    pub(crate) at: u64,
    /// The lines, from 1, and their text: kept verbatim if the step cannot
    /// be placed in the log.
    pub(crate) lines: Vec<(usize, String)>,
    pub(crate) what: What,
}

#[derive(Clone, Debug)]
pub(crate) enum What {
    /// The user said something.
    Input(Vec<ContentBlock>),
    /// The model answered (the `message.id`, to merge its lines).
    Answer(Option<String>, ModelResponse),
    /// A tool returned.
    ToolResult {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

/// A line kept as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Kept {
    /// The line, from 1.
    pub(crate) line: usize,
    /// Its `type` (or `?` when it has none, `not-json`).
    pub(crate) kind: String,
    /// Why it was not imported as events.
    pub(crate) why: String,
    /// Its exact text.
    pub(crate) text: String,
}

/// A transcript, read.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    pub(crate) steps: Vec<Step>,
    pub(crate) kept: Vec<Kept>,
    /// The torn last line (no end of line, not JSON): its number and length.
    pub(crate) torn: Option<(usize, usize)>,
    /// Lines read, the torn one included.
    pub(crate) lines: usize,
    pub(crate) session_id: Option<String>,
    pub(crate) cwd: Option<String>,
    /// Content blocks left out of the imported messages, by type (images).
    pub(crate) blocks_left_out: BTreeMap<String, usize>,
    /// The time of the first line that has one.
    pub(crate) first_at: Option<u64>,
}

impl Transcript {
    /// Reads one line (without its end of line); `last` when no end of line
    /// followed it.
    pub(crate) fn line(&mut self, text: &str, torn_if_bad: bool) {
        self.lines += 1;
        let line = self.lines;
        let value: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ if torn_if_bad => {
                self.torn = Some((line, text.len()));
                return;
            }
            _ if text.trim().is_empty() => return,
            _ => return self.keep(line, "not-json", "not a JSON object", text),
        };
        let kind = value["type"].as_str().unwrap_or("?").to_string();
        if self.session_id.is_none() {
            self.session_id = value["sessionId"].as_str().map(str::to_string);
        }
        if self.cwd.is_none() {
            self.cwd = value["cwd"].as_str().map(str::to_string);
        }
        let at = value["timestamp"].as_str().and_then(parse_rfc3339_ms);
        if self.first_at.is_none() {
            self.first_at = at;
        }
        let at = at.or(self.steps.last().map(|s| s.at)).or(self.first_at);
        let why = if value["isSidechain"].as_bool() == Some(true) {
            Some("a sidechain (sub-agent): not imported yet")
        } else if value["isCompactSummary"].as_bool() == Some(true) {
            Some("a compaction summary: not imported yet")
        } else if value["isMeta"].as_bool() == Some(true) {
            Some("a meta line (not said by the user)")
        } else {
            None
        };
        if let Some(why) = why {
            return self.keep(line, &kind, why, text);
        }
        let at = at.unwrap_or(0);
        let here = (line, text.to_string());
        match kind.as_str() {
            "user" => self.user(&value["message"], at, here),
            "assistant" => self.assistant(&value["message"], at, here),
            _ => self.keep(line, &kind, "a line type the import does not map", text),
        }
    }

    fn keep(&mut self, line: usize, kind: &str, why: &str, text: &str) {
        self.kept.push(Kept {
            line,
            kind: kind.to_string(),
            why: why.to_string(),
            text: text.to_string(),
        });
    }

    fn user(&mut self, message: &Value, at: u64, here: (usize, String)) {
        let mut said = Vec::new();
        let mut results = Vec::new();
        match &message["content"] {
            Value::String(text) => said.push(ContentBlock::text(text.clone())),
            Value::Array(blocks) => {
                for block in blocks {
                    match block["type"].as_str() {
                        Some("text") => said.push(ContentBlock::text(
                            block["text"].as_str().unwrap_or_default(),
                        )),
                        Some("tool_result") => results.push(What::ToolResult {
                            call_id: block["tool_use_id"].as_str().unwrap_or_default().into(),
                            content: result_text(&block["content"], &mut self.blocks_left_out),
                            is_error: block["is_error"].as_bool().unwrap_or(false),
                        }),
                        other => self.left_out(other),
                    }
                }
            }
            _ => {}
        }
        if said.is_empty() && results.is_empty() {
            return self.keep(
                here.0,
                "user",
                "a user line with nothing to import",
                &here.1,
            );
        }
        // Results answer the calls before them; text after them is the
        // user's next word.
        for what in results {
            self.steps.push(Step {
                at,
                lines: vec![here.clone()],
                what,
            });
        }
        if !said.is_empty() {
            self.steps.push(Step {
                at,
                lines: vec![here],
                what: What::Input(said),
            });
        }
    }

    fn assistant(&mut self, message: &Value, at: u64, here: (usize, String)) {
        let id = message["id"].as_str().map(str::to_string);
        let mut content = Vec::new();
        for block in message["content"].as_array().into_iter().flatten() {
            match block["type"].as_str() {
                Some("text") => {
                    content.push(ContentBlock::text(
                        block["text"].as_str().unwrap_or_default(),
                    ));
                }
                Some("thinking") => content.push(ContentBlock::Reasoning {
                    text: block["thinking"].as_str().map(str::to_string),
                    signature: block["signature"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                    opaque: None,
                    provider: PROVIDER.into(),
                }),
                Some("redacted_thinking") => content.push(ContentBlock::Reasoning {
                    text: None,
                    signature: None,
                    opaque: block["data"].as_str().map(str::to_string),
                    provider: PROVIDER.into(),
                }),
                Some("tool_use") => content.push(ContentBlock::ToolCall(ToolCall {
                    id: block["id"].as_str().unwrap_or_default().into(),
                    name: block["name"].as_str().unwrap_or_default().into(),
                    arguments: block["input"].to_string(),
                })),
                other => self.left_out(other),
            }
        }
        let usage = message["usage"].is_object().then(|| {
            let n = |k: &str| message["usage"][k].as_u64().unwrap_or(0);
            Usage {
                // Tokens read, cached or not.
                input_tokens: n("input_tokens")
                    + n("cache_creation_input_tokens")
                    + n("cache_read_input_tokens"),
                output_tokens: n("output_tokens"),
            }
        });
        let stop = message["stop_reason"].as_str().map(stop_reason);
        let model = message["model"].as_str().unwrap_or("unknown").to_string();
        // Claude Code writes one line per block of one message: merge them.
        if let Some(Step {
            at: last_at,
            lines,
            what: What::Answer(Some(last_id), response),
        }) = self.steps.last_mut()
            && id.as_ref() == Some(last_id)
        {
            *last_at = at;
            lines.push(here);
            response.content.extend(content);
            response.usage = usage.or(response.usage);
            response.stop_reason = stop.unwrap_or_else(|| default_stop(&response.content));
            return;
        }
        let stop_reason = stop.unwrap_or_else(|| default_stop(&content));
        self.steps.push(Step {
            at,
            lines: vec![here],
            what: What::Answer(
                id,
                ModelResponse {
                    content,
                    stop_reason,
                    usage,
                    provider: PROVIDER.into(),
                    model,
                },
            ),
        });
    }

    fn left_out(&mut self, kind: Option<&str>) {
        *self
            .blocks_left_out
            .entry(kind.unwrap_or("?").to_string())
            .or_default() += 1;
    }

    /// The most model calls one input leads to.
    pub(crate) fn longest_turn(&self) -> u32 {
        let mut longest = 0;
        let mut this = 0;
        for step in &self.steps {
            match step.what {
                What::Input(_) => this = 0,
                What::Answer(..) => {
                    this += 1;
                    longest = longest.max(this);
                }
                What::ToolResult { .. } => {}
            }
        }
        longest
    }
}

fn stop_reason(s: &str) -> StopReason {
    match s {
        "end_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "refusal" => StopReason::Refusal,
        _ => StopReason::Other,
    }
}

/// Claude Code's streamed lines often carry `stop_reason: null`.
fn default_stop(content: &[ContentBlock]) -> StopReason {
    if content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolCall(_)))
    {
        StopReason::ToolUse
    } else {
        StopReason::EndTurn
    }
}

/// A tool result's content: a string, or blocks whose text is joined.
fn result_text(content: &Value, left_out: &mut BTreeMap<String, usize>) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for b in blocks {
                match (b["type"].as_str(), b["text"].as_str()) {
                    (Some("text"), Some(t)) => texts.push(t),
                    (kind, _) => *left_out.entry(kind.unwrap_or("?").into()).or_default() += 1,
                }
            }
            texts.join("\n")
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Unix ms of an RFC 3339 time (`2025-06-02T18:46:59.937Z`, or with an
/// offset); `None` when it is not one.
pub(crate) fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        for _ in (i - start).min(3)..3 {
            ms *= 10;
        }
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(&rest[..1], "+" | "-") => {
            let m = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
            if rest.starts_with('-') { -m } else { m }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    u64::try_from(secs * 1000 + ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2025-06-02T18:46:59.937Z"),
            Some(1_748_890_019_937)
        );
        assert_eq!(
            parse_rfc3339_ms("2025-06-02T20:46:59.9+02:00"),
            Some(1_748_890_019_900)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn one_message_written_as_lines_is_one_answer() {
        let mut t = Transcript::default();
        t.line(r#"{"type":"assistant","timestamp":"2025-06-02T18:46:59.937Z","message":{"id":"m1","model":"claude","content":[{"type":"thinking","thinking":"hm","signature":"sig"}]}}"#, false);
        t.line(r#"{"type":"assistant","message":{"id":"m1","model":"claude","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":3,"output_tokens":5}}}"#, false);
        t.line(r#"{"type":"summary","summary":"x"}"#, false);
        t.line(r#"{"type":"user","message":{"role":"user","co"#, true);
        assert_eq!(t.steps.len(), 1);
        let What::Answer(_, r) = &t.steps[0].what else {
            panic!("an answer")
        };
        assert_eq!(r.content.len(), 2);
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(r.usage.map(|u| u.output_tokens), Some(5));
        assert_eq!(t.kept.len(), 1);
        assert_eq!(t.torn, Some((4, 43)));
    }
}
