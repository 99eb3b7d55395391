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
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};

use crate::FormatError;
use crate::event::{
    ContentBlock, ErrorKind, EventBody, GuestRef, ModelResponse, Outcome, Question,
    RequestedEffect, Sender, StopReason, ToolCall, ToolPart, Usage,
};

/// Decodes a canonical body (as stored, and as hashed).
pub fn decode_body(bytes: &[u8]) -> Result<EventBody, FormatError> {
    match fast(bytes) {
        Some(body) => Ok(body),
        None => serde_json::from_slice(bytes)
            .map_err(|e| FormatError::Corrupt(format!("event body: {e}"))),
    }
}

/// The kind named by the canonical prefix `{"kind":"<kind>"`.
fn kind_of(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(b"{\"kind\":\"")?;
    let end = rest.iter().position(|b| *b == b'"')?;
    Some(&rest[..end])
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    serde_json::from_str(text).ok()
}

fn fast(bytes: &[u8]) -> Option<EventBody> {
    let kind = kind_of(bytes)?;
    // serde_json skips a field a mirror struct does not name without checking
    // its UTF-8, where the derived decoder (which buffers every field) refuses
    // it: check the whole body once, so that corrupt bytes are refused alike
    // (and the parse then checks no string again).
    let text = std::str::from_utf8(bytes).ok()?;
    Some(match kind {
        // `created` is one event a log, and its struct (not a mirror) does
        // not name `kind`: the derived decoder takes it.
        b"input" => {
            let b: InputB = parse(text)?;
            EventBody::Input {
                from: b.from,
                content: b.content.0,
            }
        }
        b"requested" => parse::<RequestedB>(text)?.into_body()?,
        b"completed" => parse::<CompletedB>(text)?.into_body()?,
        b"failed" => {
            let b: FailedB = parse(text)?;
            EventBody::Failed {
                key: b.key,
                error: b.error,
                message: b.message,
                retryable: b.retryable,
                attempt: b.attempt,
            }
        }
        b"cancelled" => EventBody::Cancelled {
            key: parse::<KeyB>(text)?.key,
        },
        b"approval-requested" => {
            let b: ApprovalRequestedB = parse(text)?;
            EventBody::ApprovalRequested {
                key: b.key,
                tool: b.tool,
                question: b.question,
            }
        }
        b"approval-decided" => {
            let b: ApprovalDecidedB = parse(text)?;
            EventBody::ApprovalDecided {
                key: b.key,
                allow: b.allow,
                by: b.by,
                reason: b.reason,
            }
        }
        b"output" => {
            let b: OutputB = parse(text)?;
            EventBody::Output {
                key: b.key,
                content: b.content.0,
            }
        }
        b"sent" => {
            let b: SentB = parse(text)?;
            EventBody::Sent {
                key: b.key,
                target: b.target,
            }
        }
        b"guest-changed" => {
            let b: GuestChangedB = parse(text)?;
            EventBody::GuestChanged {
                from: b.from,
                to: b.to,
            }
        }
        b"guest-failed" => EventBody::GuestFailed {
            message: parse::<MessageB>(text)?.message,
        },
        b"unparked" => {
            let b: UnparkedB = parse(text)?;
            EventBody::Unparked {
                skip: b.skip,
                by: b.by,
                reason: b.reason,
            }
        }
        b"stopped" => {
            let b: StoppedB = parse(text)?;
            EventBody::Stopped {
                by: b.by,
                reason: b.reason,
            }
        }
        b"resumed" => EventBody::Resumed {
            by: parse::<ResumedB>(text)?.by,
        },
        b"finished" => {
            let b: FinishedB = parse(text)?;
            EventBody::Finished {
                key: b.key,
                result: b.result,
            }
        }
        b"continued" => EventBody::Continued {
            log: parse::<LogB>(text)?.log,
        },
        _ => return None,
    })
}

