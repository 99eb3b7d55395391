//! Redaction: the one way that text a model provider sent becomes text the
//! host may log, answer with, or stream to observers.
//!
//! Providers echo secrets back: a key quoted in an error ("Incorrect API key
//! provided: sk-…"), a proxy's `Authorization` header in a debugging body, a
//! completion that repeats what it was sent. So every string that came from
//! a provider passes a [`Redactor`] before it becomes a
//! [`ModelError`](super::ModelError), a [`ModelResponse`] or a live delta,
//! and the types hold the callers to it: a [`ProviderText`] is built only by
//! scrubbing (or from a `&'static str` the host wrote itself), a
//! `ModelError`'s message is one, and a [`DeltaSink`](super::DeltaSink)
//! takes one.
//!
//! What is replaced by `[redacted]`:
//! - each secret the redactor was given (the API key read for the call),
//!   wherever it appears, if it has at least [`MIN_SECRET_BYTES`] bytes;
//! - the credential after `Bearer `;
//! - the value of an echoed credential field, `authorization`, `x-api-key`,
//!   `api-key` or `api_key`, as `name: v`, `name=v` or `"name":"v"`;
//! - anything shaped like a provider key, configured or not (a proxy may add
//!   its own): `sk-` followed by at least [`KEY_SHAPE_MIN_CHARS`] of
//!   `[A-Za-z0-9_-]`, which covers `sk-ant-…` and `sk-proj-…`.
//!
//! Invariants:
//! - scrubbing scrubbed text changes nothing (unless a secret is a piece of
//!   `[redacted]`);
//! - a shape's replacement stays inside one JSON string (it never takes a
//!   `"` or a `\`, nor stands for a value that is not a string), so JSON
//!   text (tool-call arguments, opaque reasoning) is still JSON after it; so
//!   is a known secret's, for keys as providers issue them (letters, digits,
//!   `-`, `_`), which valid JSON holds only inside strings;
//! - a text scrubbed as a stream, piece by piece ([`StreamRedactor`]), comes
//!   out exactly as the whole text scrubbed at once: a secret split across
//!   two deltas is held back until it can be told apart, never sent in
//!   halves;
//! - a `Redactor`'s `Debug` never shows its secrets.

mod shapes;

use std::fmt;

use self::shapes::{LOOKBEHIND, hide_shapes};
use crate::journal::{ContentBlock, ModelResponse};

/// What a secret is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Shorter secrets are not searched for: they would match ordinary text.
pub const MIN_SECRET_BYTES: usize = 4;

/// How many key characters after `sk-` make text look like a provider key.
pub const KEY_SHAPE_MIN_CHARS: usize = 16;

/// Text from a provider with every secret removed, or text the host wrote.
/// Nothing else can become one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProviderText(String);

