//! A full disk: `logbook serve` on a small tmpfs that fills up, then gets
//! its space back. Writes answer 503 `journal_unavailable` while the disk is
//! full, `/readyz` says why, and writes resume once space returns, with no
//! restart; no acknowledged input is lost and no refused one is written.
//!
//! A real full disk needs a filesystem of our own: the test mounts a tmpfs,
//! which takes root (CI runs as root). Elsewhere it says so and passes
//! without running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tempfile::TempDir;

use crate::fixtures::*;
use crate::server::Api;
use crate::workers::{Worker, input_text, output_texts};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// A tmpfs of `megabytes`; `None` when this process may not mount one.
    fn mount(megabytes: u32) -> Option<Tmpfs> {
        let dir = TempDir::new().expect("a mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the filesystem is full.
fn fill(path: &Path) -> PathBuf {
    let ballast = path.join("ballast");
    let mut file = std::fs::File::create(&ballast).expect("create the ballast");
    let chunk = vec![0u8; 1 << 20];
    while file.write_all(&chunk).is_ok() {}
    ballast
}

async fn ready(api: &Api) -> (StatusCode, serde_json::Value) {
    api.get("/readyz").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_503_and_they_resume_when_space_returns() {
    let Some(disk) = Tmpfs::mount(48) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let data = disk.path().join("data");
    let server = Worker::serve(&data, &[], &[]);
    let api = server.api();
    api.add_guest("counter").await;
    api.session("counter", "c").await;
    let path = "/v1/sessions/c/input";
    let mut acked = Vec::new();
    let mut incs = 0;
    for _ in 0..3 {
        let (status, body) = api.post(path, json!({ "text": "inc" })).await;
        assert!(status.is_success(), "{status} {body}");
        acked.push(body["seq"].as_u64().expect("a seq"));
        incs += 1;
    }
    assert_eq!(ready(&api).await.0, StatusCode::OK);

    // Fill the disk, then write until the journal cannot.
    let ballast = fill(disk.path());
    let big = "x".repeat(200_000);
    let mut refused = None;
    for _ in 0..100 {
        let (status, body) = api.post(path, json!({ "text": big })).await;
        if status.is_success() {
            acked.push(body["seq"].as_u64().expect("a seq"));
            continue;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "journal_unavailable", "{body}");
        refused = Some(body);
        break;
    }
    let refused = refused.expect("a write refused on a full disk");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("No space left"), "{refused}");
    // Readiness says why; liveness stays up.
    let (status, body) = ready(&api).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("No space left")),
        "{body}"
    );
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    // Still full: still refused, never a 500.
    let (status, body) = api.post(path, json!({ "text": big })).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // Space returns: writes resume, with no restart.
    std::fs::remove_file(ballast).expect("free the disk");
    let deadline = Instant::now() + GUARD;
    loop {
        match api
            .try_call(
                Method::POST,
                path,
                Some(json!({ "text": "inc" }).to_string().into_bytes()),
            )
            .await
            .expect("the server is still up")
        {
            (status, body) if status.is_success() => {
                acked.push(body["seq"].as_u64().expect("a seq"));
                incs += 1;
                break;
            }
            (status, body) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                assert!(Instant::now() < deadline, "writes never resumed: {body}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(ready(&api).await.0, StatusCode::OK);

    // Every acknowledged input is at its seq; nothing refused was written.
    let log = api.all_events("c").await;
    assert!(logbook::journal::verify_events(&log).is_ok());
    for seq in &acked {
        assert!(
            log.get(*seq as usize).and_then(input_text).is_some(),
            "the acknowledged input at seq {seq}"
        );
    }
    let inputs = log.iter().filter(|e| input_text(e).is_some()).count();
    assert_eq!(inputs, acked.len(), "only acknowledged inputs are logged");
    let answer = api.send_and_wait("c", "get").await;
    assert_eq!(
        output_texts(&answer).last().map(String::as_str),
        Some(format!("count = {incs}").as_str()),
        "{answer}"
    );
    drop(server);
}
