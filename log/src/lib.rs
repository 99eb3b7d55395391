//! Logbook's log format: what an event is, and how it is written down.
//!
//! A log is a sequence of [`StoredEvent`]s, seqs dense from 0, seq 0 always
//! `created`. This crate holds everything about that format that needs no
//! storage, no runtime and no guest:
//!
//! - [`event`]: the event types and their canonical JSON body (the bytes the
//!   chain hashes and a journal stores);
//! - [`decode_body`]: a fast decoder of stored canonical bodies;
//! - the hash chain ([`event_hash`], [`ChainCheck`], [`verify_events`]);
//! - JSONL ([`to_jsonl`], [`from_jsonl`]): one event a line with its hash, the
//!   export format, which refuses a line that is not byte for byte canonical.
//!
//! Every function here is pure and total: any input bytes give a value or a
//! [`FormatError`], never a panic. The fuzz targets in `fuzz/` hold it to that.
//! The `logbook` runtime re-exports all of it under `logbook::journal`.

pub mod chain;
mod decode;
mod error;
pub mod event;
mod jsonl;

pub use chain::{
    ChainCheck, ChainPos, GENESIS_HASH, Kind, Verified, chain_events, digest_of, event_hash,
    verify_events,
};
pub use decode::decode_body;
pub use error::FormatError;
pub use event::*;
pub use jsonl::{Utf8Lines, event_from_json, from_jsonl, to_jsonl};
