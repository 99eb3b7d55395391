//! Builds the example guests (and the test fixtures) to wasm32-wasip2, so the
//! `logbook` binary carries `counter` and `assistant` and works from any
//! directory. The guests build in their own target directory: a nested cargo
//! on the outer one's would wait on its lock forever.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest crates: (package, embedded in the binary).
const GUESTS: &[(&str, bool)] = &[
    ("counter", true),
    ("counter-v2", true),
    ("assistant", true),
    ("delegate", true),
    ("fixture-looper", false),
    ("fixture-hog", false),
    ("fixture-fs", false),
    ("fixture-http", false),
    ("fixture-panic", false),
    ("fixture-hoard", false),
    ("fixture-spinner", false),
    ("fixture-pingpong", false),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("runtime/ is inside the workspace")
        .to_path_buf();
    for dir in [
        "Cargo.toml",
        "wit",
        "guest-sdk",
        "examples",
        "runtime/tests/guests",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "guest"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // What the outer build sets for the host must not leak into the guests'.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the guests");
    assert!(
        status.success(),
        "building the guests failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );
    let out = target_dir.join("wasm32-wasip2").join("guest");
    for (package, _) in GUESTS {
        let file = out.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(Path::new(&file).exists(), "missing {}", file.display());
    }
    println!("cargo:rustc-env=LOGBOOK_GUEST_DIR={}", out.display());
}
