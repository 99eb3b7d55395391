//! The example guests, built into the binary so that `logbook run counter`
//! works from any directory.

/// Where the build put the guest components (examples and test fixtures).
pub const GUEST_DIR: &str = env!("LOGBOOK_GUEST_DIR");

const COUNTER: &[u8] = include_bytes!(concat!(env!("LOGBOOK_GUEST_DIR"), "/counter.wasm"));
const COUNTER_V2: &[u8] = include_bytes!(concat!(env!("LOGBOOK_GUEST_DIR"), "/counter_v2.wasm"));
const ASSISTANT: &[u8] = include_bytes!(concat!(env!("LOGBOOK_GUEST_DIR"), "/assistant.wasm"));

/// The names of the built-in examples.
pub const NAMES: &[&str] = &["counter", "counter-v2", "assistant"];

/// The component of a built-in example, by name.
pub fn get(name: &str) -> Option<&'static [u8]> {
    match name {
        "counter" => Some(COUNTER),
        "counter-v2" => Some(COUNTER_V2),
        "assistant" => Some(ASSISTANT),
        _ => None,
    }
}
