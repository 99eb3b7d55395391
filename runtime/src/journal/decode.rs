//! Decoding stored event bodies, fast.
//!
//! Waking a session replays its whole log, so decoding is on the hot path: the
//! derived `Deserialize` of [`EventBody`] (internally tagged, with flattened
//! effects and outcomes) first buffers every body into an untyped tree and
//! then walks it again. Canonical bodies always begin with `{"kind":"<kind>"`,
//! and `requested` / `completed` carry their inner tag as a sibling field, so
//! this module reads the kind from that prefix and deserializes straight into
//! per-kind mirror structs, allocating only the strings the event owns.
//!
//! Invariant: [`decode_body`] returns exactly what `serde_json::from_slice::<EventBody>`
//! returns. Anything the fast path does not recognise falls back to it, so
//! errors (and non-canonical input) get the derived behaviour and messages.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::JournalError;
use super::event::{
    ContentBlock, Created, ErrorKind, EventBody, GuestRef, ModelResponse, Outcome, Question,
    RequestedEffect, Sender, StopReason, ToolCall, Usage,
};

/// Decodes a canonical body (as stored, and as hashed).
pub fn decode_body(bytes: &[u8]) -> Result<EventBody, JournalError> {
    match fast(bytes) {
        Some(body) => Ok(body),
        None => serde_json::from_slice(bytes)
            .map_err(|e| JournalError::Corrupt(format!("event body: {e}"))),
    }
}

