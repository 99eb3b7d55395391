//! What the log says about each effect key: the host's half of the reconcile.
//!
//! Invariant: a key that the log records is never performed again except to
//! resume it after a crash, and only if that is safe (DESIGN §4).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::journal::{EventBody, RequestedEffect};

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

/// Every key the log has recorded, and the open ones in detail. Stored with
/// each snapshot (session::snapshot), so that a session restored from one
/// knows every key of the log as a full replay would.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Keys {
    open: HashMap<String, Open>,
    closed: ClosedKeys,
    /// Keys a human has decided (a subset of the recorded ones).
    decided: HashSet<String>,
    /// What the log spent on models since its last `resumed`: the lifetime
    /// budgets' count (session::limits), kept here so a snapshot keeps it.
    #[serde(default)]
    pub(crate) spent: super::limits::Spent,
}

impl Keys {
    pub(crate) fn is_recorded(&self, key: &str) -> bool {
        self.open.contains_key(key) || self.closed.contains(key)
    }

    pub(crate) fn open(&self) -> impl Iterator<Item = (&String, &Open)> {
        self.open.iter()
    }

    /// Whether a human decision on this key is in the log.
    pub(crate) fn was_decided(&self, key: &str) -> bool {
        self.decided.contains(key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Open> {
        self.open.get(key)
    }

    /// Whether a guest question or a tool approval is waiting for a human.
    pub(crate) fn awaiting_human(&self) -> bool {
        self.open.values().any(|o| o.approval == Approval::Pending)
    }

    /// Fold one event into the key states.
    pub(crate) fn note(&mut self, body: &EventBody) {
        self.spent.note(body);
        match body {
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
            } => {
                self.decided.insert(key.clone());
                match self.open.get_mut(key) {
                    Some(Open {
                        effect: OpenEffect::Question,
                        ..
                    }) => self.close(key),
                    Some(open) => {
                        open.approval = Approval::Decided {
                            allow: *allow,
                            by: by.clone(),
                            reason: reason.clone(),
                        }
                    }
                    None => {}
                }
            }
            EventBody::Failed {
                key,
                retryable: false,
                ..
            } => self.close(key),
            EventBody::Completed { key, .. }
            | EventBody::Cancelled { key }
            | EventBody::Output { key, .. }
            | EventBody::Sent { key, .. }
            | EventBody::Finished { key, .. } => self.close(key),
            _ => {}
        }
    }

    fn close(&mut self, key: &str) {
        self.open.remove(key);
        self.closed.insert(key.to_string());
    }
}

/// The keys the log has closed. Those closed since the session was restored
/// are a set; those a snapshot brought stay one sorted text of keys, each
/// ending in `\n`, searched by bisection: a long log closes thousands of
/// keys, and building a set of them on every wake would cost more than the
/// rest of the wake together. Keys holding a `\n` (a guest may choose any)
/// are kept apart in `odd`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClosedKeys {
    recent: HashSet<String>,
    sealed: String,
    /// Where each key of `sealed` starts.
    starts: Vec<usize>,
}

impl ClosedKeys {
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.recent.contains(key) || self.sealed_contains(key)
    }

    pub(crate) fn insert(&mut self, key: String) {
        if !self.sealed_contains(&key) {
            self.recent.insert(key);
        }
    }

    fn sealed_key(&self, i: usize) -> &str {
        let end = self.starts.get(i + 1).copied().unwrap_or(self.sealed.len());
        self.sealed
            .get(self.starts[i]..end.saturating_sub(1))
            .unwrap_or_default()
    }

    fn sealed_contains(&self, key: &str) -> bool {
        let (mut lo, mut hi) = (0, self.starts.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.sealed_key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    fn all(&self) -> BTreeSet<&str> {
        let mut all: BTreeSet<&str> = self.recent.iter().map(String::as_str).collect();
        all.extend((0..self.starts.len()).map(|i| self.sealed_key(i)));
        all
    }
}

impl PartialEq for ClosedKeys {
    fn eq(&self, other: &Self) -> bool {
        self.all() == other.all()
    }
}

/// How closed keys are stored in a snapshot's ledger.
#[derive(Serialize, Deserialize)]
struct ClosedText {
    text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    odd: Vec<String>,
}

impl Serialize for ClosedKeys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::new();
        let mut odd = Vec::new();
        for key in self.all() {
            if key.contains('\n') {
                odd.push(key.to_owned());
            } else {
                text.push_str(key);
                text.push('\n');
            }
        }
        ClosedText { text, odd }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ClosedKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ClosedText { text, odd } = ClosedText::deserialize(d)?;
        let mut starts = Vec::with_capacity(text.len() / 8);
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            starts.push(at);
            at += line.len();
        }
        let mut keys = ClosedKeys {
            recent: odd.into_iter().collect(),
            sealed: text,
            starts,
        };
        // Written sorted; anything else (or a last key without its `\n`) is
        // rebuilt so that bisection holds.
        let sorted = keys.sealed.ends_with('\n') || keys.sealed.is_empty();
        let sorted =
            sorted && (1..keys.starts.len()).all(|i| keys.sealed_key(i - 1) < keys.sealed_key(i));
        if !sorted {
            let all: Vec<String> = keys
                .sealed
                .lines()
                .map(str::to_owned)
                .chain(keys.recent.drain())
                .collect();
            keys = ClosedKeys::default();
            keys.recent = all.into_iter().collect();
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_keys_survive_a_snapshot_and_are_found_by_bisection() {
        let mut keys = ClosedKeys::default();
        for k in ["output-10", "output-2", "odd\nkey", "model-1", ""] {
            keys.insert(k.to_owned());
        }
        let json = serde_json::to_string(&keys).expect("encode");
        let mut back: ClosedKeys = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, keys);
        for k in ["output-10", "output-2", "odd\nkey", "model-1", ""] {
            assert!(back.contains(k), "{k:?}");
        }
        for k in ["output-1", "output-3", "zzz", "odd"] {
            assert!(!back.contains(k), "{k:?}");
        }
        back.insert("output-3".into());
        back.insert("output-2".into());
        assert!(back.contains("output-3"));
        assert_eq!(back.all().len(), 6);

        // An unsorted text (not what we write) is still read right.
        let unsorted: ClosedKeys = serde_json::from_str(r#"{"text":"b\na\nc"}"#).expect("decode");
        assert!(unsorted.contains("a") && unsorted.contains("b") && unsorted.contains("c"));
    }
}
