//! The replayer: the one way a log is folded into a guest (DESIGN §4, §5).
//!
//! Activation, a session's re-fold after a failed snapshot or an upgrade's
//! `guest-changed`, `snapshot_now`, `verify --snapshots` and the replay check
//! all read a log through it. Its rules:
//!
//! - Every instance runs under the limits of the log's tenant
//!   ([`Shared::limits_for`]), however it starts, and is seeded by the `seed`
//!   of the log's `created` at seq 0.
//! - The guest starts from the newest snapshot that *this* guest took below
//!   the end of the range, when asked, else from `init` with seq 0's
//!   `created`. A snapshot that is missing, corrupt, refused or that fails to
//!   restore costs only speed: a warning in the trace, a fresh instance, a
//!   full replay (session::snapshot has the record's invariant).
//! - Seq 0's `created` only starts the guest. Every later event is folded, in
//!   order: a fork's own `created` (at its parent's seq + 1), `guest-changed`,
//!   and whatever came between a `guest-failed` and the `guest-changed` or
//!   `unparked` that lifted it. The guest sees every event of its log but
//!   two kinds: an operator's `unparked`, and the input an `unparked` skips
//!   (docs/guest-contract.md, rule 11), on every replay, whatever it starts
//!   from.
//! - The whole range is read, and every event is noted into a [`Ledger`] by
//!   one rule, [`Ledger::note`]: the keys, whether the log parked or finished
//!   (`guest-failed` parks, `guest-changed` and `unparked` un-park,
//!   `finished` and `continued` end it), the skipped inputs, and the head.
//!   This holds when folding stops early too: the keys and the head must be
//!   known.
//! - A skip is learned from its `unparked`, which comes after the input it
//!   skips. A page is noted whole before it is converted, so a skip in the
//!   same page is honoured; one whose input was folded already (an earlier
//!   page, or a snapshot taken before the `unparked`) makes the replay start
//!   again, knowing every skip it has met, from a snapshot below that input
//!   or from seq 0. So a log costs a second fold after an unpark until a
//!   snapshot past its `unparked` is taken.
//! - A log replayed to its head that has ended there (parked or finished) is
//!   not folded at all: no guest runs for it, so none can fail again.
//! - A guest fault stops the folding and is handed back, never raised: the
//!   caller decides (activation logs `guest-failed`, a check reports it).
//!   Anything else (the journal, a guest that cannot be loaded) is an error.
//! - Pages are read ahead: a reader thread reads, decodes, notes and converts
//!   the next page while the guest folds this one (on a wake the two take
//!   about as long, and a caller waits). A tail shorter than a page after a
//!   snapshot is read in the caller's thread: starting a thread would take
//!   longer. A whole short log still goes through the reader, which frees
//!   each page off the fold's path.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::keys::Keys;
use super::{SessionError, Shared, snapshot};
use crate::config::Limits;
use crate::guest::{GuestBatch, GuestError, GuestInstance};
use crate::journal::{Created, Event, EventBody, Journal, LogId, LogInfo, LogStatus, blocking};

/// What a replay learns of the log besides the guest's state.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// The seq after the last event noted.
    pub(super) next_seq: u64,
    pub(super) keys: Keys,
    /// Why the log is parked (its guest failed), if it is.
    pub(super) parked: Option<String>,
    /// How the log ended (`finished`, or `continued` in another log), if it did.
    pub(super) finished: Option<String>,
    /// Why the log is stopped (`stopped`, no `resumed` since), if it is.
    pub(super) stopped: Option<String>,
    /// The seqs of the inputs an `unparked` skipped, among the events noted
    /// (and those a replay knew of when it started again).
    pub(super) skipped: BTreeSet<u64>,
    /// The lowest skipped seq that this replay folded before it met the
    /// `unparked` that skips it: the replay must start again (module doc).
    missed_skip: Option<u64>,
}