// Mirrors of the variants. Each names `kind` (read without allocating) so
// that a body carrying it twice is refused, as the derived decoder refuses it.

#[derive(Deserialize)]
struct InputB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    from: Sender,
    content: Blocks,
}

#[derive(Deserialize)]
struct KeyB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    key: String,
}

#[derive(Deserialize)]
struct MessageB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    message: String,
}

#[derive(Deserialize)]
struct LogB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    log: String,
}

#[derive(Deserialize)]
struct FailedB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    key: String,
    error: ErrorKind,
    message: String,
    retryable: bool,
    attempt: u32,
}

#[derive(Deserialize)]
struct ApprovalRequestedB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    key: String,
    tool: Option<ToolCall>,
    question: Option<Question>,
}

#[derive(Deserialize)]
struct ApprovalDecidedB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    key: String,
    allow: bool,
    by: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct OutputB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    key: String,
    content: Blocks,
}

#[derive(Deserialize)]
struct SentB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    key: String,
    target: String,
}

#[derive(Deserialize)]
struct GuestChangedB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    from: GuestRef,
    to: GuestRef,
}

#[derive(Deserialize)]
struct UnparkedB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(default)]
    skip: Option<u64>,
    by: String,
    reason: String,
}

#[derive(Deserialize)]
struct StoppedB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    by: String,
    reason: String,
}

#[derive(Deserialize)]
struct ResumedB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    by: String,
}

#[derive(Deserialize)]
struct FinishedB {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
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
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
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
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    key: String,
    outcome: OutcomeTag,
    content: Option<StrOrBlocks>,
    stop_reason: Option<StopReason>,
    usage: Option<Usage>,
    provider: Option<String>,
    model: Option<String>,
    is_error: Option<bool>,
    #[serde(default)]
    parts: Vec<ToolPart>,
    structured: Option<String>,
}

