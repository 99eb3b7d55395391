//! What a caller asks the journal to write, and how it learns that it is durable.
//!
//! Invariant: a [`Commit`] is atomic — its new logs, appends and name updates are
//! written in one redb transaction, or none of them is. A [`CommitTicket`]
//! resolves only after that transaction has been committed to disk, so nothing
//! is acknowledged before it is durable (DESIGN §2).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::event::{Created, EventBody, StoredEvent};
use super::{JournalError, LogId};

/// One atomic unit: all its parts commit in one redb transaction or none do.
///
/// Parts are applied in this order: new logs, then appends (in order, so two
/// appends to one log chain), then name updates.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    /// Logs to create; each gets its `created` event as seq 0.
    pub new_logs: Vec<NewLog>,
    /// Events to append to existing logs (or to logs created by this commit).
    pub appends: Vec<Append>,
    /// Names to bind or move.
    pub names: Vec<NameUpdate>,
    /// Approved tools a lease holder is about to run: applied after the appends.
    pub claims: Vec<Claim>,
}

impl Commit {
    /// A commit of one append.
    pub fn append(log: LogId, expected_seq: u64, events: Vec<(u64, EventBody)>) -> Self {
        Commit {
            appends: vec![Append {
                log,
                expected_seq,
                at_head: false,
                events,
                lease: None,
            }],
            ..Commit::default()
        }
    }

    /// A commit that creates one log.
    pub fn new_log(new_log: NewLog) -> Self {
        Commit {
            new_logs: vec![new_log],
            ..Commit::default()
        }
    }

    /// The same commit with every append fenced by `epoch`: refused with
    /// [`JournalError::Fenced`] unless that is still the log's lease.
    pub fn fenced(mut self, epoch: u64) -> Self {
        for append in &mut self.appends {
            append.lease = Some(epoch);
        }
        self
    }

    /// How many events this commit writes.
    pub fn event_count(&self) -> usize {
        self.new_logs.len() + self.appends.iter().map(|a| a.events.len()).sum::<usize>()
    }
}

/// A log to create.
///
/// Refused with [`JournalError::LogExists`] if the id exists, with
/// [`JournalError::NameTaken`] if `name` is already bound in `tenant`, and
/// with [`JournalError::LimitReached`] if it is a session of its own and
/// `tenant` already holds `session_limit` of them.
#[derive(Clone, Debug)]
pub struct NewLog {
    /// Its id: a UUIDv7, so that ids sort in creation order.
    pub id: LogId,
    /// The tenant that owns it.
    pub tenant: String,
    /// A name to bind to it in `tenant`.
    pub name: Option<String>,
    /// Unix ms of its `created` event.
    pub at: u64,
    /// Its seq 0.
    pub created: Created,
    /// The most sessions `tenant` may hold, checked in the transaction that
    /// writes this log, so concurrent creates cannot overshoot it. `None`:
    /// no limit. A compaction's continuation is not a session of its own
    /// (see [`Journal::count`](super::Journal::count)): it is never refused.
    pub session_limit: Option<u64>,
}

/// Events to append to one log.
///
/// Refused with [`JournalError::Conflict`] if `expected_seq` is not the log's
/// next seq (unless the append is `at_head`), with [`JournalError::Fenced`] if it carries a lease epoch that is
/// not the log's current one, and with [`JournalError::UnknownLog`] if there
/// is no such log.
#[derive(Clone, Debug)]
pub struct Append {
    /// The log.
    pub log: LogId,
    /// The seq the first event gets: the log's current next seq.
    pub expected_seq: u64,
    /// The events go at the log's head as the writer finds it, whatever it
    /// is, and `expected_seq` is not checked: the append of a writer that
    /// cannot know the head, such as a `send`'s input to another log, which
    /// commits with the sender's own append. Its events chain after whatever
    /// is there, including the appends before it in the same commit.
    pub at_head: bool,
    /// `(at, body)` of each event, in order; `at` is unix ms.
    pub events: Vec<(u64, EventBody)>,
    /// The epoch of the writer's lease on the log
    /// ([`Journal::acquire_lease`](super::Journal::acquire_lease)), checked
    /// in the transaction; `None` for writers that hold no lease (creates,
    /// imports, operators' tools), which only the seq check orders.
    pub lease: Option<u64>,
}

impl Append {
    /// `events` for `log`, at its head whatever it is ([`Append::at_head`]),
    /// without a lease: the order of the writer is their only order.
    pub fn to_head(log: LogId, events: Vec<(u64, EventBody)>) -> Self {
        Append {
            log,
            expected_seq: 0,
            at_head: true,
            events,
            lease: None,
        }
    }
}

/// A lease holder's word that it is about to run a tool that a writer
/// without the lease approved ([`OpenEffect::unstarted`](super::OpenEffect::unstarted)):
/// once it is durable, whoever resumes the log after a crash must assume the
/// tool may have run. A key that is not open, or not unstarted, is left as it is.
///
/// Refused with [`JournalError::Fenced`] unless `lease` is the log's current
/// lease epoch, and with [`JournalError::UnknownLog`] if there is no such log.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The log.
    pub log: LogId,
    /// The tool's key.
    pub key: String,
    /// The epoch of the claimant's lease on the log.
    pub lease: u64,
}

/// Binds a name to a log, or moves it there from the log it pointed at.
///
/// Refused with [`JournalError::UnknownLog`] if the log does not exist in `tenant`.
#[derive(Clone, Debug)]
pub struct NameUpdate {
    /// The tenant of the name (and of the log).
    pub tenant: String,
    /// The name.
    pub name: String,
    /// The log it now points at.
    pub log: LogId,
}

/// What a commit wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Committed {
    /// Every event written by the commit, in order: new logs' seq 0 first, then
    /// the appends' events.
    pub events: Vec<(LogId, StoredEvent)>,
}

/// The answer to a commit: resolves after the redb transaction holding the
/// commit has been made durable, or with the reason it was refused.
///
/// Dropping the ticket does not cancel the commit. Outside an async context use
/// [`CommitTicket::wait`].
#[derive(Debug)]
#[must_use = "a commit is acknowledged only through its ticket"]
pub struct CommitTicket(oneshot::Receiver<Result<Committed, JournalError>>);

impl CommitTicket {
    pub(crate) fn new() -> (oneshot::Sender<Result<Committed, JournalError>>, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, CommitTicket(rx))
    }

    /// Blocks the thread until the commit is durable or refused.
    ///
    /// # Panics
    /// When called from within an async runtime (await the ticket there).
    pub fn wait(self) -> Result<Committed, JournalError> {
        self.0.blocking_recv().unwrap_or(Err(JournalError::Closed))
    }
}

impl Future for CommitTicket {
    type Output = Result<Committed, JournalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(JournalError::Closed)))
    }
}
