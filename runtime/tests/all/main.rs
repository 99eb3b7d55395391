//! Integration tests: one binary, one module per area.

mod cli;
mod crash;
mod fixtures;
mod guest;
mod journal;
mod logops;
mod loopback;
mod mcp;
mod providers;
mod replay;
mod server;
mod session;
mod tools;
