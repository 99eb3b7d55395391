//! Integration tests: one binary, one module per area.

mod absorb;
mod activation;
mod bench;
mod browser;
mod cli;
mod crash;
mod faults;
mod fixtures;
mod guest;
mod hugeinput;
mod integrity;
mod journal;
mod journal_contract;
mod logops;
mod loopback;
mod mcp;
mod origin;
mod postgres;
mod providers;
mod replay;
mod secrets;
mod server;
mod session;
mod tools;
mod workers;
mod workspaces;
