//! Effects: what a guest wants done, and the host's means of doing it.
//!
//! The guest only *says* what it wants ([`Effect`]); the session records it and
//! calls on a [`ModelProvider`] or a [`Tool`] here to perform it. Nothing here
//! writes to the journal: results go back to the session, which logs them.

mod fs;
mod http_fetch;
mod mcp;
mod model;
mod providers;
mod redact;
mod setup;
mod tool;

pub use fs::{FsRead, FsWrite};
pub use http_fetch::HttpFetch;
pub use mcp::McpTool;
pub use model::{
    DeltaKind, DeltaSink, EchoModel, Live, Message, ModelDelta, ModelError, ModelFuture,
    ModelProvider, ModelRegistry, ModelRequest, RetryPolicy, Role,
};
pub use providers::{Anthropic, OpenAi, install_crypto_provider};
pub use redact::{
    KEY_SHAPE_MIN_CHARS, MIN_SECRET_BYTES, ProviderText, REDACTED, Redactor, StreamRedactor,
};
pub use setup::SetupError;
pub use tool::{
    ProgressSink, Tool, ToolAnswer, ToolContext, ToolError, ToolProgress, ToolRegistry,
};

use crate::journal::{ContentBlock, Question, ToolCall};

/// An effect the guest wants, under the key it chose.
#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    /// Unique within the log for all time.
    pub key: String,
    /// What to do.
    pub body: EffectBody,
}

/// What a guest can ask the host to do.
#[derive(Clone, Debug, PartialEq)]
pub enum EffectBody {
    /// Call a model (async).
    Model(ModelRequest),
    /// Run a tool (async).
    Tool(ToolCall),
    /// Ask a human (async, ends with `approval-decided`).
    Ask(Question),
    /// Wait until a unix time in ms (async).
    Sleep(u64),
    /// Say something to the participants (immediate).
    Output(Vec<ContentBlock>),
    /// Message another session (immediate).
    Send {
        /// The target session, by id or name.
        target: String,
        /// What to say.
        content: Vec<ContentBlock>,
    },
    /// Continue in a new log from a summary (immediate).
    Compact(String),
    /// End the session (immediate).
    Finish(String),
}
