//! Logbook: a durable-object style actor runtime on WebAssembly for AI agents.
#![deny(missing_docs)]

pub mod journal;
pub mod config;
pub mod effects;
pub mod guest;
pub mod session;
pub mod bench;
#[doc(hidden)]
pub mod cli;
pub mod examples;
