//! Readable access to events and content.

use std::borrow::Cow;

use crate::{ContentBlock, Event, EventBody, Failed, Input, LogSender, Outcome, Sender, ToolCall};

/// Shortcuts for the questions agents ask of events.
pub trait EventExt {
    /// The text of an `input` event (its text blocks joined by newlines);
    /// borrowed when the input is a single text block, as it usually is.
    fn input_text(&self) -> Option<Cow<'_, str>>;
    /// The key of an effect this event is about.
    fn key(&self) -> Option<&str>;
    /// The outcome of a `completed` event.
    fn outcome(&self) -> Option<&Outcome>;
    /// The session that sent an `input` event, when another session did
    /// (with its `send` effect) rather than a participant.
    fn sent_by(&self) -> Option<&LogSender>;
    /// The failure a `failed` event records: its kind, message, and whether
    /// it may be tried again.
    fn failure(&self) -> Option<&Failed>;
}

impl EventExt for Event {
    fn input_text(&self) -> Option<Cow<'_, str>> {
        match &self.body {
            EventBody::Input(input) => Some(match input.content.as_slice() {
                [ContentBlock::Text(text)] => Cow::Borrowed(text.as_str()),
                content => Cow::Owned(text_of(content)),
            }),
            _ => None,
        }
    }

    fn key(&self) -> Option<&str> {
        match &self.body {
            EventBody::Requested(r) => Some(&r.key),
            EventBody::Completed(c) => Some(&c.key),
            EventBody::Failed(f) => Some(&f.key),
            EventBody::Cancelled(key) => Some(key),
            EventBody::ApprovalRequested(a) => Some(&a.key),
            EventBody::ApprovalDecided(a) => Some(&a.key),
            EventBody::Output(o) => Some(&o.key),
            EventBody::Sent(s) => Some(&s.key),
            EventBody::Finished(f) => Some(&f.key),
            _ => None,
        }
    }

    fn outcome(&self) -> Option<&Outcome> {
        match &self.body {
            EventBody::Completed(c) => Some(&c.outcome),
            _ => None,
        }
    }

    fn sent_by(&self) -> Option<&LogSender> {
        match &self.body {
            EventBody::Input(Input {
                from: Sender::Log(sender),
                ..
            }) => Some(sender),
            _ => None,
        }
    }

    fn failure(&self) -> Option<&Failed> {
        match &self.body {
            EventBody::Failed(f) => Some(f),
            _ => None,
        }
    }
}

/// The text blocks of `content`, joined by newlines.
pub fn text_of(content: &[ContentBlock]) -> String {
    let texts: Vec<&str> = content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    texts.join("\n")
}

/// The tool calls among `content`.
pub fn tool_calls(content: &[ContentBlock]) -> impl Iterator<Item = &ToolCall> {
    content.iter().filter_map(|b| match b {
        ContentBlock::ToolCall(call) => Some(call),
        _ => None,
    })
}

impl ContentBlock {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text(text.into())
    }
}