impl Ledger {
    /// The rule every reader of a log follows, event after event.
    pub(super) fn note(&mut self, event: &Event) {
        self.next_seq = event.seq + 1;
        self.keys.note(event.seq, &event.body);
        match &event.body {
            EventBody::Finished { result, .. } => self.finished = Some(result.clone()),
            EventBody::Continued { log } => {
                self.finished = Some(format!("continued in log {log}"));
            }
            EventBody::GuestFailed { message } => self.parked = Some(message.clone()),
            EventBody::GuestChanged { .. } => self.parked = None,
            EventBody::Unparked { skip, .. } => {
                self.parked = None;
                self.skipped.extend(*skip);
            }
            EventBody::Stopped { by, reason } => {
                self.stopped = Some(format!("stopped by {by}: {reason}"));
            }
            EventBody::Resumed { .. } => self.stopped = None,
            // A fork's own `created` (at its parent's seq + 1): a fork starts
            // unstopped (session::stop).
            EventBody::Created(_) => self.stopped = None,
            _ => {}
        }
    }

    /// Whether the log has parked or finished: no guest runs for it.
    pub(super) fn ended(&self) -> bool {
        self.parked.is_some() || self.finished.is_some()
    }
}

/// A log folded into a guest.
pub(super) struct Replayed {
    /// The folded guest; `None` when folding stopped on a fault, or never
    /// started, or the log has ended by the end of the range.
    pub(super) guest: Option<GuestInstance>,
    pub(super) ledger: Ledger,
    /// The seq of the snapshot the guest started from, if one was restored.
    pub(super) restored: Option<u64>,
    /// The guest fault that stopped the folding.
    pub(super) fault: Option<GuestError>,
}

/// How a walk ended.
#[expect(
    clippy::large_enum_variant,
    reason = "one is returned per walk, by value: boxing would buy nothing"
)]
pub(super) enum Walked<B> {
    /// The guest faulted in `init`.
    Faulted(GuestError),
    /// The visitor stopped it.
    Stopped(B),
    /// Every event of the range was visited.
    Ended {
        guest: GuestInstance,
        ledger: Ledger,
    },
}

/// A range of a log to fold into a guest, and how.
pub(super) struct Replayer<'a> {
    shared: &'a Shared,
    info: &'a LogInfo,
    digest: &'a str,
    limits: Limits,
    /// The seq after the last event to read; `None`: to the end of the log.
    upto: Option<u64>,
    use_snapshots: bool,
    /// Whether its instances count against the memory budgets (a resident
    /// session's do; a one-off check's do not).
    charged: bool,
}

/// Replays of one log before [`Replayer::run`] gives up on its skips.
const MAX_PASSES: usize = 8;

/// A page read ahead of the fold.
struct Page {
    /// Seq 0's `created` and its time, taken out of the page (folding only).
    created: Option<(Created, u64)>,
    /// Folding: the events converted for the guest, noted by the reader.
    batch: GuestBatch,
    /// Walking: the events as read, seq 0 included; the walk notes them.
    events: Vec<Event>,
}

