//! Benchmarks of log operations (issue 5): `fork`, `export`, `read`,
//! `wake-snapshot`.
//!
//! Big logs are built with direct journal commits of real events on a host
//! without fsync (setup, not what is measured); the measured host is durable.
//! Both are on the bench's [`Store`]: a redb file, or a PostgreSQL database.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{BenchResult, Store, from, new_session, percentile, text};
use crate::config::Config;
use crate::journal::{ChainPos, Commit, ContentBlock, EventBody, LogId, Sender};
use crate::session::ForkOptions;

/// Events per direct commit while building a log.
const BUILD_BATCH: u64 = 4096;

/// Events per page when a benchmark reads a whole log (as export does).
const READ_PAGE: usize = 4096;

/// A counter log of `events` events (a created, then inputs), in `dir`.
async fn big_log(store: &Store, cache: &Path, events: u64) -> BenchResult<LogId> {
    let host = store.host(cache, true).await?;
    let id = new_session(&host, "counter").await?;
    let mut next = 1;
    while next < events {
        let n = BUILD_BATCH.min(events - next);
        let batch = (0..n)
            .map(|i| {
                (
                    1_700_000_000_000 + next + i,
                    EventBody::Input {
                        from: Sender::Principal("bench".into()),
                        content: vec![ContentBlock::text("get")],
                    },
                )
            })
            .collect();
        host.journal()
            .commit(Commit::append(id, next, batch))
            .await?;
        next += n;
    }
    host.close().await;
    Ok(id)
}

/// Fork a log of `events` events at its head, `rounds` times, on a durable host.
pub(super) async fn fork(
    config: &Config,
    cache: &Path,
    events: u64,
    rounds: usize,
) -> BenchResult<serde_json::Value> {
    let store = Store::new(config).await?;
    let id = big_log(&store, cache, events).await?;
    let host = store.host(cache, false).await?;
    // On a worker thread, as a server's request handler would run.
    let (mut samples, mut commits) = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(rounds);
        let mut commits = Vec::with_capacity(rounds);
        let head = host.journal().info(id).await?.map_or(0, |i| i.next_seq);
        for next in head..head + rounds as u64 {
            let start = Instant::now();
            host.fork("bench", &id.to_string(), ForkOptions::default())
                .await?;
            samples.push(start.elapsed());
            // For reference: one durable append of one event, on the same file.
            // A fork is one such commit plus O(1) reads; the fsync dominates both.
            let start = Instant::now();
            let body = EventBody::Input {
                from: Sender::Principal("bench".into()),
                content: vec![ContentBlock::text("get")],
            };
            host.journal()
                .commit(Commit::append(id, next, vec![(1_700_000_000_000, body)]))
                .await?;
            commits.push(start.elapsed());
        }
        Ok::<_, anyhow::Error>((samples, commits))
    })
    .await
    .map_err(|e| anyhow::anyhow!("the fork bench failed: {e}"))??;
    Ok(json!({
        "bench": "fork",
        "events": events,
        "p50_us": percentile(&mut samples, 0.5),
        "p99_us": percentile(&mut samples, 0.99),
        "commit_p50_us": percentile(&mut commits, 0.5),
    }))
}

/// Export a log of `events` events to nowhere: events per second.
pub(super) async fn export(
    config: &Config,
    cache: &Path,
    events: u64,
) -> BenchResult<serde_json::Value> {
    let store = Store::new(config).await?;
    let id = big_log(&store, cache, events).await?;
    let host = store.host(cache, false).await?;
    let start = Instant::now();
    let written = host.export(id, &mut std::io::sink()).await?;
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "bench": "export",
        "events": written,
        "events_per_s": (written as f64 / secs.max(1e-9)).round() as u64,
    }))
}

/// Read a log of `events` events whole, a page at a time, with `read` and
/// with `read_checked`, alternately: events per second of each, the best of
/// `rounds` (the machine may be busy with other work), and what checking costs.
pub(super) async fn read(
    config: &Config,
    cache: &Path,
    events: u64,
    rounds: usize,
) -> BenchResult<serde_json::Value> {
    let store = Store::new(config).await?;
    let id = big_log(&store, cache, events).await?;
    let host = store.host(cache, false).await?;
    let journal = host.journal();
    let time = |start: Instant, read: u64| -> BenchResult<Duration> {
        if read != events {
            return Err(anyhow::anyhow!("read {read} events of {events}"));
        }
        Ok(start.elapsed())
    };
    let plain = async || -> BenchResult<u64> {
        let mut from = 0;
        while let Some(last) = journal.read(id, from, READ_PAGE).await?.last() {
            from = last.event.seq + 1;
        }
        Ok(from)
    };
    let checked = async || -> BenchResult<u64> {
        let mut pos = ChainPos::START;
        while !journal
            .read_checked(id, &mut pos, READ_PAGE)
            .await?
            .is_empty()
        {}
        Ok(pos.next_seq)
    };
    let (mut best_plain, mut best_checked) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        best_plain = best_plain.min(time(start, plain().await?)?);
        let start = Instant::now();
        best_checked = best_checked.min(time(start, checked().await?)?);
    }
    let per_s = |d: Duration| (events as f64 / d.as_secs_f64().max(1e-9)).round() as u64;
    let extra = best_checked.as_secs_f64() / best_plain.as_secs_f64().max(1e-9) - 1.0;
    Ok(json!({
        "bench": "read",
        "events": events,
        "events_per_s": per_s(best_plain),
        "checked_events_per_s": per_s(best_checked),
        "checked_extra_pct": (extra * 100.0).round() as i64,
    }))
}

/// A dormant counter session of `events` events with a snapshot at its end
/// wakes: restore, replay the tail, and answer one input.
pub(super) async fn wake_snapshot(
    config: &Config,
    cache: &Path,
    events: u64,
    rounds: usize,
) -> BenchResult<serde_json::Value> {
    let store = Store::new(config).await?;
    let id = super::counter_log(&store, cache, events).await?;
    let host = store.host(cache, false).await?;
    let mut samples = Vec::with_capacity(rounds);
    let mut answered = Vec::with_capacity(rounds);
    for round in 0..=rounds {
        // Each round's `get` adds two events: snapshot them away first, so
        // every wake restores the snapshot at the head.
        host.hibernate(id);
        tokio::task::yield_now().await;
        host.snapshot_now(id).await?;
        let start = Instant::now();
        // Activation: restore the snapshot, fold the (empty) tail. The actor
        // replays in its own task; it answers `wait_idle` once it is live.
        let session = host.session(id).await?;
        session.wait_idle(std::time::Duration::ZERO).await?;
        let live = start.elapsed();
        session.input(from(), text("get")).await?;
        // The first round also compiles or loads the component: not a wake.
        if round > 0 {
            samples.push(live);
            answered.push(start.elapsed());
        }
    }
    Ok(json!({
        "bench": "wake-snapshot",
        "events": events,
        "p50_us": percentile(&mut samples, 0.5),
        "p99_us": percentile(&mut samples, 0.99),
        "with_input_p50_us": percentile(&mut answered, 0.5),
    }))
}
