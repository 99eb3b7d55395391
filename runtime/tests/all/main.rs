//! Integration tests: one binary, one module per area.

mod cli;
mod crash;
mod fixtures;
mod guest;
mod journal;
mod session;
