//! The export form of a log: one event per line, hashes included.
//!
//! A line is `{"seq":N,"at":T,"hash":"<64 hex>",<the body's canonical fields>}`:
//! the canonical body JSON with the three event fields spliced in front, so a
//! line is cheap to write and the body part is byte-for-byte what was hashed.

use serde_json::{Map, Value};

use super::JournalError;
use super::event::{Event, EventBody, StoredEvent};

/// One event as a JSONL line (no trailing newline).
pub fn to_jsonl(event: &StoredEvent) -> String {
    let body = event.event.body.to_canonical();
    let head = format!(
        "{{\"seq\":{},\"at\":{},\"hash\":\"{}\"",
        event.event.seq,
        event.event.at,
        hex::encode(event.hash)
    );
    // A body is a JSON object with at least its `kind`: `{"kind":…}`.
    let fields = body.get(1..).unwrap_or_default();
    let mut line = String::with_capacity(head.len() + 1 + fields.len());
    line.push_str(&head);
    line.push(',');
    line.push_str(&String::from_utf8_lossy(fields));
    line
}

/// Parses a line written by [`to_jsonl`]. The hash is taken as written; check
/// the chain with [`verify_events`](super::verify_events).
pub fn from_jsonl(line: &str) -> Result<StoredEvent, JournalError> {
    let mut fields: Map<String, Value> =
        serde_json::from_str(line).map_err(|e| JournalError::Jsonl(e.to_string()))?;
    let seq = take_u64(&mut fields, "seq")?;
    let at = take_u64(&mut fields, "at")?;
    let hash = match fields.remove("hash") {
        Some(Value::String(h)) => {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&h, &mut hash)
                .map_err(|e| JournalError::Jsonl(format!("`hash`: {e}")))?;
            hash
        }
        _ => return Err(JournalError::Jsonl("`hash` is not a string".into())),
    };
    let body: EventBody = serde_json::from_value(Value::Object(fields))
        .map_err(|e| JournalError::Jsonl(format!("seq {seq}: {e}")))?;
    Ok(StoredEvent {
        event: Event { seq, at, body },
        hash,
    })
}

fn take_u64(fields: &mut Map<String, Value>, name: &str) -> Result<u64, JournalError> {
    fields
        .remove(name)
        .and_then(|v| v.as_u64())
        .ok_or_else(|| JournalError::Jsonl(format!("`{name}` is not an unsigned integer")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::chain::{GENESIS_HASH, chain_events};
    use crate::journal::event::{ContentBlock, Sender};

    #[test]
    fn a_line_is_the_event_fields_then_the_canonical_body() {
        let events = chain_events(
            GENESIS_HASH,
            3,
            [(
                42,
                EventBody::Input {
                    from: Sender::Principal("cli".into()),
                    content: vec![ContentBlock::text("hi\nthere")],
                },
            )],
        );
        let line = to_jsonl(&events[0]);
        let hash = hex::encode(events[0].hash);
        assert_eq!(
            line,
            format!(
                r#"{{"seq":3,"at":42,"hash":"{hash}","kind":"input","from":{{"principal":"cli"}},"content":[{{"type":"text","text":"hi\nthere"}}]}}"#
            )
        );
        assert!(!line.contains('\n'));
        assert_eq!(from_jsonl(&line).expect("parses"), events[0]);
    }

    #[test]
    fn bad_lines_are_refused() {
        for line in [
            "",
            "{}",
            r#"{"seq":0,"at":1,"hash":"00","kind":"cancelled","key":"k"}"#,
            r#"{"seq":-1,"at":1,"kind":"cancelled","key":"k"}"#,
            &format!(
                r#"{{"seq":0,"at":1,"hash":"{}","kind":"nope"}}"#,
                "0".repeat(64)
            ),
        ] {
            assert!(
                matches!(from_jsonl(line), Err(JournalError::Jsonl(_))),
                "{line}"
            );
        }
    }
}