impl ProviderText {
    /// Text the host wrote itself: a literal, so never text it received.
    pub fn host(text: &'static str) -> ProviderText {
        ProviderText(text.to_string())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ProviderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProviderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for ProviderText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<ProviderText> for String {
    fn from(text: ProviderText) -> String {
        text.0
    }
}

/// Knows the secrets in play for one call, and removes them (and anything
/// shaped like a credential) from what the provider sent.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret that contains another is removed whole.
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor that knows no secret: it still removes anything shaped
    /// like a credential.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// A redactor that knows `secrets` (those shorter than
    /// [`MIN_SECRET_BYTES`] are left out).
    pub fn with_secrets<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Redactor {
        let mut redactor = Redactor::new();
        for secret in secrets {
            redactor.add_secret(secret.as_ref());
        }
        redactor
    }

    /// Also remove `secret` (unless it is shorter than [`MIN_SECRET_BYTES`]).
    pub fn add_secret(&mut self, secret: &str) {
        if secret.len() >= MIN_SECRET_BYTES && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every secret removed.
    pub fn scrub(&self, text: &str) -> ProviderText {
        ProviderText(self.clean(text))
    }

    /// A response with every string the provider wrote scrubbed: text,
    /// reasoning (signature and opaque data too), tool calls, the model name.
    pub fn response(&self, mut response: ModelResponse) -> ModelResponse {
        for block in &mut response.content {
            match block {
                ContentBlock::Text { text } => self.clean_in_place(text),
                ContentBlock::ToolCall(call) => {
                    self.clean_in_place(&mut call.id);
                    self.clean_in_place(&mut call.name);
                    self.clean_in_place(&mut call.arguments);
                }
                ContentBlock::ToolResult {
                    call_id, content, ..
                } => {
                    self.clean_in_place(call_id);
                    self.clean_in_place(content);
                }
                ContentBlock::Reasoning {
                    text,
                    signature,
                    opaque,
                    provider: _,
                } => {
                    for field in [text, signature, opaque].into_iter().flatten() {
                        self.clean_in_place(field);
                    }
                }
            }
        }
        self.clean_in_place(&mut response.model);
        response
    }

    /// A scrubber of one text that arrives in pieces.
    pub fn stream(&self) -> StreamRedactor<'_> {
        StreamRedactor {
            redactor: self,
            raw: String::new(),
            mid: String::new(),
            context: 0,
        }
    }

    fn clean(&self, text: &str) -> String {
        let mut mid = String::with_capacity(text.len());
        self.hide_secrets(text, true, &mut mid);
        let mut out = String::with_capacity(mid.len());
        hide_shapes(&mid, 0, true, &mut out);
        out
    }

    fn clean_in_place(&self, text: &mut String) {
        let clean = self.clean(text);
        if clean != *text {
            *text = clean;
        }
    }

    /// Copy `text` to `out` with each known secret replaced. Answers where it
    /// stopped: `text.len()`, or (unless `at_end`) where the text ends in
    /// what may be the start of a secret.
    fn hide_secrets(&self, text: &str, at_end: bool, out: &mut String) -> usize {
        let mut copied = 0;
        loop {
            // The leftmost; of those that start there, the longest.
            let next = self
                .secrets
                .iter()
                .filter_map(|s| {
                    text[copied..]
                        .find(s.as_str())
                        .map(|at| (copied + at, s.len()))
                })
                .min_by_key(|&(at, len)| (at, std::cmp::Reverse(len)));
            let held = if at_end {
                None
            } else {
                self.partial_from(text, copied)
            };
            match (next, held) {
                // Where a shorter secret matched, a longer one may yet start.
                (_, Some(held)) if next.is_none_or(|(at, _)| held <= at) => {
                    out.push_str(&text[copied..held]);
                    return held;
                }
                (Some((at, len)), _) => {
                    out.push_str(&text[copied..at]);
                    out.push_str(REDACTED);
                    copied = at + len;
                }
                (None, _) => {
                    out.push_str(&text[copied..]);
                    return text.len();
                }
            }
        }
    }

    /// The first position from `from` at which the text ends inside the
    /// beginning of a secret. A secret's first byte never continues a UTF-8
    /// sequence, so that is a char boundary.
    fn partial_from(&self, text: &str, from: usize) -> Option<usize> {
        let b = text.as_bytes();
        let longest = self.secrets.first()?.len();
        let start = from.max(b.len().saturating_sub(longest - 1));
        (start..b.len()).find(|&p| {
            self.secrets
                .iter()
                .any(|s| s.len() > b.len() - p && s.as_bytes().starts_with(&b[p..]))
        })
    }
}

/// Scrubs one text that arrives in pieces (a model's streamed deltas): what
/// could be the start of a secret is held back until the next piece tells.
/// The pieces it gives out add up to the whole text scrubbed at once.
pub struct StreamRedactor<'r> {
    redactor: &'r Redactor,
    /// Received, not yet past the pass over known secrets.
    raw: String,
    /// Past that pass, not yet past the pass over shapes; its first
    /// `context` bytes were given out already and are kept for look-behind.
    mid: String,
    context: usize,
}

