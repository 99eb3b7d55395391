//! The one `bindgen!` of the host: Rust types for `wit/agent.wit`.

wasmtime::component::bindgen!({
    world: "agent",
    path: "../wit",
});

pub use self::logbook::agent::types as wit;
