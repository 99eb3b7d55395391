//! The example guests, built into the binary so that `logbook run counter`
//! works from any directory, and so that every tenant of a server can name
//! them without uploading them.
//!
//! Invariant: a built-in example is known by its name and by the digest of
//! its bytes; both always name the same bytes in one binary.

use std::sync::OnceLock;

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

/// The built-in example whose component has this digest (`sha256:…`): its
/// name and bytes. The digests are computed once per process.
pub fn by_digest(digest: &str) -> Option<(&'static str, &'static [u8])> {
    static DIGESTS: OnceLock<Vec<(String, &'static str, &'static [u8])>> = OnceLock::new();
    DIGESTS
        .get_or_init(|| {
            NAMES
                .iter()
                .filter_map(|name| {
                    let bytes = get(name)?;
                    Some((crate::journal::digest_of(bytes), *name, bytes))
                })
                .collect()
        })
        .iter()
        .find(|(d, _, _)| d == digest)
        .map(|(_, name, bytes)| (*name, *bytes))
}
