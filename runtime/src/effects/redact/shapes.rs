//! Credentials known by their shape rather than their value: a `Bearer`
//! token, an echoed credential field, a provider key.
//!
//! Each rule reads forward from where it starts and looks back at most
//! [`LOOKBEHIND`] bytes. Where the text ends before a rule can tell (a
//! word cut short, a value that may go on), it answers [`Found::More`]
//! unless the text has ended: that is what lets a stream be scrubbed piece
//! by piece with the same result as the whole text.

use super::{KEY_SHAPE_MIN_CHARS, REDACTED};

/// Field names (lower case) whose echoed value is a credential.
const CREDENTIAL_FIELDS: &[&[u8]] = &[b"authorization", b"x-api-key", b"api-key", b"api_key"];

/// The longest word taken as an auth scheme (`Bearer`, `Basic`, `Token`) and
/// redacted together with the credential that follows it.
const SCHEME_MAX_BYTES: usize = 16;

/// How many bytes before a position the rules look at (word boundaries and
/// JSON escapes such as `\n`).
pub(super) const LOOKBEHIND: usize = 2;

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
pub(super) fn hide_shapes(text: &str, from: usize, at_end: bool, out: &mut String) -> usize {
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
    let quoted = |run: &[u8]| run.iter().any(|&c| c == b'"' || c == b'\'');
    // `"name": 12`, `"name": null`, `"name": {…}`: JSON whose value is no
    // string; replacing it would break the JSON.
    if (quoted(&b[j..k]) && !quoted(&b[k + 1..v])) || matches!(b[v], b'{' | b'[') {
        return Found::No;
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

    fn scrub(text: &str) -> String {
        let mut out = String::new();
        hide_shapes(text, 0, true, &mut out);
        out
    }

    #[test]
    fn a_bearer_credential_is_removed() {
        assert_eq!(
            scrub("got Bearer abc.DEF-123_x~+/= from you"),
            "got Bearer [redacted] from you"
        );
        assert_eq!(scrub("bearer\tzz"), "bearer\t[redacted]");
        assert_eq!(scrub("the bearers came"), "the bearers came");
        assert_eq!(scrub("Bearer: x"), "Bearer: x");
    }

    #[test]
    fn echoed_credential_fields_lose_their_values() {
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
            assert_eq!(scrub(echo), clean, "{echo}");
        }
        for prose in [
            "the authorization header is missing",
            "send an x-api-key header",
            "authorization:",
            "xauthorization: abc",
        ] {
            assert_eq!(scrub(prose), prose);
        }
    }

    #[test]
    fn anything_shaped_like_a_provider_key_is_removed() {
        assert_eq!(
            scrub("proxy key sk-ant-api03-AbCdEf0123456789_xyz-QQ ok"),
            "proxy key [redacted] ok"
        );
        assert_eq!(
            scrub(r#"{"k":"sk-proj-0123456789abcdefXYZ"}"#),
            r#"{"k":"[redacted]"}"#
        );
        assert_eq!(
            scrub("line\\nsk-0123456789abcdef0123"),
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
            assert_eq!(scrub(kept), kept);
        }
    }
}
