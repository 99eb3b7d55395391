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
//! - scrubbing is idempotent;
//! - a replacement never takes a `"` or a `\`, so JSON text (tool-call
//!   arguments, opaque reasoning) is still JSON after it;
//! - a text scrubbed as a stream, piece by piece ([`StreamRedactor`]), comes
//!   out exactly as the whole text scrubbed at once: a secret split across
//!   two deltas is held back until it can be told apart, never sent in
//!   halves;
//! - a `Redactor`'s `Debug` never shows its secrets.

use std::fmt;

use crate::journal::{ContentBlock, ModelResponse};

/// What a secret is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Shorter secrets are not searched for: they would match ordinary text.
pub const MIN_SECRET_BYTES: usize = 4;

/// How many key characters after `sk-` make text look like a provider key.
pub const KEY_SHAPE_MIN_CHARS: usize = 16;

/// Field names (lower case) whose echoed value is a credential.
const CREDENTIAL_FIELDS: &[&[u8]] = &[b"authorization", b"x-api-key", b"api-key", b"api_key"];

/// The longest word taken as an auth scheme (`Bearer`, `Basic`, `Token`) and
/// redacted together with the credential that follows it.
const SCHEME_MAX_BYTES: usize = 16;

/// How many bytes before a position the rules look at (word boundaries and
/// JSON escapes such as `\n`).
const LOOKBEHIND: usize = 2;

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

/// What a shape rule finds at a position.
enum Found {
    /// Nothing.
    No,
    /// `text[at..end]` is a credential; what lies between the position and
    /// `at` (a field's name, `Bearer `) stays.
    Secret { at: usize, end: usize },
    /// The text ends before the rule can tell: wait for more of it.
    More,
}

/// Copy `text[from..]` to `out`, replacing each credential found by its
/// shape. Bytes before `from` are context (look-behind) only. Answers where
/// it stopped: `text.len()`, or (unless `at_end`) the start of what needs
/// more text to tell.
fn hide_shapes(text: &str, from: usize, at_end: bool, out: &mut String) -> usize {
    let b = text.as_bytes();
    let mut copied = from;
    let mut i = from;
    // Every shape starts on an ASCII letter, never inside a UTF-8 sequence,
    // so each slice below is on char boundaries; and at the start of a word,
    // which rules out most letters at once.
    while i < b.len() {
        let shape_may_start = matches!(b[i], b'a' | b'A' | b'x' | b'X' | b'b' | b'B' | b's')
            && word_starts(b, i, u8::is_ascii_alphanumeric);
        if !shape_may_start {
            i += 1;
            continue;
        }
        let found = match b[i] {
            b'b' | b'B' => bearer_at(b, i, at_end),
            b's' => key_at(b, i, at_end),
            _ => field_at(b, i, at_end),
        };
        match found {
            Found::No => i += 1,
            Found::Secret { at, end } => {
                out.push_str(&text[copied..at]);
                out.push_str(REDACTED);
                i = end;
                copied = end;
            }
            Found::More => {
                out.push_str(&text[copied..i]);
                return i;
            }
        }
    }
    out.push_str(&text[copied..]);
    b.len()
}

/// `name: value` of a credential field.
fn field_at(b: &[u8], i: usize, at_end: bool) -> Found {
    if !word_starts(b, i, u8::is_ascii_alphanumeric) {
        return Found::No;
    }
    let mut more = false;
    for name in CREDENTIAL_FIELDS {
        match word_at(b, i, name, at_end) {
            Word::Yes => return field_value(b, i + name.len(), at_end),
            Word::More => more = true,
            Word::No => {}
        }
    }
    if more { Found::More } else { Found::No }
}

