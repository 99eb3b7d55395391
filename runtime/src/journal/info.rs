//! What the journal knows about a log without replaying it: its head, its
//! current guest, its open effects and the status that follows from them.
//!
//! Invariant: all of this is a projection of the log's events, maintained by the
//! writer in the same transaction as the events that change it, by the rules in
//! [`OpenAction::of`] and [`MetaChange::of`]; replaying the log would give the same.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::LogId;
use super::event::{EventBody, GuestRef, LogPos, RequestedEffect};

/// A log as the journal sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogInfo {
    /// Its id.
    pub id: LogId,
    /// The tenant that owns it.
    pub tenant: String,
    /// The name that last bound to it, while that name still points here.
    pub name: Option<String>,
    /// The guest it runs on now: from `created`, updated by `guest-changed`.
    pub guest: GuestRef,
    /// Unix ms of its `created` event.
    pub created_at: u64,
    /// The seq its next event gets (its number of events).
    pub next_seq: u64,
    /// The hash of its last event.
    pub last_hash: [u8; 32],
    /// What it is doing, from the flags and open effects.
    pub status: LogStatus,
    /// Whether it is stopped (`stopped` and no `resumed` since): its status
    /// says so unless it finished or failed, which come first.
    pub stopped: bool,
    /// The effects requested and not yet ended, ordered by key.
    pub open: Vec<OpenEffect>,
}

/// What a log is doing, as far as the log says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogStatus {
    /// Nothing is open: it waits for input.
    Idle,
    /// A model call or tool is open.
    Running,
    /// A human decision is pending.
    WaitingApproval,
    /// Only timers are open.
    Sleeping,
    /// The guest finished.
    Finished,
    /// The guest failed; it stays parked until its guest is changed.
    Failed,
    /// An operator or a limit stopped it: the host performs nothing for it
    /// until it is resumed.
    Stopped,
}

impl LogStatus {
    /// The status that follows from a log's flags and open effects: finished,
    /// then failed, then stopped, then any approval pending, then any
    /// non-sleep effect open, then any sleep open, else idle.
    pub fn of(finished: bool, failed: bool, stopped: bool, open: &[OpenEffect]) -> LogStatus {
        if finished {
            LogStatus::Finished
        } else if failed {
            LogStatus::Failed
        } else if stopped {
            LogStatus::Stopped
        } else if open.iter().any(|o| o.awaiting_approval) {
            LogStatus::WaitingApproval
        } else if open
            .iter()
            .any(|o| !matches!(o.effect, RequestedEffect::Sleep { .. }))
        {
            LogStatus::Running
        } else if !open.is_empty() {
            LogStatus::Sleeping
        } else {
            LogStatus::Idle
        }
    }

    /// The kebab-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStatus::Idle => "idle",
            LogStatus::Running => "running",
            LogStatus::WaitingApproval => "waiting-approval",
            LogStatus::Sleeping => "sleeping",
            LogStatus::Finished => "finished",
            LogStatus::Failed => "failed",
            LogStatus::Stopped => "stopped",
        }
    }
}

impl fmt::Display for LogStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An effect that was requested and has not ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpenEffect {
    /// The guest's key for it.
    pub key: String,
    /// What was requested.
    pub effect: RequestedEffect,
    /// A human decision about it is pending.
    pub awaiting_approval: bool,
    /// A tool approved by a writer that held no lease (a worker that does
    /// not advance the session), which no lease holder has claimed since:
    /// it has certainly not run, so whoever resumes the session may run it.
    /// Every other approved tool without a result may have run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unstarted: bool,
}

/// The stored value of an open effect (its key is in the table's key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenRecord {
    pub(crate) effect: RequestedEffect,
    pub(crate) awaiting_approval: bool,
    /// See [`OpenEffect::unstarted`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) unstarted: bool,
}

/// What an event does to the open entry of its key.
#[derive(Debug, PartialEq)]
pub(crate) enum OpenAction {
    /// Nothing.
    Keep,
    /// Insert or replace the entry.
    Put(OpenRecord),
    /// Remove the entry.
    Remove,
}

impl OpenAction {
    /// Whether [`OpenAction::of`] needs the current entry for this event.
    pub(crate) fn needs_current(body: &EventBody) -> bool {
        matches!(
            body,
            EventBody::ApprovalRequested { .. } | EventBody::ApprovalDecided { .. }
        )
    }

