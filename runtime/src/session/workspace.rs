//! Tool workspaces rebuilt from the log, so that any worker can run a
//! session's `fs.*` tools (DESIGN §7, "no local state").
//!
//! A workspace is a function of its log: `fs.write` replaces a whole file,
//! so applying the successful writes of a stretch of the log, in log order,
//! over a workspace that holds at least every write before the stretch gives
//! the workspace at the stretch's end. A write is in the log as a `requested`
//! event (`fs.write` with its path and content) and, under the same key, a
//! `completed` tool outcome that is not an error. A fork's log reads its
//! parent's events up to the fork point, so a fork starts with its parent's
//! files as of that point and goes its own way in its own directory.
//!
//! Each worker keeps a workspace at `DATA/workspaces/<log>` and, beside it
//! (outside the directory the tools are confined to, so a guest can neither
//! read nor forge it), a marker `DATA/workspaces/<log>.seq` saying how far
//! the directory is known to be up to date.
//!
//! Invariants:
//! - a marker `{seq, open_from}` means: every successful write completed
//!   before `seq` is in the directory, and every `fs.write` request still
//!   open at `seq` is at or after `open_from`; the next rebuild reads from
//!   `open_from`, so a completion at or after `seq` always finds its request;
//! - the marker is replaced atomically (a temporary file renamed over it),
//!   after the writes it covers are synced;
//! - an absent, unreadable or impossible marker (beyond the log's head, or
//!   whose directory is gone) counts as none: the whole log is replayed over
//!   the directory. So every file the log wrote gets the log's content; a
//!   file the log never wrote (one an operator put there) is left alone;
//! - an actor rebuilds at most once, before its first `fs.*` call runs, up
//!   to its head at that moment ([`Workspace::enter`]); its own calls then run
//!   one at a time and report in the order they ran, so the log's order of
//!   completions is the order the files were written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard, OnceCell};

use super::Shared;
use crate::effects::{FsWrite, ToolError};
use crate::journal::{EventBody, JournalError, LogId, Outcome, RequestedEffect};

/// Events read from the journal at a time while rebuilding.
const READ_PAGE: usize = 256;

/// Why a workspace could not be brought up to date with its log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkspaceError {
    /// The log could not be read.
    #[error("cannot read the log: {0}")]
    Journal(#[from] JournalError),
    /// The directory or its marker could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A write the log records as successful fails now.
    #[error("the write {key:?} completed at seq {seq} cannot be applied: {message}")]
    Replay {
        /// The seq of its `completed` event.
        seq: u64,
        /// The tool call's key.
        key: String,
        /// Why it fails.
        message: String,
    },
}

impl From<WorkspaceError> for ToolError {
    fn from(e: WorkspaceError) -> ToolError {
        ToolError(format!("the workspace cannot be rebuilt from the log: {e}"))
    }
}

/// How far a workspace directory is up to date (see the module's invariants).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Marker {
    /// Every successful write completed before this seq is in the directory.
    pub(crate) seq: u64,
    /// No `fs.write` request open at `seq` is before this seq.
    pub(crate) open_from: u64,
}

/// An actor's hold on its log's workspace: rebuilt once, then used by one
/// `fs.*` call at a time. Shared by the actor and its tool tasks.
#[derive(Default)]
pub(crate) struct Workspace {
    ready: OnceCell<Marker>,
    turn: Mutex<()>,
}

impl Workspace {
    /// Wait until the workspace holds every write logged before `upto` (the
    /// first caller rebuilds it; a failed rebuild is tried again by the next
    /// call), then take the turn to use it. `upto` is the actor's head when
    /// the call started: every write completed before it was performed by an
    /// earlier actor, perhaps on another worker, since this actor's own
    /// calls wait here first.
    pub(crate) async fn enter(
        &self,
        shared: &Shared,
        log: LogId,
        upto: u64,
    ) -> Result<MutexGuard<'_, ()>, WorkspaceError> {
        self.ready
            .get_or_try_init(|| materialize(shared, log, upto))
            .await?;
        Ok(self.turn.lock().await)
    }
}

/// The marker of the workspace directory `dir` of `log`.
pub(crate) fn marker_path(dir: &Path, log: LogId) -> PathBuf {
    dir.with_file_name(format!("{log}.seq"))
}

