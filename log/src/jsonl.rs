//! The export form of a log: one event per line, hashes included.
//!
//! A line is `{"seq":N,"at":T,"hash":"<64 hex>",<the body's canonical fields>}`:
//! the canonical body JSON with the three event fields spliced in front, so a
//! line is cheap to write and the body part is byte-for-byte what was hashed.
//!
//! Invariant: [`from_jsonl`] accepts exactly the lines [`to_jsonl`] writes.
//! A line that decodes to an event but is not byte for byte that event's line
//! is refused, saying how it differs: whatever the event does not hold (an
//! unknown field) would otherwise vanish on import without a word, and the
//! chain, which covers only the canonical body, would not protect it.

use std::io::{self, BufRead, Read};

use serde_json::{Map, Value};

use crate::FormatError;
use crate::event::{Event, EventBody, StoredEvent};

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

/// Parses a line written by [`to_jsonl`], refusing with
/// [`FormatError::NotCanonical`] a line that is not byte for byte the line of
/// the event it decodes to. The hash is taken as written; check the chain with
/// [`verify_events`](crate::verify_events).
pub fn from_jsonl(line: &str) -> Result<StoredEvent, FormatError> {
    let fields: Map<String, Value> =
        serde_json::from_str(line).map_err(|e| FormatError::Jsonl(e.to_string()))?;
    let event = from_fields(fields)?;
    // One encode per line: cheap next to the parse, and it is the rule itself.
    let canonical = to_jsonl(&event);
    if canonical != line {
        return Err(FormatError::NotCanonical {
            seq: event.event.seq,
            why: why_not_canonical(line, &canonical),
        });
    }
    Ok(event)
}

/// Parses an event given as a JSON object whose keys may come in any order,
/// as a JSON document (a page of events from the HTTP API) hands it over
/// once parsed. Refused, like [`from_jsonl`], when it holds anything its
/// event does not, or holds it otherwise.
pub fn event_from_json(value: &Value) -> Result<StoredEvent, FormatError> {
    let Value::Object(fields) = value else {
        return Err(FormatError::Jsonl("an event is a JSON object".into()));
    };
    let event = from_fields(fields.clone())?;
    let canonical: Value =
        serde_json::from_str(&to_jsonl(&event)).expect("a line written by to_jsonl is JSON");
    if let Some(why) = difference(value, &canonical, "") {
        return Err(FormatError::NotCanonical {
            seq: event.event.seq,
            why,
        });
    }
    Ok(event)
}

fn from_fields(mut fields: Map<String, Value>) -> Result<StoredEvent, FormatError> {
    let seq = take_u64(&mut fields, "seq")?;
    let at = take_u64(&mut fields, "at")?;
    let hash = match fields.remove("hash") {
        Some(Value::String(h)) => {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&h, &mut hash)
                .map_err(|e| FormatError::Jsonl(format!("`hash`: {e}")))?;
            hash
        }
        _ => return Err(FormatError::Jsonl("`hash` is not a string".into())),
    };
    let body: EventBody = serde_json::from_value(Value::Object(fields))
        .map_err(|e| FormatError::Jsonl(format!("seq {seq}: {e}")))?;
    Ok(StoredEvent {
        event: Event { seq, at, body },
        hash,
    })
}