impl<'a> Replayer<'a> {
    /// Replay `info`'s log into its current guest, under its tenant's
    /// limits, from seq 0 to the end of the log.
    pub(super) fn new(shared: &'a Shared, info: &'a LogInfo) -> Replayer<'a> {
        Replayer {
            shared,
            info,
            digest: &info.guest.digest,
            limits: shared.limits_for(&info.tenant),
            upto: None,
            use_snapshots: false,
            charged: false,
        }
    }

    /// Count the instances against the memory budgets (guest::memory): an
    /// instance that would pass one fails the replay with
    /// [`GuestError::MemoryBudget`].
    pub(super) fn charged(mut self) -> Self {
        self.charged = true;
        self
    }

    /// Fold into guest `digest` instead of the log's current one.
    pub(super) fn guest(mut self, digest: &'a str) -> Self {
        self.digest = digest;
        self
    }

    /// Read up to (not including) seq `upto` only.
    pub(super) fn upto(mut self, upto: u64) -> Self {
        self.upto = Some(upto);
        self
    }

    /// Start from the newest usable snapshot when `yes`.
    pub(super) fn use_snapshots(mut self, yes: bool) -> Self {
        self.use_snapshots = yes;
        self
    }

    fn log(&self) -> LogId {
        self.info.id
    }

    /// The seq after the range, as far as it is known before reading.
    fn end(&self) -> u64 {
        self.upto.unwrap_or(self.info.next_seq)
    }

    fn batch(&self) -> usize {
        self.shared.config.limits.replay_batch.max(1)
    }

    /// Fold the range into the guest (module doc: the rules).
    pub(super) fn run(&self) -> Result<Replayed, SessionError> {
        let mut known = BTreeSet::new();
        let mut below: Option<u64> = None;
        // Each pass learns at least one skip the one before did not know.
        for _ in 0..MAX_PASSES {
            let replayed = self.pass(&known, below)?;
            let Some(missed) = replayed.ledger.missed_skip else {
                return Ok(replayed);
            };
            tracing::debug!(log = %self.log(), missed, "a skipped input was folded: replaying again");
            below = Some(below.map_or(missed, |b| b.min(missed)));
            known.clone_from(&replayed.ledger.skipped);
        }
        Err(SessionError::Corrupt {
            log: self.log(),
            why: format!("its skipped inputs could not be honoured in {MAX_PASSES} replays"),
        })
    }

    /// One pass of [`Replayer::run`]: skipping the inputs in `known`, and
    /// starting from a snapshot below seq `below` only.
    fn pass(&self, known: &BTreeSet<u64>, below: Option<u64>) -> Result<Replayed, SessionError> {
        let began = std::time::Instant::now();
        let ended_at_head = self.upto.is_none()
            && matches!(self.info.status, LogStatus::Failed | LogStatus::Finished);
        let fold = !ended_at_head;
        let mut guest = None;
        // A replay of the whole log leaves the keys closed below its key
        // index's mark to the index (session::keys); one of part of a log
        // holds every key of that part.
        let mark = match self.upto {
            None => blocking(self.shared.journal.indexed_keys(self.log(), &[]))?.mark,
            Some(_) => 0,
        };
        let mut start = Ledger {
            keys: Keys::indexed_below(mark),
            ..Ledger::default()
        };
        let mut restored = None;
        if fold
            && self.use_snapshots
            && let Some((instance, ledger, seq)) = self.restore(below, mark)
        {
            guest = Some(instance);
            start = ledger;
            restored = Some(seq);
        }
        start.skipped.clone_from(known);
        let mut fault = None;
        let ledger = self.read(start, true, |page| {
            if !fold || fault.is_some() {
                return Ok(ControlFlow::Continue(()));
            }
            if let Err(e) = self.fold(&mut guest, page) {
                match e {
                    SessionError::Guest(e) if e.is_guest_fault() => {
                        // Keep reading: the keys and the head must still be known.
                        guest = None;
                        fault = Some(e);
                    }
                    e => return Err(e),
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        if !fold || ledger.ended() {
            guest = None;
        }
        tracing::debug!(
            log = %self.log(),
            events = ledger.next_seq,
            restored,
            us = began.elapsed().as_micros() as u64,
            "replayed"
        );
        Ok(Replayed {
            guest,
            ledger,
            restored,
            fault,
        })
    }

    /// Start the guest by `init` and hand it every event of the range after
    /// seq 0, one at a time, with the ledger of the events before it; the
    /// visitor folds them as it sees fit. Never from a snapshot: a walk looks
    /// at every event.
    pub(super) fn walk<B>(
        &self,
        mut visit: impl FnMut(&mut GuestInstance, &Ledger, &Event) -> ControlFlow<B>,
    ) -> Result<Walked<B>, SessionError> {
        let (created, at) = self.created()?;
        let mut guest = self.instance(created.seed)?;
        if let Err(e) = guest.init(&created, at) {
            return faulted(e);
        }
        let skipped = self.skips()?;
        let mut ledger = Ledger::default();
        let mut stopped = None;
        self.read(Ledger::default(), false, |page| {
            for event in &page.events {
                // Seq 0 started the guest; the guest never sees the others
                // it is not handed (module doc).
                let handed = event.body.for_guest() && !skipped.contains(&event.seq);
                if event.seq != 0
                    && handed
                    && let ControlFlow::Break(b) = visit(&mut guest, &ledger, event)
                {
                    stopped = Some(b);
                    return Ok(ControlFlow::Break(()));
                }
                ledger.note(event);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(match stopped {
            Some(b) => Walked::Stopped(b),
            None => Walked::Ended { guest, ledger },
        })
    }

    /// The inputs the range's `unparked` events skip: a walk reads the
    /// range once before it starts, as it hands the visitor each event.
    fn skips(&self) -> Result<BTreeSet<u64>, SessionError> {
        let mut ledger = Ledger::default();
        self.read(Ledger::default(), false, |page| {
            for event in &page.events {
                ledger.note(event);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(ledger.skipped)
    }

    /// A fresh instance of the guest under the tenant's limits.
    fn instance(&self, seed: u64) -> Result<GuestInstance, SessionError> {
        let engine = &self.shared.engine;
        let loaded = match engine.loaded(self.digest) {
            Some(loaded) => loaded,
            None => {
                let bytes = blocking(self.shared.journal.guest_bytes(self.digest))?
                    .ok_or_else(|| SessionError::UnknownGuest(self.digest.to_string()))?;
                engine.load(self.digest, &bytes)?
            }
        };
        let charge = self.charged.then(|| {
            let tenant = &self.info.tenant;
            self.shared
                .memory
                .charge(tenant, self.shared.tenant_memory_budget(tenant))
        });
        Ok(engine.instantiate_with(&loaded, seed, &self.limits, charge)?)
    }

    /// Fold one page, starting the guest on seq 0's `created`.
    fn fold(&self, guest: &mut Option<GuestInstance>, page: &Page) -> Result<(), SessionError> {
        if let Some((created, at)) = &page.created {
            let mut fresh = self.instance(created.seed)?;
            fresh.init(created, *at)?;
            *guest = Some(fresh);
        }
        match guest {
            Some(guest) => Ok(guest.apply_batch(&page.batch)?),
            None => Ok(()),
        }
    }

    /// The newest usable snapshot of this guest below the end of the range,
    /// restored into a fresh instance: the instance, the ledger as of the
    /// snapshot, and its seq. `None`, after a warning in the trace if a
    /// snapshot was there but unusable, means a full replay.
    fn restore(&self, below: Option<u64>, mark: u64) -> Option<(GuestInstance, Ledger, u64)> {
        let log = self.log();
        let started = std::time::Instant::now();
        let end = below.map_or(self.end(), |b| b.min(self.end()));
        let (seq, record) =
            match blocking(self.shared.journal.latest_snapshot(log, self.digest, end)) {
                Ok(Some(found)) => found,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(%log, "cannot read snapshots ({e}): full replay");
                    return None;
                }
            };
        let (mut keys, bytes) = match snapshot::decode(&record) {
            Ok(decoded) => decoded,
            Err(why) => {
                tracing::warn!(%log, seq, "snapshot is corrupt ({why}): full replay");
                return None;
            }
        };
        if !keys.rebase(mark) {
            tracing::warn!(
                %log,
                seq,
                "the journal's key index lacks keys the snapshot counts on: full replay"
            );
            return None;
        }
        let restored = self.created().and_then(|(created, _)| {
            let mut guest = self.instance(created.seed)?;
            Ok((guest.restore(bytes)?, guest))
        });
        match restored {
            Ok((true, guest)) => {
                tracing::debug!(
                    %log,
                    seq,
                    bytes = record.len(),
                    us = started.elapsed().as_micros() as u64,
                    "restored a snapshot"
                );
                let ledger = Ledger {
                    next_seq: seq + 1,
                    keys,
                    // A snapshot is taken only while neither parked, nor
                    // finished, nor stopped.
                    parked: None,
                    finished: None,
                    stopped: None,
                    // Skips before it are in its state; later ones are noted.
                    skipped: BTreeSet::new(),
                    missed_skip: None,
                };
                Some((guest, ledger, seq))
            }
            Ok((false, _)) => {
                tracing::warn!(%log, seq, "the guest refused its snapshot: full replay");
                None
            }
            Err(e) => {
                tracing::warn!(%log, seq, "cannot restore the snapshot ({e}): full replay");
                None
            }
        }
    }

    /// The log's `created` at seq 0, and its time.
    fn created(&self) -> Result<(Created, u64), SessionError> {
        let log = self.log();
        match blocking(self.shared.journal.read(log, 0, 1))?
            .into_iter()
            .next()
        {
            Some(first) => match first.event.body {
                EventBody::Created(created) => Ok((created, first.event.at)),
                _ => Err(SessionError::Corrupt {
                    log,
                    why: "it does not start with `created`".into(),
                }),
            },
            None => Err(SessionError::UnknownSession(log.to_string())),
        }
    }

    /// Read the range from `start.next_seq` in pages and hand each to
    /// `consume`, which may stop the reading. When `fold`ing, the reader
    /// notes and converts each page and answers its ledger (`start` and
    /// every event read); else pages are handed over as read.
    fn read(
        &self,
        start: Ledger,
        fold: bool,
        mut consume: impl FnMut(&Page) -> Result<ControlFlow<()>, SessionError>,
    ) -> Result<Ledger, SessionError> {
        let mut pager = Pager {
            journal: &self.shared.journal,
            log: self.log(),
            batch: self.batch(),
            upto: self.upto,
            fold,
            next: start.next_seq,
            done: false,
            ledger: start,
        };
        if pager.next > 0 && self.end().saturating_sub(pager.next) < self.batch() as u64 {
            while let Some(page) = pager.next()? {
                if consume(&page)?.is_break() {
                    break;
                }
            }
            return Ok(pager.ledger);
        }
        let (pages, incoming) = std::sync::mpsc::sync_channel::<Page>(2);
        // The reader thread reads through the caller's runtime, if any.
        let runtime = tokio::runtime::Handle::try_current().ok();
        // Folded pages go back to the reader to be freed, off the fold's path.
        let (spent, folded) = std::sync::mpsc::channel::<Page>();
        std::thread::scope(|scope| {
            let reader = scope.spawn(move || -> Result<Ledger, SessionError> {
                let _entered = runtime.as_ref().map(|r| r.enter());
                loop {
                    while folded.try_recv().is_ok() {}
                    let Some(page) = pager.next()? else { break };
                    if pages.send(page).is_err() {
                        break;
                    }
                }
                Ok(pager.ledger)
            });
            let mut consumed = Ok(());
            for page in incoming {
                match consume(&page) {
                    Ok(ControlFlow::Continue(())) => {
                        let _ = spent.send(page);
                    }
                    Ok(ControlFlow::Break(())) => break,
                    Err(e) => {
                        consumed = Err(e);
                        break;
                    }
                }
            }
            // The pages' receiver is gone: a reader still reading stops at its next page.
            let read = reader.join().map_err(|_| SessionError::TaskFailed {
                task: "replay reader",
                why: "it panicked".into(),
            })?;
            consumed.and(read)
        })
    }
}

/// Reads a range page by page.
struct Pager<'j> {
    journal: &'j Arc<dyn Journal>,
    log: LogId,
    batch: usize,
    upto: Option<u64>,
    fold: bool,
    next: u64,
    done: bool,
    ledger: Ledger,
}

impl Pager<'_> {
    fn next(&mut self) -> Result<Option<Page>, SessionError> {
        let limit = match self.upto {
            Some(upto) => self.batch.min(upto.saturating_sub(self.next) as usize),
            None => self.batch,
        };
        if self.done || limit == 0 {
            return Ok(None);
        }
        let page = blocking(self.journal.read(self.log, self.next, limit))?;
        // A short page is the end of the log.
        self.done = page.len() < limit;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        self.next = last.event.seq + 1;
        let mut events: Vec<Event> = page.into_iter().map(|s| s.event).collect();
        if !self.fold {
            return Ok(Some(Page {
                created: None,
                batch: GuestBatch::new(&[]),
                events,
            }));
        }
        let first = events.first().map_or(0, |e| e.seq);
        for event in &events {
            if let EventBody::Unparked { skip: Some(s), .. } = &event.body
                && *s < first
                && !self.ledger.skipped.contains(s)
            {
                let missed = self.ledger.missed_skip.map_or(*s, |m| m.min(*s));
                self.ledger.missed_skip = Some(missed);
            }
            self.ledger.note(event);
        }
        let created = match events.first() {
            Some(Event {
                seq: 0,
                body: EventBody::Created(created),
                at,
            }) => Some((created.clone(), *at)),
            _ => None,
        };
        if created.is_some() {
            events.remove(0);
        }
        let skipped = &self.ledger.skipped;
        Ok(Some(Page {
            created,
            batch: GuestBatch::of(events.iter().filter(|e| !skipped.contains(&e.seq))),
            events: Vec::new(),
        }))
    }
}

fn faulted<B>(e: GuestError) -> Result<Walked<B>, SessionError> {
    if e.is_guest_fault() {
        Ok(Walked::Faulted(e))
    } else {
        Err(e.into())
    }
}
