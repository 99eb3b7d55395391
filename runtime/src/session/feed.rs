//! Feeds: what live observers (Server-Sent Events, `log --follow`) of a log
//! read, shared by every observer of that log in this host.
//!
//! A feed holds the log's head (its next seq) as a watch channel, so that
//! observers learn of new events without polling and without the session's
//! guest, and a tail of the log's newest events, each read from the journal
//! and encoded as its JSON line once, whatever the number of observers.
//!
//! Invariants:
//! - a head is announced only after the events up to it are durable, and
//!   the tail holds only events read back from the journal: an observer
//!   never sees an event that is not durable;
//! - the tail is a run of consecutive seqs; an observer further behind than
//!   its start reads (and encodes) the history it asks for itself;
//! - a feed lives while someone follows its log: the last observer to go
//!   takes it away at the next announcement.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::journal::{Journal, JournalError, LogId, StoredEvent, to_jsonl};
use crate::metrics::Metrics;

/// Events a feed keeps for observers that are at most this far behind.
const TAIL_EVENTS: usize = 512;

/// One event as observers receive it, encoded once.
#[derive(Debug)]
pub struct FedEvent {
    /// Its seq: an SSE event's `id`.
    pub seq: u64,
    /// Its kind (`input`, `completed`, …): an SSE event's name.
    pub kind: &'static str,
    /// Its JSON line in the log format (`docs/log-format.md`).
    pub json: String,
}

impl FedEvent {
    fn of(stored: &StoredEvent) -> FedEvent {
        FedEvent {
            seq: stored.event.seq,
            kind: stored.event.body.kind(),
            json: to_jsonl(stored),
        }
    }
}

struct Feed {
    head: watch::Sender<u64>,
    tail: tokio::sync::Mutex<VecDeque<Arc<FedEvent>>>,
}

impl Feed {
    /// Heads only move forward: announcements from this host's actors and
    /// from the journal (any worker's commits) may arrive in any order.
    fn raise(&self, next_seq: u64) {
        self.head.send_if_modified(|head| {
            let newer = next_seq > *head;
            if newer {
                *head = next_seq;
            }
            newer
        });
    }
}

/// The feeds of the logs someone follows, created on demand.
#[derive(Default)]
pub(crate) struct Feeds {
    feeds: Mutex<HashMap<LogId, Arc<Feed>>>,
}

impl Feeds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LogId, Arc<Feed>>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follow a log whose head is `next_seq` now.
    pub(crate) fn follow(&self, log: LogId, next_seq: u64) -> Follower {
        let feed = self
            .lock()
            .entry(log)
            .or_insert_with(|| {
                Arc::new(Feed {
                    head: watch::channel(next_seq).0,
                    tail: tokio::sync::Mutex::new(VecDeque::new()),
                })
            })
            .clone();
        feed.raise(next_seq);
        Follower {
            log,
            head: feed.head.subscribe(),
            feed,
        }
    }

    /// Announce that a log's events up to `next_seq` are durable.
    pub(crate) fn advanced(&self, log: LogId, next_seq: u64) {
        let mut feeds = self.lock();
        let Some(feed) = feeds.get(&log) else {
            return;
        };
        if feed.head.receiver_count() == 0 {
            feeds.remove(&log);
            return;
        }
        feed.raise(next_seq);
    }
}

/// One observer of a log: where its head is, and reads through the feed.
pub struct Follower {
    log: LogId,
    feed: Arc<Feed>,
    head: watch::Receiver<u64>,
}

impl Follower {
    /// The log's head as last announced (its next seq); marks it seen, so
    /// that [`Follower::changed`] waits for a newer one.
    pub fn head(&mut self) -> u64 {
        *self.head.borrow_and_update()
    }

    /// Wait until the log holds an event at `from` or later, as this host's
    /// actors announce it or the journal tells of any writer's commit (an
    /// actor on another worker); `false` when the host is gone.
    pub(crate) async fn changed(&mut self, journal: &dyn Journal, from: u64) -> bool {
        if *self.head.borrow_and_update() > from {
            return true;
        }
        tokio::select! {
            changed = self.head.changed() => changed.is_ok(),
            grown = journal.wait_events(self.log, from) => match grown {
                Ok(next) => {
                    self.feed.raise(next);
                    true
                }
                Err(e) => {
                    // This host's own announcements still arrive.
                    tracing::warn!(log = %self.log, "cannot wait on the journal: {e}");
                    self.head.changed().await.is_ok()
                }
            },
        }
    }

    /// Up to `limit` durable events from seq `from`, encoded once for every
    /// observer of the log; empty when there are none yet.
    pub(crate) async fn read(
        &self,
        journal: &dyn Journal,
        metrics: &Metrics,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Arc<FedEvent>>, JournalError> {
        let mut tail = self.feed.tail.lock().await;
        let start = tail.front().map(|e| e.seq);
        let end = tail.back().map(|e| e.seq + 1);
        match (start, end) {
            (Some(start), Some(end)) if (start..end).contains(&from) => {
                let skip = usize::try_from(from - start).unwrap_or(usize::MAX);
                return Ok(tail.iter().skip(skip).take(limit).cloned().collect());
            }
            (Some(start), _) if from < start => {
                // History older than the tail: this observer's own read.
                drop(tail);
                let page = journal.read(self.log, from, limit).await?;
                metrics.fed(page.len());
                return Ok(page.iter().map(|s| Arc::new(FedEvent::of(s))).collect());
            }
            // The tail ends where this read starts: extend it.
            (_, Some(end)) if end == from => {}
            // No tail yet, or one that this observer has passed: start anew.
            _ => tail.clear(),
        }
        let page = journal.read(self.log, from, limit).await?;
        metrics.fed(page.len());
        let fed: Vec<Arc<FedEvent>> = page.iter().map(|s| Arc::new(FedEvent::of(s))).collect();
        tail.extend(fed.iter().cloned());
        let excess = tail.len().saturating_sub(TAIL_EVENTS);
        tail.drain(..excess);
        Ok(fed)
    }
}
