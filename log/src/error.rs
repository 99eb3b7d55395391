//! The one error type of the log format.

/// Bytes or a line that are not an event of the log format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Stored bytes that cannot be what a journal wrote.
    #[error("corrupt journal data: {0}")]
    Corrupt(String),
    /// A line of an exported log that is not a valid event.
    #[error("invalid JSONL event: {0}")]
    Jsonl(String),
    /// A line of an exported log that decodes to an event but is not byte for
    /// byte that event's line: it carries a field the event has not (data the
    /// hash chain, which covers the canonical body, would not protect), or its
    /// fields are out of order or spaced otherwise.
    #[error("seq {seq}: not in canonical form: {why}")]
    NotCanonical {
        /// The seq the line gives.
        seq: u64,
        /// How it differs from its canonical form.
        why: String,
    },
}
