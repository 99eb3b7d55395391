//! Logbook: a durable-object style actor runtime on WebAssembly for AI agents.
#![deny(missing_docs)]

pub mod bench;
#[doc(hidden)]
pub mod cli;
pub mod config;
pub mod effects;
pub mod examples;
pub mod guest;
pub mod journal;
pub mod metrics;
pub mod server;
pub mod session;
