//! Write Logbook agents in Rust.
//!
//! An agent is a pure fold over its log: [`Agent::apply`] sees every event, in
//! order, and says through [`Effects`] what it wants done: call a model, run a
//! tool, ask a human, sleep, say something. The host performs each effect,
//! records the result in the log and hands it back as another event. The guest
//! never performs I/O, so replaying the log always rebuilds the same agent.
//!
//! ```no_run
//! use logbook_guest::prelude::*;
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Echo;
//!
//! impl Agent for Echo {
//!     fn apply(&mut self, event: &Event, fx: &mut Effects) {
//!         if let Some(text) = event.input_text() {
//!             fx.output(format!("you said: {text}"));
//!         }
//!     }
//! }
//!
//! logbook_guest::export_agent!(Echo);
//! ```
//!
//! Effects are kept by the SDK until the log says they are done (an `output`,
//! `completed`, final `failed`, `cancelled` or `approval-decided` event with the
//! same key), so an agent only says what it wants once. Their keys derive from
//! the seq of the event being applied, which makes them stable under replay.
//! The agent's state and its wanted effects are its snapshot, through serde.
#![deny(missing_docs)]

mod chat;
mod effects;
mod events;

pub use chat::{ChatAgent, ChatConfig};
pub use effects::{Effect, Effects};
pub use events::{EventExt, text_of, tool_calls};

/// The generated bindings of `wit/agent.wit`. Not a stable API: use the
/// re-exports at the crate root.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        world: "agent",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "logbook_guest::wit",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub use wit::logbook::agent::types::{
    ApprovalDecided, ApprovalRequested, BlobRef, Completed, ContentBlock, Created, EffectBody,
    EmbeddedResource, ErrorKind, Event, EventBody, Failed, Finished, GuestRef, Input, LogPos,
    LogSender, Media, Message, ModelDigest, ModelRequest, ModelResponse, Outcome, Output, PartData,
    Question, Reasoning, Requested, RequestedEffect, ResourceLink, Role, SendRequest, Sender, Sent,
    StopReason, ToolCall, ToolOutput, ToolPart, ToolResult, ToolSpec, Usage,
};

/// What an agent author needs in scope.
pub mod prelude {
    pub use crate::{
        Agent, ContentBlock, Created, EffectBody, Effects, Event, EventBody, EventExt, Message,
        ModelRequest, Outcome, Role, ToolCall, ToolSpec,
    };
    pub use serde::{Deserialize, Serialize};
}

/// Agent logic: a pure fold over the log.
///
/// State is `Self`; it must serialize so that the host can snapshot it.
pub trait Agent: Default + serde::Serialize + serde::de::DeserializeOwned + 'static {
    /// Start a new log from its `created` event (seq 0). `config` is the
    /// session's configuration, parsed from its JSON text. Also called, over
    /// the state folded so far, with a fork's own `created` (its `parent` is
    /// set): the branch's config and tools, e.g. another model to try.
    fn init(&mut self, created: &Created, fx: &mut Effects) {
        let _ = (created, fx);
    }

    /// Fold one event. Everything the agent wants done, it says through `fx`.
    fn apply(&mut self, event: &Event, fx: &mut Effects);

    /// The body of an effect wanted with [`Effects::want_built`], built only
    /// when the host asks for it: the host asks once, for a key its log has
    /// not recorded, so replaying a log never builds a past body. The body
    /// must be what the agent meant when it wanted the key (pin what it
    /// depends on, as [`ChatAgent`] pins the conversation's length).
    fn build(&self, key: &str) -> Option<EffectBody> {
        let _ = key;
        None
    }

    /// The body of `key` as [`build`](Agent::build) would give it, but when
    /// it is a model request whose context is that of model call `base`
    /// followed by more messages: only those messages, with
    /// `extends: Some(base)`. The host holds `base`'s whole request and puts
    /// the context together, so a turn never copies the conversation across
    /// the boundary. `None` (the default) when the agent can't say it so:
    /// the host then gets the whole body from `build`.
    fn build_after(&self, key: &str, base: &str) -> Option<EffectBody> {
        let _ = (key, base);
        None
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::effects::Runtime;
}

/// Export an [`Agent`] as the guest's implementation of the `agent` world.
#[macro_export]
macro_rules! export_agent {
    ($agent:ty) => {
        ::std::thread_local! {
            static __LOGBOOK_RUNTIME: ::std::cell::RefCell<$crate::__private::Runtime<$agent>> =
                ::std::cell::RefCell::new(::std::default::Default::default());
        }

        struct __LogbookGuest;

        impl $crate::wit::Guest for __LogbookGuest {
            fn init(created: $crate::Created) {
                __LOGBOOK_RUNTIME.with_borrow_mut(|rt| rt.init(created))
            }
            fn restore(snapshot: ::std::vec::Vec<u8>) -> bool {
                __LOGBOOK_RUNTIME.with_borrow_mut(|rt| rt.restore(&snapshot))
            }
            fn apply(events: ::std::vec::Vec<$crate::Event>) {
                __LOGBOOK_RUNTIME.with_borrow_mut(|rt| rt.apply(events))
            }
            fn wanted_keys() -> ::std::vec::Vec<::std::string::String> {
                __LOGBOOK_RUNTIME.with_borrow(|rt| rt.wanted_keys())
            }
            fn effect(
                key: ::std::string::String,
                base: ::std::option::Option<::std::string::String>,
            ) -> ::std::option::Option<$crate::EffectBody> {
                __LOGBOOK_RUNTIME.with_borrow(|rt| rt.effect(&key, base.as_deref()))
            }
            fn snapshot() -> ::std::option::Option<::std::vec::Vec<u8>> {
                __LOGBOOK_RUNTIME.with_borrow(|rt| rt.snapshot())
            }
        }

        $crate::wit::export!(__LogbookGuest with_types_in $crate::wit);
    };
}