    /// The rules: `requested` opens its key; `approval-requested` marks it
    /// awaiting approval (opening it, for a guest's `ask` or a tool the host holds,
    /// when nothing was requested); `approval-decided` clears that and ends an
    /// `ask`; `completed`, `cancelled` and a non-retryable `failed` end it.
    /// A tool approved by an append that carries no lease (`leased` false)
    /// is marked [`OpenRecord::unstarted`] until a lease holder claims it.
    pub(crate) fn of(body: &EventBody, current: Option<OpenRecord>, leased: bool) -> OpenAction {
        match body {
            EventBody::Requested { effect, .. } => OpenAction::Put(OpenRecord {
                effect: effect.clone(),
                awaiting_approval: false,
                unstarted: false,
            }),
            EventBody::ApprovalRequested { tool, question, .. } => {
                let effect = match (current, question, tool) {
                    (Some(cur), _, _) => cur.effect,
                    (None, Some(q), _) => RequestedEffect::Ask(q.clone()),
                    (None, None, Some(t)) => RequestedEffect::Tool(t.clone()),
                    (None, None, None) => return OpenAction::Keep,
                };
                OpenAction::Put(OpenRecord {
                    effect,
                    awaiting_approval: true,
                    unstarted: false,
                })
            }
            EventBody::ApprovalDecided { allow, .. } => match current {
                Some(OpenRecord {
                    effect: RequestedEffect::Ask(_),
                    ..
                }) => OpenAction::Remove,
                Some(cur) => OpenAction::Put(OpenRecord {
                    effect: cur.effect,
                    awaiting_approval: false,
                    unstarted: *allow && !leased,
                }),
                None => OpenAction::Keep,
            },
            EventBody::Completed { .. } | EventBody::Cancelled { .. } => OpenAction::Remove,
            EventBody::Failed { retryable, .. } if !retryable => OpenAction::Remove,
            _ => OpenAction::Keep,
        }
    }
}

/// The stored metadata of a log (the `logs` table's value, as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct LogMeta {
    pub(crate) tenant: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    pub(crate) guest: GuestRef,
    pub(crate) created_at: u64,
    #[serde(default)]
    pub(crate) finished: bool,
    #[serde(default)]
    pub(crate) failed: bool,
    /// `stopped` and no `resumed` since; never inherited by a fork.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) stopped: bool,
    /// For a fork: the parent log and the last seq it shares with it. The
    /// fork's own rows start at `parent.seq + 1` (docs/log-format.md, Forks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parent: Option<LogPos>,
}

/// What an event does to its log's metadata.
pub(crate) struct MetaChange;

impl MetaChange {
    /// Whether this event changes the metadata at all (most do not, and the
    /// writer skips reading it for them).
    pub(crate) fn applies(body: &EventBody) -> bool {
        matches!(
            body,
            EventBody::Finished { .. }
                | EventBody::GuestFailed { .. }
                | EventBody::GuestChanged { .. }
                | EventBody::Unparked { .. }
                | EventBody::Stopped { .. }
                | EventBody::Resumed { .. }
                | EventBody::Created(_)
                | EventBody::Continued { .. }
        )
    }

