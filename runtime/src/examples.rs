//! The example guests, built into the binary so that `logbook run counter`
//! works from any directory, and so that every tenant of a server can name
//! them without uploading them.
//!
//! The TypeScript examples are not built into the binary (building them
//! needs node and npm, and `cargo build` must not): they are found by name
//! in the output of `scripts/build-ts-guests.sh`, `target/ts/guests/` of the
//! workspace the binary was built in, or the directory `LOGBOOK_TS_GUESTS`
//! names. A TypeScript example that is not built is not an example.
//!
//! Invariant: an example is known by its name and by the digest of its
//! bytes; both always name the same bytes in one process (a TypeScript
//! example is read once, when first asked for).

use std::path::PathBuf;
use std::sync::OnceLock;

/// Where the build put the guest components (examples and test fixtures).
pub const GUEST_DIR: &str = env!("LOGBOOK_GUEST_DIR");

const COUNTER: &[u8] = include_bytes!(concat!(env!("LOGBOOK_GUEST_DIR"), "/counter.wasm"));
const COUNTER_V2: &[u8] = include_bytes!(concat!(env!("LOGBOOK_GUEST_DIR"), "/counter_v2.wasm"));
const ASSISTANT: &[u8] = include_bytes!(concat!(env!("LOGBOOK_GUEST_DIR"), "/assistant.wasm"));
const DELEGATE: &[u8] = include_bytes!(concat!(env!("LOGBOOK_GUEST_DIR"), "/delegate.wasm"));

/// The names of the built-in examples.
pub const NAMES: &[&str] = &["counter", "counter-v2", "assistant", "delegate"];

/// The TypeScript examples, found in the build output: (name, file).
pub const TS_NAMES: &[(&str, &str)] = &[("counter-ts", "counter_ts.wasm")];

/// Where `scripts/build-ts-guests.sh` puts the TypeScript guests: the
/// directory `LOGBOOK_TS_GUESTS` names, else `target/ts/guests` of the
/// workspace this binary was built in.
pub fn ts_guest_dir() -> PathBuf {
    match std::env::var_os("LOGBOOK_TS_GUESTS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/ts/guests")),
    }
}

/// The component of an example, by name: built in, or a TypeScript one
/// found in the build output.
pub fn get(name: &str) -> Option<&'static [u8]> {
    match name {
        "counter" => Some(COUNTER),
        "counter-v2" => Some(COUNTER_V2),
        "assistant" => Some(ASSISTANT),
        "delegate" => Some(DELEGATE),
        _ => found(name),
    }
}

/// The names of the examples available now: the built-in ones and the
/// TypeScript ones that are built.
pub fn available() -> Vec<&'static str> {
    let found = TS_NAMES.iter().map(|(name, _)| *name);
    NAMES
        .iter()
        .copied()
        .chain(found.filter(|name| self::found(name).is_some()))
        .collect()
}

/// A TypeScript example from the build output, read once per process (so
/// that its name and digest keep naming the same bytes while it runs, even
/// if the script rebuilds it) and kept for the life of the process.
fn found(name: &str) -> Option<&'static [u8]> {
    static FOUND: OnceLock<Vec<OnceLock<Option<&'static [u8]>>>> = OnceLock::new();
    let index = TS_NAMES.iter().position(|(n, _)| *n == name)?;
    let slots = FOUND.get_or_init(|| TS_NAMES.iter().map(|_| OnceLock::new()).collect());
    *slots[index].get_or_init(|| {
        let path = ts_guest_dir().join(TS_NAMES[index].1);
        let bytes = std::fs::read(&path).ok()?;
        Some(&*Box::leak(bytes.into_boxed_slice()))
    })
}

/// The built-in example whose component has this digest (`sha256:…`): its
/// name and bytes. The digests are computed once per process. Not the
/// TypeScript examples: a session made from one stored its bytes, and their
/// digest changes with every build.
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