/// How `line` differs from `canonical`, the line of the event it decodes to.
/// Only a refused line gets here, so this may take its time.
fn why_not_canonical(line: &str, canonical: &str) -> String {
    if let (Ok(written), Ok(wanted)) = (
        serde_json::from_str::<Value>(line),
        serde_json::from_str::<Value>(canonical),
    ) && let Some(why) = difference(&written, &wanted, "")
    {
        return why;
    }
    // The same JSON value in other bytes.
    let at = line
        .bytes()
        .zip(canonical.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(line.len().min(canonical.len()));
    if line.len() == canonical.len() {
        // Reordering keys keeps the length; spacing, escapes and repeats do not.
        format!("fields out of order (first difference at byte {at})")
    } else if line.ends_with('\r') {
        "the line ends in a carriage return (CRLF line ends)".to_owned()
    } else {
        format!(
            "spacing, escapes or a repeated field differ from the canonical JSON \
             (first difference at byte {at})"
        )
    }
}

/// The first difference between a value as written and as the canonical
/// form has it, by path (`content[0].extra`); `None` when they are equal.
fn difference(written: &Value, canonical: &Value, path: &str) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (written, canonical) {
        (Value::Object(w), Value::Object(c)) => {
            if let Some((key, value)) = w.iter().find(|(k, _)| !c.contains_key(*k)) {
                return Some(if value.is_null() {
                    format!(
                        "field {:?} is null, which the canonical form leaves out",
                        join(key)
                    )
                } else {
                    format!("unknown field {:?}", join(key))
                });
            }
            if let Some((key, value)) = c.iter().find(|(k, _)| !w.contains_key(*k)) {
                return Some(format!(
                    "field {:?} is missing (canonically {})",
                    join(key),
                    shortened(value)
                ));
            }
            w.iter()
                .find_map(|(key, value)| difference(value, &c[key], &join(key)))
        }
        (Value::Array(w), Value::Array(c)) if w.len() == c.len() => w
            .iter()
            .zip(c)
            .enumerate()
            .find_map(|(i, (w, c))| difference(w, c, &format!("{path}[{i}]"))),
        _ if written == canonical => None,
        _ => Some(format!(
            "field {path:?} is {} where the canonical form has {}",
            shortened(written),
            shortened(canonical)
        )),
    }
}

/// A value as JSON, cut to a length that fits in an error message.
fn shortened(value: &Value) -> String {
    const MAX_CHARS: usize = 40;
    let text = value.to_string();
    if text.chars().count() > MAX_CHARS {
        format!("{}…", text.chars().take(MAX_CHARS).collect::<String>())
    } else {
        text
    }
}

/// A reader of a JSONL file that hands out whole lines and refuses a line
/// that is not UTF-8 with an error naming it (`line 3: not UTF-8 ...`), where
/// [`BufRead::read_line`] alone says only that the stream was not.
///
/// It holds one line at a time: a line is handed out only once all of it has
/// been read and checked.
#[derive(Debug)]
pub struct Utf8Lines<R> {
    inner: R,
    line: Vec<u8>,
    pos: usize,
    line_no: u64,
}

impl<R: BufRead> Utf8Lines<R> {
    /// Reads lines from `inner`.
    pub fn new(inner: R) -> Self {
        Utf8Lines {
            inner,
            line: Vec::new(),
            pos: 0,
            line_no: 0,
        }
    }
}

impl<R: BufRead> BufRead for Utf8Lines<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.line.len() {
            self.line.clear();
            self.pos = 0;
            if self.inner.read_until(b'\n', &mut self.line)? > 0 {
                self.line_no += 1;
                if let Err(e) = std::str::from_utf8(&self.line) {
                    let at = e.valid_up_to();
                    let byte = self.line[at];
                    self.line.clear();
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "line {}: not UTF-8 (byte 0x{byte:02x} at column {})",
                            self.line_no,
                            at + 1
                        ),
                    ));
                }
            }
        }
        Ok(&self.line[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.line.len());
    }
}

impl<R: BufRead> Read for Utf8Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

