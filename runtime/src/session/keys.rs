//! What the log says about each effect key: the host's half of the reconcile.
//!
//! Invariant: a key that the log records is never performed again except to
//! resume it after a crash, and only if that is safe (DESIGN §4).
//!
//! A long log closes many thousands of keys, and a resident session must
//! still know every one of them (a closed key the guest wants again is not
//! performed again). So the closed keys live in the journal's key index of
//! the log ([`Journal::indexed_keys`](crate::journal::Journal::indexed_keys)),
//! not in memory: [`Keys`] holds the open keys and the keys closed since the
//! index's mark, and a session moves the latter to the index in batches of
//! [`INDEX_BATCH`] ([`Keys::to_index`], [`Keys::indexed`]). What a session
//! holds of its keys is bounded by the effects in flight and one batch,
//! however long its log, and a snapshot holds no more.
//!
//! Invariants:
//! - every key of the log is open, or in `unindexed`, or closed below `mark`
//!   (then the journal's index has it);
//! - `mark` only grows, and only once the journal has the keys below it;
//! - a ledger with `mark` 0 holds every key itself: its answers need no
//!   journal (a replay of part of a log, a check, an advance's own keys).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::journal::{EventBody, IndexedKey, RequestedEffect, Sender};

/// How many closed keys a session holds before it moves them to the
/// journal's key index.
pub(crate) const INDEX_BATCH: usize = 1024;

/// Where a tool call stands with its approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Approval {
    /// No approval needed (policy allow).
    NotNeeded,
    /// `approval-requested` is in the log, no decision yet.
    Pending,
    /// Decided, but the tool's result is not in the log yet.
    Decided {
        allow: bool,
        by: String,
        reason: Option<String>,
    },
}

/// An effect the log has opened and not closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Open {
    pub(crate) effect: OpenEffect,
    pub(crate) approval: Approval,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum OpenEffect {
    Requested(RequestedEffect),
    /// A guest's question (it has no `requested` event).
    Question,
}

/// What a log has recorded of its keys, as far as a session must hold it
/// (module doc). Stored with each snapshot (session::snapshot).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Keys {
    open: HashMap<String, Open>,
    /// Keys closed at or after `mark`, which the journal's index may lack.
    unindexed: HashMap<String, Closed>,
    /// The journal's key index holds every key closed below this seq; 0
    /// when this ledger holds every key itself. No default: a snapshot
    /// from before the index (which held every key) is not read as one.
    mark: u64,
    /// What the log spent on models since its last `resumed`: the lifetime
    /// budgets' count (session::limits), kept here so a snapshot keeps it.
    #[serde(default)]
    pub(crate) spent: super::limits::Spent,
    /// The hops a `send` answering the log's latest input carries
    /// (journal::Sender::Log): 0 after a participant's input, one more
    /// than that input's after another session's; `None` before any input.
    /// Kept here so a snapshot keeps it (session::actor::send).
    #[serde(default)]
    pub(crate) send_hops: Option<u32>,
}

/// A closed key not in the journal's index (yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Closed {
    /// The seq of the event that closed it.
    seq: u64,
    /// Whether a human decided it.
    decided: bool,
}

/// Whether the log has recorded a key, as far as [`Keys`] knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    Yes,
    No,
    /// Closed below the mark, if at all: the journal's key index knows.
    AskJournal,
}

impl Keys {
    /// An empty ledger for a log whose journal index holds every key closed
    /// below `mark` (what a replay of the whole log starts from).
    pub(crate) fn indexed_below(mark: u64) -> Keys {
        Keys {
            mark,
            ..Keys::default()
        }
    }

    /// Whether the log has recorded `key`.
    pub(crate) fn recorded(&self, key: &str) -> Recorded {
        if self.open.contains_key(key) || self.unindexed.contains_key(key) {
            Recorded::Yes
        } else if self.mark == 0 {
            Recorded::No
        } else {
            Recorded::AskJournal
        }
    }