impl StreamRedactor<'_> {
    /// Take the next piece; answers what can be given out now (maybe nothing).
    pub fn push(&mut self, piece: &str) -> ProviderText {
        self.raw.push_str(piece);
        self.run(false)
    }

    /// The text ended: answers all that was held back.
    pub fn finish(&mut self) -> ProviderText {
        let out = self.run(true);
        self.mid.clear();
        self.context = 0;
        out
    }

    fn run(&mut self, at_end: bool) -> ProviderText {
        let done = self.redactor.hide_secrets(&self.raw, at_end, &mut self.mid);
        self.raw.drain(..done);
        let mut out = String::new();
        let done = hide_shapes(&self.mid, self.context, at_end, &mut out);
        let mut keep = done.saturating_sub(LOOKBEHIND);
        while !self.mid.is_char_boundary(keep) {
            keep -= 1;
        }
        self.mid.drain(..keep);
        self.context = done - keep;
        ProviderText(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{StopReason, ToolCall};

    const KEY: &str = "sk-test-LEAKCANARY-0123456789abcdef";

    fn keyed() -> Redactor {
        Redactor::with_secrets([KEY])
    }

    fn scrub(text: &str) -> String {
        keyed().scrub(text).into_string()
    }

    #[test]
    fn the_exact_key_is_removed_wherever_it_is() {
        assert_eq!(
            scrub(&format!("Incorrect API key provided: {KEY}.")),
            "Incorrect API key provided: [redacted]."
        );
        // Glued to other text, where no shape rule would see it.
        assert_eq!(scrub(&format!("x{KEY}y")), "x[redacted]y");
        let short = Redactor::with_secrets(["k3y!"]);
        assert_eq!(
            short.scrub("the key k3y! is bad").as_str(),
            "the key [redacted] is bad"
        );
        let tiny = Redactor::with_secrets(["abc"]);
        assert_eq!(tiny.scrub("abc").as_str(), "abc", "too short to look for");
    }

    #[test]
    fn a_secret_that_contains_another_is_removed_whole() {
        let r = Redactor::with_secrets(["abcd", "abcdefgh!"]);
        assert_eq!(r.scrub("[abcdefgh!]").as_str(), "[[redacted]]");
        assert_eq!(r.scrub("abcd-x").as_str(), "[redacted]-x");
    }

    #[test]
    fn json_stays_json_and_scrubbing_is_idempotent() {
        let text = serde_json::json!({
            "a": format!("Bearer {KEY}"),
            "b": "authorization: Basic abc",
            "c": {"x-api-key": "sk-ant-0123456789abcdefgh"},
            "d": format!("line\n{KEY}\tend"),
            "e": "api-key=v1;x",
            "api_key": 12345,
            "authorization": {"scheme": "Basic"},
            "x-api-key": null,
        })
        .to_string();
        let once = scrub(&text);
        let value: serde_json::Value = serde_json::from_str(&once).expect("still JSON");
        assert!(
            !once.contains(KEY) && !once.contains("0123456789abcdefgh"),
            "{once}"
        );
        assert_eq!(value["c"]["x-api-key"], REDACTED);
        assert_eq!(scrub(&once), once);
    }

    /// Every way of cutting `text` in two, and one char at a time.
    fn cuts(text: &str) -> Vec<Vec<&str>> {
        let mut all = vec![
            text.char_indices()
                .map(|(i, c)| &text[i..i + c.len_utf8()])
                .collect(),
        ];
        for (i, _) in text.char_indices().skip(1) {
            all.push(vec![&text[..i], &text[i..]]);
        }
        all
    }

    #[test]
    fn a_stream_in_pieces_comes_out_as_the_whole_text_scrubbed() {
        let r = Redactor::with_secrets([KEY, "pässwörd", "abcd", "abcdefgh!"]);
        for text in [
            "x abcdefgh! y abcd z abcdefg abc".to_string(),
            format!("Your key: {KEY}. Again: {KEY}"),
            "auth: authorization: Bearer ab.cd, x-api-key=zz; sk-ant-0123456789abcdefABC!".into(),
            "naïve pässwörd — bearer ok\\nsk-0123456789abcdef0 end".into(),
            "s sk sk- bea auth x-api".into(),
            format!(r#"{{"path":"{KEY}","b":"Bearer q"}}"#),
        ] {
            let whole = r.scrub(&text).into_string();
            for pieces in cuts(&text) {
                let mut stream = r.stream();
                let mut out = String::new();
                for piece in &pieces {
                    out.push_str(stream.push(piece).as_str());
                }
                out.push_str(stream.finish().as_str());
                assert_eq!(out, whole, "{pieces:?}");
            }
        }
    }

    #[test]
    fn a_key_split_across_pieces_is_held_back_not_sent_in_halves() {
        let r = keyed();
        let mut stream = r.stream();
        let first = stream.push("Split: sk-test-LEAK");
        assert_eq!(first.as_str(), "Split: ");
        let second = stream.push("CANARY-0123456789abcdef done");
        assert_eq!(second.as_str(), "[redacted] done");
        assert_eq!(stream.finish().as_str(), "");
    }

    #[test]
    fn every_string_of_a_response_is_scrubbed() {
        let r = keyed();
        let response = ModelResponse {
            content: vec![
                ContentBlock::Reasoning {
                    text: Some(format!("think {KEY}")),
                    signature: Some(format!("sig{KEY}")),
                    opaque: Some(format!("[\"{KEY}\"]")),
                    provider: "openai".into(),
                },
                ContentBlock::text(format!("say {KEY}")),
                ContentBlock::ToolCall(ToolCall {
                    id: format!("call_{KEY}"),
                    name: "fs.read".into(),
                    arguments: format!("{{\"path\":\"{KEY}\"}}"),
                }),
            ],
            stop_reason: StopReason::EndTurn,
            usage: None,
            provider: "openai".into(),
            model: format!("m-{KEY}"),
        };
        let clean = r.response(response);
        let text = serde_json::to_string(&clean).unwrap();
        assert!(!text.contains(KEY), "{text}");
        assert_eq!(text.matches(REDACTED).count(), 7, "{text}");
        let ContentBlock::ToolCall(call) = &clean.content[2] else {
            panic!("a tool call")
        };
        assert_eq!(call.name, "fs.read");
        assert!(serde_json::from_str::<serde_json::Value>(&call.arguments).is_ok());
    }

    #[test]
    fn a_redactor_does_not_show_its_secrets() {
        let shown = format!("{:?}", keyed());
        assert!(!shown.contains(KEY), "{shown}");
        assert_eq!(ProviderText::host("fixed").as_str(), "fixed");
    }
}
