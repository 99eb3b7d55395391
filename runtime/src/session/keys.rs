//! What the log says about each effect key: the host's half of the reconcile.
//!
//! Invariant: a key that the log records is never performed again except to
//! resume it after a crash, and only if that is safe (DESIGN §4).

use std::collections::HashMap;

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
    closed: std::collections::HashSet<String>,
    /// Keys a human has decided (a subset of the recorded ones).
    decided: std::collections::HashSet<String>,
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