/// The value after a credential field's name, if a `:` or `=` follows it.
fn field_value(b: &[u8], j: usize, at_end: bool) -> Found {
    let quoting = |c: u8| matches!(c, b' ' | b'\t' | b'"' | b'\'' | b'\\');
    let k = run_end(b, j, quoting);
    if k == b.len() {
        return undecided(at_end);
    }
    if !matches!(b[k], b':' | b'=') {
        return Found::No;
    }
    let v = run_end(b, k + 1, quoting);
    if v == b.len() {
        return undecided(at_end);
    }
    if b[v..].starts_with(REDACTED.as_bytes()) {
        return Found::No;
    }
    let first = run_end(b, v, is_value_byte);
    if first == v {
        return Found::No;
    }
    if first == b.len() {
        return ends_at(v, first, at_end);
    }
    // `Bearer abc`: a scheme and its credential are one value.
    let scheme = first - v <= SCHEME_MAX_BYTES && b[v..first].iter().all(u8::is_ascii_alphabetic);
    if !(scheme && matches!(b[first], b' ' | b'\t')) {
        return Found::Secret { at: v, end: first };
    }
    let t = run_end(b, first, |c| c == b' ' || c == b'\t');
    if t == b.len() {
        return ends_at(v, first, at_end);
    }
    let second = run_end(b, t, is_value_byte);
    if second == t {
        return Found::Secret { at: v, end: first };
    }
    if second == b.len() {
        return ends_at(v, second, at_end);
    }
    Found::Secret { at: v, end: second }
}

/// `Bearer <token>`.
fn bearer_at(b: &[u8], i: usize, at_end: bool) -> Found {
    if !word_starts(b, i, u8::is_ascii_alphanumeric) {
        return Found::No;
    }
    match word_at(b, i, b"bearer", at_end) {
        Word::No => return Found::No,
        Word::More => return Found::More,
        Word::Yes => {}
    }
    let j = i + b"bearer".len();
    let t = run_end(b, j, |c| c == b' ' || c == b'\t');
    if t == b.len() {
        return undecided(at_end);
    }
    if t == j {
        return Found::No;
    }
    let end = run_end(b, t, is_token_byte);
    if end == t {
        return Found::No;
    }
    if end == b.len() {
        return ends_at(t, end, at_end);
    }
    Found::Secret { at: t, end }
}

/// `sk-` and enough key characters.
fn key_at(b: &[u8], i: usize, at_end: bool) -> Found {
    if !word_starts(b, i, |c| is_key_byte(*c)) {
        return Found::No;
    }
    let prefix = b"sk-";
    let rest = &b[i..];
    let n = rest.len().min(prefix.len());
    if rest[..n] != prefix[..n] {
        return Found::No;
    }
    if n < prefix.len() {
        return undecided(at_end);
    }
    let start = i + prefix.len();
    let end = run_end(b, start, is_key_byte);
    if end == b.len() && !at_end {
        return Found::More;
    }
    if end - start >= KEY_SHAPE_MIN_CHARS {
        Found::Secret { at: i, end }
    } else {
        Found::No
    }
}

/// A match that runs to the end of the text so far: whole if the text has
/// ended, else it may go on.
fn ends_at(at: usize, end: usize, at_end: bool) -> Found {
    if at_end {
        Found::Secret { at, end }
    } else {
        Found::More
    }
}

fn undecided(at_end: bool) -> Found {
    if at_end { Found::No } else { Found::More }
}

enum Word {
    Yes,
    No,
    More,
}

/// Whether `word` (lower case) is at `b[i..]`, ignoring ASCII case.
fn word_at(b: &[u8], i: usize, word: &[u8], at_end: bool) -> Word {
    let rest = &b[i..];
    let n = rest.len().min(word.len());
    if !rest[..n].eq_ignore_ascii_case(&word[..n]) {
        Word::No
    } else if n == word.len() {
        Word::Yes
    } else if at_end {
        Word::No
    } else {
        Word::More
    }
}

/// Whether a word starts at `i`: the byte before is not part of one, or is
/// the letter of a JSON escape (`\n`, `\t`, `\r`).
fn word_starts(b: &[u8], i: usize, part_of_word: impl Fn(&u8) -> bool) -> bool {
    if i == 0 || !part_of_word(&b[i - 1]) {
        return true;
    }
    i >= 2 && b[i - 2] == b'\\' && matches!(b[i - 1], b'n' | b't' | b'r')
}