    /// The rules: `finished` and `continued` set the finished flag; `guest-failed` sets failed;
    /// `guest-changed` clears failed and makes `to` the current guest;
    /// `unparked` clears failed; `stopped` sets stopped and `resumed` clears it;
    /// `created` (a fork's, met inside an imported log) makes its guest
    /// current and clears stopped (a fork starts unstopped, session::stop).
    pub(crate) fn of(body: &EventBody, meta: &mut LogMeta) {
        match body {
            EventBody::Created(c) => {
                meta.guest = c.guest.clone();
                meta.stopped = false;
            }
            EventBody::Stopped { .. } => meta.stopped = true,
            EventBody::Resumed { .. } => meta.stopped = false,
            // A compacted log lives on in another: this one takes no more.
            EventBody::Finished { .. } | EventBody::Continued { .. } => meta.finished = true,
            EventBody::GuestFailed { .. } => meta.failed = true,
            EventBody::Unparked { .. } => meta.failed = false,
            EventBody::GuestChanged { to, .. } => {
                meta.failed = false;
                meta.guest = to.clone();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::event::{ErrorKind, Outcome, Question, ToolCall};

    fn open(effect: RequestedEffect, awaiting_approval: bool) -> OpenEffect {
        OpenEffect {
            key: "k".into(),
            effect,
            awaiting_approval,
            unstarted: false,
        }
    }

    fn tool() -> ToolCall {
        ToolCall {
            id: "c1".into(),
            name: "rm".into(),
            arguments: "{}".into(),
        }
    }

    #[test]
    fn status_follows_the_precedence() {
        let sleep = open(RequestedEffect::Sleep { until: 5 }, false);
        let run = open(RequestedEffect::Tool(tool()), false);
        let ask = open(RequestedEffect::Ask(Question { text: "?".into() }), true);
        assert_eq!(LogStatus::of(false, false, false, &[]), LogStatus::Idle);
        assert_eq!(
            LogStatus::of(false, false, false, std::slice::from_ref(&sleep)),
            LogStatus::Sleeping
        );
        assert_eq!(
            LogStatus::of(false, false, false, &[sleep.clone(), run.clone()]),
            LogStatus::Running
        );
        assert_eq!(
            LogStatus::of(false, false, false, &[run.clone(), ask.clone()]),
            LogStatus::WaitingApproval
        );
        assert_eq!(
            LogStatus::of(false, true, false, std::slice::from_ref(&ask)),
            LogStatus::Failed
        );
        assert_eq!(
            LogStatus::of(false, false, true, std::slice::from_ref(&run)),
            LogStatus::Stopped
        );
        assert_eq!(LogStatus::of(false, true, true, &[]), LogStatus::Failed);
        assert_eq!(
            LogStatus::of(true, true, false, &[ask]),
            LogStatus::Finished
        );
    }

    #[test]
    fn status_displays_and_serializes_kebab_case() {
        assert_eq!(LogStatus::WaitingApproval.to_string(), "waiting-approval");
        assert_eq!(
            serde_json::to_string(&LogStatus::WaitingApproval).expect("serializes"),
            "\"waiting-approval\""
        );
    }

    #[test]
    fn open_rules() {
        let requested = EventBody::Requested {
            key: "k".into(),
            effect: RequestedEffect::Tool(tool()),
        };
        let rec = |effect, awaiting_approval| OpenRecord {
            effect,
            awaiting_approval,
            unstarted: false,
        };
        let t = || RequestedEffect::Tool(tool());
        assert_eq!(
            OpenAction::of(&requested, None, true),
            OpenAction::Put(rec(t(), false))
        );

        let approval = EventBody::ApprovalRequested {
            key: "k".into(),
            tool: Some(tool()),
            question: None,
        };
        assert_eq!(
            OpenAction::of(&approval, Some(rec(t(), false)), true),
            OpenAction::Put(rec(t(), true))
        );
        let q = Question { text: "ok?".into() };
        let ask = EventBody::ApprovalRequested {
            key: "k".into(),
            tool: None,
            question: Some(q.clone()),
        };
        assert_eq!(
            OpenAction::of(&ask, None, true),
            OpenAction::Put(rec(RequestedEffect::Ask(q.clone()), true))
        );

        let decided = EventBody::ApprovalDecided {
            key: "k".into(),
            allow: true,
            by: "me".into(),
            reason: None,
        };
        assert_eq!(
            OpenAction::of(&decided, Some(rec(t(), true)), true),
            OpenAction::Put(rec(t(), false))
        );
        assert_eq!(
            OpenAction::of(&decided, Some(rec(RequestedEffect::Ask(q), true)), true),
            OpenAction::Remove
        );
        assert_eq!(OpenAction::of(&decided, None, true), OpenAction::Keep);
        // Approved by a writer without the lease: nobody has run it yet.
        assert_eq!(
            OpenAction::of(&decided, Some(rec(t(), true)), false),
            OpenAction::Put(OpenRecord {
                unstarted: true,
                ..rec(t(), false)
            })
        );
        let denied = EventBody::ApprovalDecided {
            key: "k".into(),
            allow: false,
            by: "me".into(),
            reason: None,
        };
        assert_eq!(
            OpenAction::of(&denied, Some(rec(t(), true)), false),
            OpenAction::Put(rec(t(), false))
        );

        let failed = |retryable| EventBody::Failed {
            key: "k".into(),
            error: ErrorKind::Timeout,
            message: "slow".into(),
            retryable,
            attempt: 1,
        };
        assert_eq!(OpenAction::of(&failed(true), None, true), OpenAction::Keep);
        assert_eq!(
            OpenAction::of(&failed(false), None, true),
            OpenAction::Remove
        );
        let completed = EventBody::Completed {
            key: "k".into(),
            outcome: Outcome::TimerFired,
        };
        assert_eq!(OpenAction::of(&completed, None, true), OpenAction::Remove);
        assert_eq!(
            OpenAction::of(&EventBody::Cancelled { key: "k".into() }, None, true),
            OpenAction::Remove
        );
    }

    #[test]
    fn meta_rules() {
        let g = |d: &str| GuestRef {
            name: "g".into(),
            digest: d.into(),
        };
        let mut meta = LogMeta {
            tenant: "t".into(),
            name: None,
            guest: g("a"),
            created_at: 1,
            finished: false,
            failed: false,
            stopped: false,
            parent: None,
        };
        let stopped = EventBody::Stopped {
            by: "logbook".into(),
            reason: "limit".into(),
        };
        assert!(MetaChange::applies(&stopped));
        MetaChange::of(&stopped, &mut meta);
        assert!(meta.stopped);
        MetaChange::of(&EventBody::Resumed { by: "ops".into() }, &mut meta);
        assert!(!meta.stopped);
        let failed = EventBody::GuestFailed {
            message: "trap".into(),
        };
        assert!(MetaChange::applies(&failed));
        MetaChange::of(&failed, &mut meta);
        assert!(meta.failed);
        let changed = EventBody::GuestChanged {
            from: g("a"),
            to: g("b"),
        };
        MetaChange::of(&changed, &mut meta);
        assert!(!meta.failed);
        assert_eq!(meta.guest, g("b"));
        MetaChange::of(
            &EventBody::Finished {
                key: "f".into(),
                result: "done".into(),
            },
            &mut meta,
        );
        assert!(meta.finished);
        assert!(!MetaChange::applies(&EventBody::Cancelled {
            key: "k".into()
        }));
    }
}
