//! Logbook: a durable-object style actor runtime on WebAssembly for AI agents.
//!
//! **The log is the agent.** A session is an append-only, hash-chained event
//! log; everything else (the guest instance, the model's context, a session's
//! status) is a projection of it that can be dropped and rebuilt by replay.
//!
//! ```text
//!  client (CLI, HTTP)                          guest component (.wasm, pure)
//!        │ input / approval                        ▲ apply(events)  │ effects()
//!        ▼                                         │                ▼
//!  server ──► session (one actor per active log) ──► guest (wasmtime sandbox)
//!                 │ stage → fold → reconcile → commit (one fsync) → perform
//!                 ▼
//!             journal (redb: events, names, guests, open effects)
//!                 │
//!             effects (models, tools, approvals, timers)
//! ```
//!
//! - [`journal`]: the only source of truth. Appends carry the expected next
//!   seq; one writer thread group-commits them; every event is chained by
//!   SHA-256 to the one before.
//! - [`guest`]: components compiled once (cached on disk), checked to import
//!   only a deterministic WASI subset, run under fuel and memory limits.
//! - [`session`]: the [`Host`] activates a session's actor when something
//!   needs it. The actor folds each new event into the guest, records the
//!   effects the guest wants (write-ahead), commits, and only then performs
//!   them and answers callers. After a crash, replay rebuilds the guest and
//!   the open effects resume.
//! - [`effects`]: model providers and tools; they never touch the journal.
//! - [`server`]: the HTTP API; [`cli`] is the `logbook` command.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use logbook::{ContentBlock, Host, HostOptions, Sender};
//!
//! let host = Host::open(".logbook".as_ref(), logbook::Config::default(), HostOptions::default())?;
//! let counter = logbook::examples::get("counter").expect("built in");
//! let guest = host.add_guest("default", "counter", counter).await?;
//! let id = host.create_session("default", Some("tally"), guest, serde_json::json!({})).await?;
//! let session = host.session(id).await?;
//! session.input(Sender::Principal("me".into()), vec![ContentBlock::text("inc")]).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub use config::Config;
pub use effects::{EchoModel, ModelProvider, Tool, ToolRegistry};
pub use guest::{GuestEngine, GuestError};
pub use journal::{
    ContentBlock, Event, EventBody, Journal, JournalError, LogId, RedbJournal, Sender, StoredEvent,
};
pub use session::{Activity, Host, HostOptions, Session, SessionError};

pub mod bench;
#[doc(hidden)]
pub mod cli;
pub use logbook_config as config;
pub mod effects;
pub mod examples;
pub mod guest;
pub mod journal;
pub mod metrics;
pub mod server;
pub mod session;
pub mod telemetry;