fn run_end(b: &[u8], from: usize, part: impl Fn(u8) -> bool) -> usize {
    b[from..]
        .iter()
        .position(|&c| !part(c))
        .map_or(b.len(), |n| from + n)
}

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// A byte of a bearer token (RFC 6750's `b64token`).
fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// A byte of an echoed field's value: up to a space, a quote, a backslash
/// or a separator.
fn is_value_byte(c: u8) -> bool {
    !c.is_ascii_whitespace()
        && !matches!(
            c,
            b'"' | b'\'' | b'\\' | b',' | b';' | b'&' | b'}' | b')' | b'<' | b'>'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{StopReason, ToolCall, Usage};

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
    fn a_bearer_credential_is_removed() {
        let r = Redactor::new();
        assert_eq!(
            r.scrub("got Bearer abc.DEF-123_x~+/= from you").as_str(),
            "got Bearer [redacted] from you"
        );
        assert_eq!(r.scrub("bearer\tzz").as_str(), "bearer\t[redacted]");
        assert_eq!(r.scrub("the bearers came").as_str(), "the bearers came");
        assert_eq!(r.scrub("Bearer: x").as_str(), "Bearer: x");
    }

    #[test]
    fn echoed_credential_fields_lose_their_values() {
        let r = Redactor::new();
        for (echo, clean) in [
            ("x-api-key: abc123", "x-api-key: [redacted]"),
            ("X-Api-Key:abc123, then", "X-Api-Key:[redacted], then"),
            (
                r#"{"x-api-key":"abc123","n":1}"#,
                r#"{"x-api-key":"[redacted]","n":1}"#,
            ),
            (
                "authorization: Basic dXNlcjpwYXNz\nnext",
                "authorization: [redacted]\nnext",
            ),
            (
                r#"{"Authorization": "Bearer tok.en"}"#,
                r#"{"Authorization": "[redacted]"}"#,
            ),
            (
                "proxy-authorization=xyz&a=b",
                "proxy-authorization=[redacted]&a=b",
            ),
            ("?api_key=xyz", "?api_key=[redacted]"),
            (
                r#"{"note":"x-api-key: \"abc\""}"#,
                r#"{"note":"x-api-key: \"[redacted]\""}"#,
            ),
        ] {
            assert_eq!(r.scrub(echo).as_str(), clean, "{echo}");
        }
        for prose in [
            "the authorization header is missing",
            "send an x-api-key header",
            "authorization:",
            "xauthorization: abc",
        ] {
            assert_eq!(r.scrub(prose).as_str(), prose);
        }
    }

    #[test]
    fn anything_shaped_like_a_provider_key_is_removed() {
        let r = Redactor::new();
        assert_eq!(
            r.scrub("proxy key sk-ant-api03-AbCdEf0123456789_xyz-QQ ok")
                .as_str(),
            "proxy key [redacted] ok"
        );
        assert_eq!(
            r.scrub(r#"{"k":"sk-proj-0123456789abcdefXYZ"}"#).as_str(),
            r#"{"k":"[redacted]"}"#
        );
        assert_eq!(
            r.scrub("line\\nsk-0123456789abcdef0123").as_str(),
            "line\\n[redacted]",
            "after a JSON escape"
        );
        for kept in [
            "sk-short-key",
            "sk-0123456789abcde",
            "task-0123456789abcdef0123",
            "risk-free-0123456789abcdef",
            "SK-0123456789abcdef0123",
        ] {
            assert_eq!(r.scrub(kept).as_str(), kept);
        }
    }

    #[test]
    fn json_stays_json_and_scrubbing_is_idempotent() {
        let text = serde_json::json!({
            "a": format!("Bearer {KEY}"),
            "b": "authorization: Basic abc",
            "c": {"x-api-key": "sk-ant-0123456789abcdefgh"},
            "d": format!("line\n{KEY}\tend"),
            "e": "api-key=v1;x",
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
            usage: Usage::default(),
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
