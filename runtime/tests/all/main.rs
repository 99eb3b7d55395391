//! Integration tests: one binary, one module per area.

mod activation;
mod browser;
mod cli;
mod crash;
mod fixtures;
mod guest;
mod integrity;
mod journal;
mod logops;
mod loopback;
mod mcp;
mod origin;
mod providers;
mod secrets;
mod server;
mod session;
mod tools;