    pub(crate) fn open(&self) -> impl Iterator<Item = (&String, &Open)> {
        self.open.iter()
    }

    /// Whether a human decision on this key is in the log; `None` when only
    /// the journal's key index can tell.
    pub(crate) fn was_decided(&self, key: &str) -> Option<bool> {
        if let Some(open) = self.open.get(key) {
            return Some(matches!(open.approval, Approval::Decided { .. }));
        }
        match self.unindexed.get(key) {
            Some(closed) => Some(closed.decided),
            None if self.mark == 0 => Some(false),
            None => None,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Open> {
        self.open.get(key)
    }

    /// Whether a guest question or a tool approval is waiting for a human.
    pub(crate) fn awaiting_human(&self) -> bool {
        self.open.values().any(|o| o.approval == Approval::Pending)
    }

    /// The journal index's mark this ledger counts on.
    #[cfg(test)]
    pub(crate) fn mark(&self) -> u64 {
        self.mark
    }

    /// How many closed keys this ledger holds: what it has not moved to the
    /// journal's index.
    pub(crate) fn unindexed(&self) -> usize {
        self.unindexed.len()
    }

    /// Takes a snapshot's ledger onto a journal whose index of the log has
    /// mark `journal`: drops what the index holds. `false` when the index
    /// lacks keys the ledger counts on (it was lost, or the log was copied
    /// without it): the ledger must not be used.
    pub(crate) fn rebase(&mut self, journal: u64) -> bool {
        if journal < self.mark {
            return false;
        }
        self.mark = journal;
        self.unindexed.retain(|_, c| c.seq >= journal);
        true
    }

    /// The keys to move to the journal's index: all closed below the seq
    /// after the last event noted.
    pub(crate) fn to_index(&self) -> Vec<IndexedKey> {
        self.unindexed
            .iter()
            .map(|(key, c)| IndexedKey {
                key: key.clone(),
                decided: c.decided,
            })
            .collect()
    }

    /// The journal's index now holds every key closed below `through`.
    pub(crate) fn indexed(&mut self, through: u64) {
        self.mark = self.mark.max(through);
        let mark = self.mark;
        self.unindexed.retain(|_, c| c.seq >= mark);
    }

    /// Whether a snapshot's ledger (`self`) says what a full replay's
    /// (`full`, which holds every key: mark 0) says of the same seq, as far
    /// as the snapshot's own mark lets it.
    pub(crate) fn agrees_with(&self, full: &Keys) -> bool {
        self.open == full.open
            && self.spent == full.spent
            && self
                .unindexed
                .iter()
                .all(|(k, c)| full.unindexed.get(k) == Some(c))
            && full
                .unindexed
                .iter()
                .filter(|(_, c)| c.seq >= self.mark)
                .all(|(k, c)| self.unindexed.get(k) == Some(c))
    }

    /// Fold the event at `seq` into the key states.
    pub(crate) fn note(&mut self, seq: u64, body: &EventBody) {
        self.spent.note(body);
        match body {
            EventBody::Input { from, .. } => {
                self.send_hops = Some(match from {
                    Sender::Log { hops, .. } => hops.saturating_add(1),
                    Sender::Principal(_) => 0,
                });
            }
            EventBody::Requested { key, effect } => {
                self.open.insert(
                    key.clone(),
                    Open {
                        effect: OpenEffect::Requested(effect.clone()),
                        approval: Approval::NotNeeded,
                    },
                );
            }
            EventBody::ApprovalRequested { key, tool, .. } => {
                if tool.is_some() {
                    if let Some(open) = self.open.get_mut(key) {
                        open.approval = Approval::Pending;
                    }
                } else {
                    self.open.insert(
                        key.clone(),
                        Open {
                            effect: OpenEffect::Question,
                            approval: Approval::Pending,
                        },
                    );
                }
            }
            EventBody::ApprovalDecided {
                key,
                allow,
                by,
                reason,
            } => match self.open.get_mut(key) {
                Some(Open {
                    effect: OpenEffect::Question,
                    ..
                }) => self.close(seq, key, true),
                Some(open) => {
                    open.approval = Approval::Decided {
                        allow: *allow,
                        by: by.clone(),
                        reason: reason.clone(),
                    }
                }
                None => {
                    if let Some(closed) = self.unindexed.get_mut(key) {
                        closed.decided = true;
                    }
                }
            },
            EventBody::Failed {
                key,
                retryable: false,
                ..
            } => self.close(seq, key, false),
            EventBody::Completed { key, .. }
            | EventBody::Cancelled { key }
            | EventBody::Output { key, .. }
            | EventBody::Sent { key, .. }
            | EventBody::Finished { key, .. } => self.close(seq, key, false),
            _ => {}
        }
    }

    fn close(&mut self, seq: u64, key: &str, decided: bool) {
        let decided = match self.open.remove(key) {
            Some(open) => decided || matches!(open.approval, Approval::Decided { .. }),
            None => decided,
        };
        if seq >= self.mark {
            self.unindexed
                .insert(key.to_string(), Closed { seq, decided });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(key: &str) -> EventBody {
        EventBody::Output {
            key: key.into(),
            content: Vec::new(),
        }
    }

    #[test]
    fn keys_closed_below_the_mark_are_asked_of_the_journal() {
        let mut keys = Keys::indexed_below(3);
        keys.note(1, &output("a"));
        keys.note(3, &output("b"));
        assert_eq!(keys.recorded("a"), Recorded::AskJournal);
        assert_eq!(keys.recorded("b"), Recorded::Yes);
        assert_eq!(keys.unindexed(), 1);

        let mut all = Keys::default();
        all.note(1, &output("a"));
        assert_eq!(all.recorded("a"), Recorded::Yes);
        assert_eq!(all.recorded("c"), Recorded::No);
    }

    #[test]
    fn moving_keys_to_the_index_bounds_the_ledger() {
        let mut keys = Keys::default();
        for seq in 0..10 {
            keys.note(seq, &output(&format!("o-{seq}")));
        }
        assert_eq!(keys.to_index().len(), 10);
        keys.indexed(10);
        assert_eq!(keys.unindexed(), 0);
        assert_eq!(keys.mark(), 10);
        assert_eq!(keys.recorded("o-3"), Recorded::AskJournal);
        keys.note(10, &output("o-10"));
        assert_eq!(keys.recorded("o-10"), Recorded::Yes);
    }

    #[test]
    fn a_snapshot_counting_on_more_than_the_index_holds_is_refused() {
        let mut keys = Keys::default();
        keys.note(0, &output("a"));
        keys.note(5, &output("b"));
        keys.indexed(3);
        let mut lost = keys.clone();
        assert!(!lost.rebase(0), "the index lost what the ledger counts on");
        let mut later = keys.clone();
        assert!(later.rebase(6));
        assert_eq!(later.unindexed(), 0);
        assert_eq!(later.mark(), 6);
        // A ledger from before the index (every key in `closed`) is not one.
        let old = r#"{"open":{},"closed":{"text":"a\n"},"decided":[]}"#;
        assert!(serde_json::from_str::<Keys>(old).is_err());
    }

    #[test]
    fn a_decision_stays_with_its_closed_key() {
        let mut keys = Keys::default();
        keys.note(
            0,
            &EventBody::ApprovalRequested {
                key: "q".into(),
                tool: None,
                question: None,
            },
        );
        assert_eq!(keys.was_decided("q"), Some(false));
        keys.note(
            1,
            &EventBody::ApprovalDecided {
                key: "q".into(),
                allow: true,
                by: "ann".into(),
                reason: None,
            },
        );
        assert_eq!(keys.was_decided("q"), Some(true));
        assert!(keys.to_index()[0].decided);
        keys.indexed(2);
        assert_eq!(keys.was_decided("q"), None);
    }
}
