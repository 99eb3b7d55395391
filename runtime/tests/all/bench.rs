//! `logbook bench` on PostgreSQL: every line names its journal, the log
//! operations (wake, fork, export, read) run there, the bench that makes no
//! sense there (memory) says why, `failover` kills a real worker and
//! reports its figures, and every database a bench made is gone after.
//! Figures are printed, never asserted.

use serde_json::Value;
use tokio_postgres::NoTls;

use crate::fixtures::*;

/// The JSON lines of a bench run.
fn lines(ran: &Ran) -> Vec<Value> {
    ran.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn line<'a>(lines: &'a [Value], bench: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["bench"] == bench)
        .unwrap_or_else(|| panic!("no {bench} line in {lines:?}"))
}

#[test]
fn on_redb_failover_says_it_needs_postgres() {
    let dir = data_dir();
    let ran = run_ok(
        logbook(dir.path())
            .env_remove("LOGBOOK_JOURNAL")
            .args(["bench", "--quick", "--json", "--only", "failover"]),
    );
    let lines = lines(&ran);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["journal"], "redb");
    let why = lines[0]["skipped"].as_str().unwrap_or_default();
    assert!(why.contains("--journal postgres://"), "{why}");
}

#[tokio::test]
async fn on_postgres_benches_run_on_databases_they_drop() {
    if std::env::var("LOGBOOK_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        eprintln!("skipped: LOGBOOK_SKIP_POSTGRES=1 (this test needs PostgreSQL)");
        return;
    }
    let admin = std::env::var("LOGBOOK_TEST_POSTGRES").expect(
        "LOGBOOK_TEST_POSTGRES names a role that may create databases (scripts/test.sh sets it), \
         or LOGBOOK_SKIP_POSTGRES=1",
    );
    let dir = data_dir();
    // Seven benches and a failover of real workers: about a minute on a
    // busy machine, so the deadlock guard is wider than the usual one.
    let ran = run_ok_within(
        logbook(dir.path())
            .env("LOGBOOK_LOG", "logbook::bench=info")
            .args(["bench", "--quick", "--json", "--journal", &admin])
            .args(["--only", "wake,fork,export,read,memory,step,failover"]),
        GUARD * 5,
    );
    let lines = lines(&ran);
    assert!(
        lines.iter().all(|l| l["journal"] == "postgres"),
        "{lines:?}"
    );
    assert!(line(&lines, "memory")["skipped"].is_string(), "{lines:?}");
    for bench in ["wake", "fork", "step"] {
        assert!(
            line(&lines, bench)["p50_us"].as_u64() > Some(0),
            "{lines:?}"
        );
    }
    assert_eq!(line(&lines, "wake")["events"], 1000, "{lines:?}");
    for bench in ["export", "read"] {
        let l = line(&lines, bench);
        assert_eq!(l["events"], 10_000, "{l}");
        assert!(l["events_per_s"].as_u64() > Some(0), "{l}");
    }
    let failover = line(&lines, "failover");
    assert_eq!(failover["rounds"], 1, "{failover}");
    assert_eq!(failover["lease_ttl_ms"], 1000, "{failover}");
    assert!(failover["p50_us"].as_u64() > Some(0), "{failover}");

    // One database for each bench that ran (memory did not); each dropped.
    let named = |what: &str| -> Vec<String> {
        ran.stderr
            .lines()
            .filter(|l| l.contains(what))
            .filter_map(|l| l.split("bench database ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    let created = named(" created");
    assert_eq!(created.len(), 6, "{}", ran.stderr);
    assert_eq!(named(" dropped"), created, "{}", ran.stderr);
    let (client, connection) = tokio_postgres::connect(&admin, NoTls)
        .await
        .expect("connect to LOGBOOK_TEST_POSTGRES");
    tokio::spawn(connection);
    for name in &created {
        let left = client
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[name])
            .await
            .expect("query pg_database");
        assert!(left.is_empty(), "{name} is still there");
    }
}