/// The kind named by the canonical prefix `{"kind":"<kind>"`.
fn kind_of(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(b"{\"kind\":\"")?;
    let end = rest.iter().position(|b| *b == b'"')?;
    Some(&rest[..end])
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

fn fast(bytes: &[u8]) -> Option<EventBody> {
    Some(match kind_of(bytes)? {
        b"created" => EventBody::Created(parse::<Created>(bytes)?),
        b"input" => {
            let b: InputB = parse(bytes)?;
            EventBody::Input {
                from: b.from,
                content: b.content.0,
            }
        }
        b"requested" => parse::<RequestedB>(bytes)?.into_body()?,
        b"completed" => parse::<CompletedB>(bytes)?.into_body()?,
        b"failed" => {
            let b: FailedB = parse(bytes)?;
            EventBody::Failed {
                key: b.key,
                error: b.error,
                message: b.message,
                retryable: b.retryable,
                attempt: b.attempt,
            }
        }
        b"cancelled" => EventBody::Cancelled {
            key: parse::<KeyB>(bytes)?.key,
        },
        b"approval-requested" => {
            let b: ApprovalRequestedB = parse(bytes)?;
            EventBody::ApprovalRequested {
                key: b.key,
                tool: b.tool,
                question: b.question,
            }
        }
        b"approval-decided" => {
            let b: ApprovalDecidedB = parse(bytes)?;
            EventBody::ApprovalDecided {
                key: b.key,
                allow: b.allow,
                by: b.by,
                reason: b.reason,
            }
        }
        b"output" => {
            let b: OutputB = parse(bytes)?;
            EventBody::Output {
                key: b.key,
                content: b.content.0,
            }
        }
        b"sent" => {
            let b: SentB = parse(bytes)?;
            EventBody::Sent {
                key: b.key,
                target: b.target,
            }
        }
        b"guest-changed" => {
            let b: GuestChangedB = parse(bytes)?;
            EventBody::GuestChanged {
                from: b.from,
                to: b.to,
            }
        }
        b"guest-failed" => EventBody::GuestFailed {
            message: parse::<MessageB>(bytes)?.message,
        },
        b"unparked" => {
            let b: UnparkedB = parse(bytes)?;
            EventBody::Unparked {
                skip: b.skip,
                by: b.by,
                reason: b.reason,
            }
        }
        b"stopped" => {
            let b: StoppedB = parse(bytes)?;
            EventBody::Stopped {
                by: b.by,
                reason: b.reason,
            }
        }
        b"resumed" => EventBody::Resumed {
            by: parse::<ResumedB>(bytes)?.by,
        },
        b"finished" => {
            let b: FinishedB = parse(bytes)?;
            EventBody::Finished {
                key: b.key,
                result: b.result,
            }
        }
        b"continued" => EventBody::Continued {
            log: parse::<LogB>(bytes)?.log,
        },
        _ => return None,
    })
}

// Mirrors of the variants. The `kind` field is an unknown field to them, and
// serde skips it without allocating.

#[derive(Deserialize)]
struct InputB {
    from: Sender,
    content: Blocks,
}

#[derive(Deserialize)]
struct KeyB {
    key: String,
}

#[derive(Deserialize)]
struct MessageB {
    message: String,
}

#[derive(Deserialize)]
struct LogB {
    log: String,
}

#[derive(Deserialize)]
struct FailedB {
    key: String,
    error: ErrorKind,
    message: String,
    retryable: bool,
    attempt: u32,
}

#[derive(Deserialize)]
struct ApprovalRequestedB {
    key: String,
    tool: Option<ToolCall>,
    question: Option<Question>,
}

#[derive(Deserialize)]
struct ApprovalDecidedB {
    key: String,
    allow: bool,
    by: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct OutputB {
    key: String,
    content: Blocks,
}

#[derive(Deserialize)]
struct SentB {
    key: String,
    target: String,
}

#[derive(Deserialize)]
struct GuestChangedB {
    from: GuestRef,
    to: GuestRef,
}

#[derive(Deserialize)]
struct UnparkedB {
    #[serde(default)]
    skip: Option<u64>,
    by: String,
    reason: String,
}

#[derive(Deserialize)]
struct StoppedB {
    by: String,
    reason: String,
}

#[derive(Deserialize)]
struct ResumedB {
    by: String,
}

#[derive(Deserialize)]
struct FinishedB {
    key: String,
    result: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum EffectTag {
    Model,
    Tool,
    Ask,
    Sleep,
}

/// `requested` with every field of every effect, flat.
#[derive(Deserialize)]
struct RequestedB {
    key: String,
    effect: EffectTag,
    model: Option<String>,
    digest: Option<String>,
    summary: Option<String>,
    id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
    text: Option<String>,
    until: Option<u64>,
}

impl RequestedB {
    fn into_body(self) -> Option<EventBody> {
        let effect = match self.effect {
            EffectTag::Model => RequestedEffect::Model {
                model: self.model?,
                digest: self.digest?,
                summary: self.summary?,
            },
            EffectTag::Tool => RequestedEffect::Tool(ToolCall {
                id: self.id?,
                name: self.name?,
                arguments: self.arguments?,
            }),
            EffectTag::Ask => RequestedEffect::Ask(Question { text: self.text? }),
            EffectTag::Sleep => RequestedEffect::Sleep { until: self.until? },
        };
        Some(EventBody::Requested {
            key: self.key,
            effect,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum OutcomeTag {
    Model,
    Tool,
    TimerFired,
}

/// `completed` with every field of every outcome, flat.
#[derive(Deserialize)]
struct CompletedB {
    key: String,
    outcome: OutcomeTag,
    content: Option<StrOrBlocks>,
    stop_reason: Option<StopReason>,
    usage: Option<Usage>,
    provider: Option<String>,
    model: Option<String>,
    is_error: Option<bool>,
}

impl CompletedB {
    fn into_body(self) -> Option<EventBody> {
        let outcome = match (self.outcome, self.content) {
            (OutcomeTag::Model, Some(StrOrBlocks::Blocks(content))) => {
                Outcome::Model(ModelResponse {
                    content,
                    stop_reason: self.stop_reason?,
                    usage: self.usage?,
                    provider: self.provider?,
                    model: self.model?,
                })
            }
            (OutcomeTag::Tool, Some(StrOrBlocks::Str(content))) => Outcome::Tool {
                content,
                is_error: self.is_error?,
            },
            (OutcomeTag::TimerFired, _) => Outcome::TimerFired,
            _ => return None,
        };
        Some(EventBody::Completed {
            key: self.key,
            outcome,
        })
    }
}

/// `content` of a `completed`: text for a tool, blocks for a model.
enum StrOrBlocks {
    Str(String),
    Blocks(Vec<ContentBlock>),
}

impl<'de> Deserialize<'de> for StrOrBlocks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrBlocks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of content blocks")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StrOrBlocks, E> {
                Ok(StrOrBlocks::Str(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<StrOrBlocks, E> {
                Ok(StrOrBlocks::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<StrOrBlocks, A::Error> {
                Ok(StrOrBlocks::Blocks(BlocksVisitor.visit_seq(seq)?.0))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of content blocks, each decoded through [`BlockB`].
struct Blocks(Vec<ContentBlock>);

struct BlocksVisitor;

impl<'de> Visitor<'de> for BlocksVisitor {
    type Value = Blocks;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of content blocks")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blocks, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(b) = seq.next_element::<BlockB>()? {
            out.push(
                b.into_block()
                    .ok_or_else(|| de::Error::custom("content block lacks a field"))?,
            );
        }
        Ok(Blocks(out))
    }
}

impl<'de> Deserialize<'de> for Blocks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(BlocksVisitor)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum BlockTag {
    Text,
    ToolCall,
    ToolResult,
    Reasoning,
}

/// A content block with every field of every block type, flat.
#[derive(Deserialize)]
struct BlockB {
    #[serde(rename = "type")]
    ty: BlockTag,
    text: Option<String>,
    id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
    call_id: Option<String>,
    content: Option<String>,
    is_error: Option<bool>,
    signature: Option<String>,
    opaque: Option<String>,
    provider: Option<String>,
}

impl BlockB {
    fn into_block(self) -> Option<ContentBlock> {
        Some(match self.ty {
            BlockTag::Text => ContentBlock::Text { text: self.text? },
            BlockTag::ToolCall => ContentBlock::ToolCall(ToolCall {
                id: self.id?,
                name: self.name?,
                arguments: self.arguments?,
            }),
            BlockTag::ToolResult => ContentBlock::ToolResult {
                call_id: self.call_id?,
                content: self.content?,
                is_error: self.is_error?,
            },
            BlockTag::Reasoning => ContentBlock::Reasoning {
                text: self.text,
                signature: self.signature,
                opaque: self.opaque,
                provider: self.provider?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::jsonl::from_jsonl;

    const GOLDEN: &str = include_str!("../../tests/all/golden/events.jsonl");

    fn golden() -> Vec<EventBody> {
        GOLDEN
            .lines()
            .map(|l| from_jsonl(l).expect("golden line").event.body)
            .collect()
    }

    #[test]
    fn the_fast_path_agrees_with_the_derived_decoder_on_every_kind() {
        for body in golden() {
            let bytes = body.to_canonical();
            let derived: EventBody = serde_json::from_slice(&bytes).expect("derived");
            let quick = fast(&bytes).unwrap_or_else(|| panic!("no fast path for {}", body.kind()));
            assert_eq!(quick, derived);
            assert_eq!(quick, body);
        }
    }

    #[test]
    fn what_the_fast_path_does_not_take_falls_back() {
        // Not canonical (kind not first): still decodes, through serde.
        let body = decode_body(br#"{"key":"k","kind":"cancelled"}"#).expect("decodes");
        assert_eq!(body, EventBody::Cancelled { key: "k".into() });
        // A block missing its field: the derived decoder's error.
        let bad = br#"{"kind":"output","key":"k","content":[{"type":"text"}]}"#;
        assert!(fast(bad).is_none());
        assert!(matches!(decode_body(bad), Err(JournalError::Corrupt(_))));
        // A tool outcome with blocks for content.
        let bad =
            br#"{"kind":"completed","key":"k","outcome":"tool","content":[],"is_error":false}"#;
        assert!(fast(bad).is_none());
        assert!(decode_body(bad).is_err());
        assert!(decode_body(b"{\"kind\":\"nope\"}").is_err());
        assert!(decode_body(b"").is_err());
    }

    /// `cargo test --release -p logbook --lib -- --ignored decode_speed_of_bodies --nocapture`
    #[test]
    #[ignore = "a measurement, not a test"]
    fn decode_speed_of_bodies() {
        let bodies: Vec<Vec<u8>> = golden().iter().map(EventBody::to_canonical).collect();
        // The best of several runs: the machine may be busy with other work.
        let time = |f: &dyn Fn(&[u8])| {
            (0..20)
                .map(|_| {
                    let start = std::time::Instant::now();
                    for _ in 0..100 {
                        for b in &bodies {
                            f(b);
                        }
                    }
                    start.elapsed().as_nanos() / (100 * bodies.len()) as u128
                })
                .min()
                .unwrap_or_default()
        };
        let derived = time(&|b| {
            std::hint::black_box(serde_json::from_slice::<EventBody>(b).expect("decodes"));
        });
        let quick = time(&|b| {
            std::hint::black_box(decode_body(b).expect("decodes"));
        });
        println!("derived: {derived} ns/event, fast: {quick} ns/event");
    }
}
