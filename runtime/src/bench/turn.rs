//! The `turn` bench: an assistant's turn (model, `fs.read`, model, output,
//! each step durable), its latency as one session's history grows, and
//! turns per second of many sessions at once, on one worker and, with
//! PostgreSQL, on two.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{BenchResult, bed, from, percentile, text};
use crate::config::Config;
use crate::session::{Host, Session};

/// What the `turn` bench measures.
pub(super) struct TurnShape {
    /// Latency is measured after this many turns of one session's history.
    pub(super) histories: Vec<usize>,
    /// Turns measured at each history.
    pub(super) measured: usize,
    /// Sessions run at once for the throughput figure...
    pub(super) sessions: usize,
    /// ...each for this many turns, from fresh.
    pub(super) turns_each: usize,
}

/// The prompt of the `turn` bench: a model call that asks for `fs.read`,
/// the tool, a model call that answers.
const TURN_PROMPT: &str = "/tool fs.read {\"path\":\"x\"}";

/// An assistant session on `host` that never compacts, with the file its
/// turns read in its workspace.
async fn assistant_session(host: &Arc<Host>) -> BenchResult<Session> {
    let bytes = crate::examples::get("assistant").expect("examples are built in");
    let guest = host.add_guest("bench", "assistant", bytes).await?;
    let config = json!({ "context_budget": u64::MAX / 2 });
    let id = host.create_session("bench", None, guest, config).await?;
    let workspace = host.workspace_dir(id);
    std::fs::create_dir_all(&workspace)
        .and_then(|()| std::fs::write(workspace.join("x"), "hello"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(host.session(id).await?)
}

/// `turns` turns of each of `sessions`, all at once: turns per second.
async fn turns_per_s(sessions: Vec<Session>, turns: usize) -> BenchResult<u64> {
    let count = sessions.len() * turns;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for session in sessions {
        tasks.spawn(async move {
            for _ in 0..turns {
                session.input(from(), text(TURN_PROMPT)).await?;
                session.wait_idle(Duration::ZERO).await?;
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok((count as f64 / start.elapsed().as_secs_f64()).round() as u64)
}

/// An assistant turn on EchoModel: model, `fs.read`, model, output, each
/// step durable. One session's latency at a given history (its context
/// budget is raised so that it never compacts), then turns per second with
/// many fresh sessions at once; on PostgreSQL also with those sessions
/// split over two workers (two hosts, each its own `PgJournal`, on the
/// same database), each session created through the worker that runs it.
pub(super) async fn turn(
    config: &Config,
    cache: &Path,
    shape: &TurnShape,
) -> BenchResult<Vec<serde_json::Value>> {
    let bed = bed(config, cache, false).await?;
    let one = assistant_session(&bed.host).await?;
    let turn_of_one = async || {
        one.input(from(), text(TURN_PROMPT)).await?;
        one.wait_idle(Duration::ZERO).await?;
        Ok(())
    };
    let mut lines =
        latency_at_histories("turn", &shape.histories, shape.measured, turn_of_one).await?;
    drop(one);
    let line = |workers: usize, rate: u64| {
        json!({
            "bench": "turn",
            "workers": workers,
            "sessions": shape.sessions,
            "turns_per_session": shape.turns_each,
            "turns_per_s": rate,
        })
    };
    let mut sessions = Vec::with_capacity(shape.sessions);
    for _ in 0..shape.sessions {
        sessions.push(assistant_session(&bed.host).await?);
    }
    lines.push(line(1, turns_per_s(sessions, shape.turns_each).await?));
    if bed.store.db.is_some() {
        let (second, _dir) = bed.worker(config, cache).await?;
        let mut sessions = Vec::with_capacity(shape.sessions);
        for i in 0..shape.sessions {
            let host = if i % 2 == 0 { &bed.host } else { &second };
            sessions.push(assistant_session(host).await?);
        }
        lines.push(line(2, turns_per_s(sessions, shape.turns_each).await?));
        second.close().await;
    }
    bed.close().await;
    Ok(lines)
}

/// One session's turn latency as its history grows: for each of
/// `histories`, `turn` until the session has that many turns behind it,
/// then `measured` timed turns; one line of figures per history.
pub(super) async fn latency_at_histories(
    bench: &str,
    histories: &[usize],
    measured: usize,
    mut turn: impl AsyncFnMut() -> BenchResult<()>,
) -> BenchResult<Vec<serde_json::Value>> {
    let mut lines = Vec::new();
    let mut done = 0;
    for &history in histories {
        while done < history {
            turn().await?;
            done += 1;
        }
        let mut samples = Vec::with_capacity(measured);
        for _ in 0..measured {
            let start = Instant::now();
            turn().await?;
            samples.push(start.elapsed());
            done += 1;
        }
        lines.push(json!({
            "bench": bench,
            "history_turns": history,
            "p50_us": percentile(&mut samples, 0.5),
            "p99_us": percentile(&mut samples, 0.99),
        }));
    }
    Ok(lines)
}