/// Bring `log`'s workspace on this worker up to `upto`: apply the successful
/// writes logged since its marker, in log order, and move the marker there.
/// Returns the new marker.
pub(crate) async fn materialize(
    shared: &Shared,
    log: LogId,
    upto: u64,
) -> Result<Marker, WorkspaceError> {
    let dir = shared.workspace_dir(log);
    let marker = marker_path(&dir, log);
    let from = read_marker(&marker, &dir, log, upto).await;
    // Open `fs.write` requests by key: their seq and arguments.
    let mut open: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut written = BTreeSet::new();
    let mut next = from.open_from;
    'pages: while next < upto {
        let limit = usize::try_from(upto - next).map_or(READ_PAGE, |left| left.min(READ_PAGE));
        let page = shared.journal.read(log, next, limit).await?;
        if page.is_empty() {
            break;
        }
        for stored in page {
            let event = stored.event;
            if event.seq >= upto {
                break 'pages;
            }
            next = event.seq + 1;
            match event.body {
                EventBody::Requested {
                    key,
                    effect: RequestedEffect::Tool(call),
                } if call.name == FsWrite::NAME => {
                    open.insert(key, (event.seq, call.arguments));
                }
                EventBody::Completed {
                    key,
                    outcome:
                        Outcome::Tool {
                            is_error: false, ..
                        },
                } => {
                    if let Some((_, arguments)) = open.remove(&key) {
                        let path = apply(&dir, event.seq, &key, &arguments).await?;
                        written.insert(path);
                    }
                }
                EventBody::Completed { key, .. }
                | EventBody::Failed { key, .. }
                | EventBody::Cancelled { key } => {
                    open.remove(&key);
                }
                _ => {}
            }
        }
    }
    let reached = Marker {
        seq: next.max(from.seq),
        open_from: open.values().map(|(seq, _)| *seq).min().unwrap_or(next),
    };
    for path in &written {
        sync(path).await?;
    }
    // Even with nothing written: a marker without its directory means the
    // directory was lost.
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|source| WorkspaceError::Io {
            path: dir.clone(),
            source,
        })?;
    write_marker(&marker, reached).await?;
    tracing::debug!(%log, from = from.open_from, to = reached.seq, writes = written.len(), "workspace rebuilt from the log");
    Ok(reached)
}

/// The marker to rebuild from: the stored one if it is possible, else none.
async fn read_marker(path: &Path, dir: &Path, log: LogId, upto: u64) -> Marker {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Marker::default(),
        Err(e) => {
            tracing::warn!(%log, "cannot read the workspace marker, replaying the whole log: {e}");
            return Marker::default();
        }
    };
    let marker = match serde_json::from_str::<Marker>(&text) {
        Ok(marker) => marker,
        Err(e) => {
            tracing::warn!(%log, "the workspace marker is corrupt, replaying the whole log: {e}");
            return Marker::default();
        }
    };
    if marker.seq > upto || marker.open_from > marker.seq {
        tracing::warn!(%log, ?marker, upto, "the workspace marker is beyond the log, replaying the whole log");
        return Marker::default();
    }
    if !dir.is_dir() {
        // The files it speaks for are gone.
        return Marker::default();
    }
    marker
}

/// Apply one logged write with `fs.write`'s own rules; the file it wrote.
async fn apply(
    dir: &Path,
    seq: u64,
    key: &str,
    arguments: &str,
) -> Result<PathBuf, WorkspaceError> {
    let failed = |message: String| WorkspaceError::Replay {
        seq,
        key: key.to_string(),
        message,
    };
    let value: serde_json::Value = serde_json::from_str(arguments)
        .map_err(|e| failed(format!("arguments are not valid JSON: {e}")))?;
    let path = value
        .get("path")
        .and_then(serde_json::Value::as_str)
        .map(|p| dir.join(p));
    FsWrite::write_in(dir.to_path_buf(), value)
        .await
        .map_err(|e| failed(e.0))?;
    // `write_in` accepted it, so the path is there and inside `dir`.
    path.ok_or_else(|| failed("no path".into()))
}

/// Make a replayed file durable before the marker says it is there.
async fn sync(path: &Path) -> Result<(), WorkspaceError> {
    let io = |source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(io)?;
    file.sync_all().await.map_err(io)
}

/// Replace the marker atomically: a reader sees the old one or the new one.
async fn write_marker(path: &Path, marker: Marker) -> Result<(), WorkspaceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WorkspaceError::Io { path, source }
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(parent))?;
    }
    let temporary = path.with_extension("seq.tmp");
    let text = serde_json::to_string(&marker).expect("a marker is two numbers");
    let mut file = tokio::fs::File::create(&temporary)
        .await
        .map_err(io(&temporary))?;
    tokio::io::AsyncWriteExt::write_all(&mut file, text.as_bytes())
        .await
        .map_err(io(&temporary))?;
    file.sync_all().await.map_err(io(&temporary))?;
    tokio::fs::rename(&temporary, path).await.map_err(io(path))
}