impl CompletedB {
    fn into_body(self) -> Option<EventBody> {
        let outcome = match (self.outcome, self.content) {
            (OutcomeTag::Model, Some(StrOrBlocks::Blocks(content))) => {
                Outcome::Model(ModelResponse {
                    content,
                    stop_reason: self.stop_reason?,
                    usage: self.usage,
                    provider: self.provider?,
                    model: self.model?,
                })
            }
            (OutcomeTag::Tool, Some(StrOrBlocks::Str(content))) => Outcome::Tool {
                content,
                is_error: self.is_error?,
                parts: self.parts,
                structured: self.structured,
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
    #[serde(default)]
    parts: Vec<ToolPart>,
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
                parts: self.parts,
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
    use crate::jsonl::from_jsonl;

    const GOLDEN: &str = include_str!("../tests/golden/events.jsonl");

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
            if matches!(body, EventBody::Created(_)) {
                assert!(
                    fast(&bytes).is_none(),
                    "`created` takes the derived decoder"
                );
                assert_eq!(decode_body(&bytes).expect("decodes"), derived);
                continue;
            }
            let quick = fast(&bytes).unwrap_or_else(|| panic!("no fast path for {}", body.kind()));
            assert_eq!(quick, derived);
            assert_eq!(quick, body);
        }
    }

    #[test]
    fn a_senders_hops_are_written_only_when_not_zero() {
        let input = |hops| EventBody::Input {
            from: Sender::Log {
                log: "0190f5a2-7c3e-7a11-9e4b-5d2c8f3a6b10".into(),
                key: "send-7".into(),
                hops,
            },
            content: vec![ContentBlock::text("Noted.")],
        };
        // Hop 0 is the event as hosts before hops wrote it, byte for byte.
        let first = input(0).to_canonical();
        let text = String::from_utf8(first.clone()).expect("utf-8");
        // The golden line holds seq, at and hash before the body's fields.
        assert!(
            GOLDEN.contains(&text[1..]),
            "{text} is not the golden input"
        );
        assert!(!text.contains("hops"));
        let later = input(3).to_canonical();
        assert!(String::from_utf8_lossy(&later).contains(r#""hops":3"#));
        for bytes in [first, later] {
            let derived: EventBody = serde_json::from_slice(&bytes).expect("derived");
            assert_eq!(fast(&bytes).expect("fast"), derived);
        }
        assert_ne!(input(0), input(3));
    }

    #[test]
    fn typed_tool_parts_take_the_fast_path() {
        use crate::event::{BlobRef, PartData};
        let parts = vec![
            ToolPart::Image {
                mime_type: "image/png".into(),
                data: PartData::Base64("iVBORw0KGgo=".into()),
                annotations: Some(r#"{"priority":0.5}"#.into()),
            },
            ToolPart::Resource {
                uri: "file:///a.txt".into(),
                mime_type: Some("text/plain".into()),
                text: Some("hello".into()),
                data: None,
                annotations: None,
            },
            ToolPart::Audio {
                mime_type: "audio/wav".into(),
                data: PartData::Blob(BlobRef {
                    digest: format!("sha256:{}", "0".repeat(64)),
                    size: 70_000,
                }),
                annotations: None,
            },
            ToolPart::ResourceLink {
                uri: "file:///b".into(),
                name: "b".into(),
                mime_type: None,
                description: Some("a link".into()),
                annotations: None,
            },
        ];
        let bodies = [
            EventBody::Completed {
                key: "call-1".into(),
                outcome: Outcome::Tool {
                    content: "two parts".into(),
                    is_error: false,
                    parts: parts.clone(),
                    structured: Some(r#"{"n":1}"#.into()),
                },
            },
            EventBody::Output {
                key: "output-1".into(),
                content: vec![ContentBlock::ToolResult {
                    call_id: "call-1".into(),
                    content: "two parts".into(),
                    is_error: false,
                    parts,
                }],
            },
        ];
        for body in bodies {
            let bytes = body.to_canonical();
            let derived: EventBody = serde_json::from_slice(&bytes).expect("derived");
            assert_eq!(derived, body);
            assert_eq!(fast(&bytes).expect("fast path"), body);
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
        assert!(matches!(decode_body(bad), Err(FormatError::Corrupt(_))));
        // A tool outcome with blocks for content.
        let bad =
            br#"{"kind":"completed","key":"k","outcome":"tool","content":[],"is_error":false}"#;
        assert!(fast(bad).is_none());
        assert!(decode_body(bad).is_err());
        assert!(decode_body(b"{\"kind\":\"nope\"}").is_err());
        assert!(decode_body(b"").is_err());
    }

    /// Found by the `decode_body` fuzz target: a field no mirror struct names
    /// was skipped unchecked, so the fast path took a body whose bytes are
    /// not UTF-8 where the derived decoder refuses it.
    #[test]
    fn a_body_that_is_not_utf8_is_refused_even_in_a_field_nobody_reads() {
        let mut bad = br#"{"kind":"cancelled","key":"k","note":"x"}"#.to_vec();
        let x = bad.iter().position(|b| *b == b'x').expect("an x");
        bad[x] = 0xff;
        assert!(serde_json::from_slice::<EventBody>(&bad).is_err());
        assert!(matches!(decode_body(&bad), Err(FormatError::Corrupt(_))));
    }

    /// Found by the `decode_body` fuzz target: a mirror did not name `kind`,
    /// so a body that carries it twice decoded where the derived decoder
    /// refuses a duplicate field.
    #[test]
    fn a_body_with_its_kind_twice_is_refused() {
        let bad = br#"{"kind":"cancelled","kind":"cancelled","key":"k"}"#;
        assert!(serde_json::from_slice::<EventBody>(bad).is_err());
        assert!(matches!(decode_body(bad), Err(FormatError::Corrupt(_))));
    }

    /// `cargo test --release -p logbook-log --lib -- --ignored decode_speed_of_bodies --nocapture`
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