fn take_u64(fields: &mut Map<String, Value>, name: &str) -> Result<u64, FormatError> {
    fields
        .remove(name)
        .and_then(|v| v.as_u64())
        .ok_or_else(|| FormatError::Jsonl(format!("`{name}` is not an unsigned integer")))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, Read};

    use super::*;
    use crate::chain::{GENESIS_HASH, chain_events};
    use crate::event::{ContentBlock, Sender};

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

    /// A chained `output` at seq 1 and its line.
    fn output_line() -> (StoredEvent, String) {
        let event = chain_events(
            GENESIS_HASH,
            1,
            [(
                5,
                EventBody::Output {
                    key: "k".into(),
                    content: vec![ContentBlock::text("hi")],
                },
            )],
        )
        .remove(0);
        let line = to_jsonl(&event);
        (event, line)
    }

    fn not_canonical(line: &str) -> String {
        match from_jsonl(line) {
            Err(FormatError::NotCanonical { seq, why }) => {
                assert_eq!(seq, 1, "{line}");
                why
            }
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn a_line_with_a_field_its_event_has_not_is_refused_by_name() {
        let (_, line) = output_line();
        let extra = line.replacen(r#""kind""#, r#""extra":1,"kind""#, 1);
        assert_eq!(not_canonical(&extra), r#"unknown field "extra""#);
        let nested = line.replacen(r#""type":"text""#, r#""type":"text","bold":true"#, 1);
        assert_eq!(not_canonical(&nested), r#"unknown field "content[0].bold""#);
        let null = line.replacen(r#""kind""#, r#""reason":null,"kind""#, 1);
        assert!(not_canonical(&null).contains(r#""reason" is null"#));
    }

    #[test]
    fn a_line_in_other_bytes_is_refused_saying_how() {
        let (event, line) = output_line();
        let swapped = line
            .replacen(r#""key":"k","content""#, r#""content""#, 1)
            .replacen(r#"}]}"#, r#"}],"key":"k"}"#, 1);
        assert_ne!(swapped, line);
        assert!(not_canonical(&swapped).starts_with("fields out of order"));
        let spaced = line.replacen(',', ", ", 1);
        assert!(not_canonical(&spaced).starts_with("spacing, escapes"));
        let escaped = line.replacen("hi", r"\u0068i", 1);
        assert!(not_canonical(&escaped).starts_with("spacing, escapes"));
        assert!(not_canonical(&format!("{line}\r")).contains("carriage return"));
        let upper = line.replacen(
            &hex::encode(event.hash),
            &hex::encode(event.hash).to_uppercase(),
            1,
        );
        assert!(not_canonical(&upper).starts_with(r#"field "hash" is"#));
        // The display the import wraps with its line number.
        assert_eq!(
            from_jsonl(&line.replacen(r#""kind""#, r#""x":[],"kind""#, 1))
                .expect_err("refused")
                .to_string(),
            r#"seq 1: not in canonical form: unknown field "x""#
        );
    }

    #[test]
    fn an_event_as_a_json_object_may_have_its_keys_in_any_order() {
        let (event, line) = output_line();
        // Parsing sorts the keys: `at`, `content`, `hash`, ...
        let value: Value = serde_json::from_str(&line).expect("json");
        assert!(value.to_string().starts_with(r#"{"at":5,"content""#));
        assert_eq!(event_from_json(&value).expect("parses"), event);
        let mut extra = value.clone();
        extra["extra"] = Value::Bool(true);
        assert!(matches!(
            event_from_json(&extra),
            Err(FormatError::NotCanonical { why, .. }) if why == r#"unknown field "extra""#
        ));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_named() {
        let (_, line) = output_line();
        let mut file = Vec::new();
        for _ in 0..2 {
            file.extend_from_slice(line.as_bytes());
            file.push(b'\n');
        }
        let mut bad = line.clone().into_bytes();
        bad[20] = 0xff;
        file.extend_from_slice(&bad);
        file.push(b'\n');
        let mut lines = Utf8Lines::new(file.as_slice());
        let mut text = String::new();
        for _ in 0..2 {
            text.clear();
            lines.read_line(&mut text).expect("a good line");
            assert_eq!(text, format!("{line}\n"));
        }
        let err = lines.read_line(&mut text).expect_err("line 3");
        assert_eq!(
            err.to_string(),
            "line 3: not UTF-8 (byte 0xff at column 21)"
        );

        // Read whole, the good lines come through unchanged.
        let mut all = String::new();
        Utf8Lines::new(&file[..2 * (line.len() + 1)])
            .read_to_string(&mut all)
            .expect("two lines");
        assert_eq!(all, format!("{line}\n{line}\n"));
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
                matches!(from_jsonl(line), Err(FormatError::Jsonl(_))),
                "{line}"
            );
        }
    }
}
