//! The head of every log that someone is following, so that live observers
//! (Server-Sent Events) learn of new events without polling and without
//! keeping the session's guest resident.
//!
//! Invariant: a head is announced only after the events up to it are durable.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::journal::LogId;

/// Watch channels of log heads (the next seq), created on demand.
#[derive(Default)]
pub(crate) struct Heads {
    senders: Mutex<HashMap<LogId, watch::Sender<u64>>>,
}

impl Heads {
    /// Follow a log whose head is `next_seq` now.
    pub(crate) fn watch(&self, log: LogId, next_seq: u64) -> watch::Receiver<u64> {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let sender = senders
            .entry(log)
            .or_insert_with(|| watch::channel(next_seq).0);
        sender.send_if_modified(|head| {
            let newer = next_seq > *head;
            if newer {
                *head = next_seq;
            }
            newer
        });
        sender.subscribe()
    }

    /// Announce that a log's events up to `next_seq` are durable.
    pub(crate) fn advanced(&self, log: LogId, next_seq: u64) {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = senders.get(&log) else {
            return;
        };
        if sender.receiver_count() == 0 {
            senders.remove(&log);
            return;
        }
        sender.send_replace(next_seq);
    }
}
