//! Sessions: one actor per active log, and the host that keeps them.
//!
//! A session is its log. The [`Host`] activates a session's actor when
//! something needs it: the actor replays the log into a fresh guest instance,
//! then advances it: every new event is staged, folded into the guest, and the
//! guest's wanted effects are reconciled against the log; the staged events
//! commit in one durable append, and only then are effects performed and
//! callers answered. One actor per log per process; the journal refuses any
//! append whose expected seq is stale, so two writers can never interleave.

mod actor;
mod blobs;
mod claude_code;
mod elsewhere;
mod feed;
mod import_from;
mod keys;
mod limits;
mod logops;
mod memory;
pub mod otel;
mod perform;
mod replay;
mod residency;
mod snapshot;
mod stop;
mod sweep;
mod unpark;
mod upgrade;
mod workspace;

pub use self::feed::{FedEvent, Follower};
pub use self::import_from::{CLAUDE_CODE_SENDER, ForeignImport};
pub use self::logops::ForkOptions;
pub use self::snapshot::SnapshotCheck;
pub use self::upgrade::{Difference, ReplayReport};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::Config;
use crate::effects::{ModelRegistry, ToolRegistry};
use crate::guest::{GuestEngine, GuestError};
use crate::journal::{
    Commit, ContentBlock, Created, GuestRef, Journal, JournalConfig, JournalError, LogId, LogInfo,
    NewLog, RedbJournal, Sender,
};

/// Errors of sessions and the host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No session by that id or name.
    #[error("no session {0:?}")]
    UnknownSession(String),
    /// No guest by that name or digest.
    #[error("no guest {0:?}")]
    UnknownGuest(String),
    /// A session by that name exists already.
    #[error("a session named {0:?} exists already")]
    NameTaken(String),
    /// The session has finished; it takes no more input.
    #[error("session has finished: {0}")]
    Finished(String),
    /// The session's guest failed; it is parked until its guest is fixed.
    #[error("session is parked because its guest failed: {0}")]
    Parked(String),
    /// The session is stopped already.
    #[error("session {0:?} is stopped already")]
    AlreadyStopped(String),
    /// The session is not stopped: there is nothing to resume.
    #[error("session {0:?} is not stopped")]
    NotStopped(String),
    /// The session is not parked: there is nothing to unpark.
    #[error("session {0:?} is not parked (its guest has not failed)")]
    NotParked(String),
    /// An unpark that does not say why. The caller's fault.
    #[error("say why the session is unparked: a reason is required")]
    NoReason,
    /// A stop was asked without a reason: the log must say why.
    #[error("say why the session is stopped: a reason is required")]
    NoStopReason,
    /// An unpark's skip that names no input of the log. The caller's fault.
    #[error("seq {seq} cannot be skipped: {why}")]
    BadSkip {
        /// The seq asked for.
        seq: u64,
        /// Why not.
        why: String,
    },
    /// An event is larger than the tenant's `[limits] max_event_bytes`:
    /// nothing was written.
    #[error("the {what} is {bytes} bytes, over the limit max_event_bytes = {limit}")]
    TooLarge {
        /// What was too large (`input`, …).
        what: &'static str,
        /// Its size: the bytes of its canonical JSON.
        bytes: usize,
        /// The limit in force.
        limit: usize,
    },
    /// Nothing is waiting for a decision under that key.
    #[error("no pending approval {0:?}")]
    NoPendingApproval(String),
    /// That approval was decided already.
    #[error("approval {0:?} was decided already")]
    AlreadyDecided(String),
    /// A session name that breaks the naming rule. The caller's fault.
    #[error("invalid session name {0:?}: use 1-128 of a-z A-Z 0-9 - _ . /, and not a UUID")]
    BadSessionName(String),
    /// A guest name that is empty, over 128 bytes, or holds a control
    /// character. The caller's fault.
    #[error("invalid guest name {0:?}")]
    BadGuestName(String),
    /// A session's or a fork's config that is not a JSON object. The
    /// caller's fault.
    #[error("a {of}'s config must be a JSON object")]
    ConfigNotObject {
        /// What the config was for: `session` or `fork`.
        of: &'static str,
    },
    /// A request names a seq the session does not have. The caller's fault.
    #[error("session {session:?} has no seq {seq} (its last is {last})")]
    BadSeq {
        /// The session as the caller named it.
        session: String,
        /// The seq asked for.
        seq: u64,
        /// The session's last seq.
        last: u64,
    },
    /// A move to the guest the session runs on already. The caller's fault.
    #[error("session {session:?} runs on {digest} already")]
    SameGuest {
        /// The session as the caller named it.
        session: String,
        /// The guest's digest.
        digest: String,
    },
    /// A line of an import that is not a line of an export: cut short, not
    /// an event, or not chained to the line before. Nothing was written.
    #[error("line {line}: {why}")]
    BadImport {
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// An import with no events. Nothing was written.
    #[error("the file holds no events")]
    EmptyImport,
    /// An import whose log runs on a guest that is not stored here. Nothing
    /// was written.
    #[error(
        "the log runs on guest {name} ({digest}), which is not stored here: add it first with `logbook guest add {name} FILE`"
    )]
    ImportGuestMissing {
        /// The guest's name in the log.
        name: String,
        /// Its digest.
        digest: String,
    },
    /// Reading an import or writing an export failed.
    #[error("cannot {doing}: {source}")]
    Io {
        /// What was being done: `read the import`, `write the export`.
        doing: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The data directory cannot be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored log breaks a rule the journal keeps (it does not start with
    /// `created`, a parent id is not a log id, ...): the data is damaged, not
    /// the request.
    #[error("log {log} is corrupt: {why}")]
    Corrupt {
        /// The log.
        log: LogId,
        /// What is wrong.
        why: String,
    },
    /// A task of the host's own panicked or was cancelled: a bug.
    #[error("the {task} failed: {why}")]
    TaskFailed {
        /// The task: `replay reader`, `snapshot task`, ...
        task: &'static str,
        /// What its join said.
        why: String,
    },
    /// A snapshot could not be encoded (a key ledger that does not serialize,
    /// or one over 4 GiB): a bug.
    #[error("cannot encode a snapshot: {0}")]
    SnapshotEncode(String),
    /// The configuration is not usable (a journal URL that is not
    /// PostgreSQL's, ...).
    #[error("{0}")]
    Config(String),
    /// The model providers or tools the configuration names cannot be set up.
    #[error(transparent)]
    Effects(#[from] crate::effects::SetupError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The guest could not be loaded or run.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The session's actor stopped.
    #[error("session stopped")]
    Stopped,
    /// A limit on resident sessions is reached and none can be evicted.
    #[error("busy: {0}")]
    Busy(String),
    /// The session could not be activated now (its log could not be read,
    /// or its guest could not be loaded); a later request may succeed.
    #[error("session unavailable: {0}")]
    Unavailable(String),
}

/// Where a session stands, as its actor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Nothing in flight: waiting for input.
    Idle,
    /// A human decision is pending.
    WaitingApproval,
    /// Only timers further away than the horizon are pending.
    Sleeping,
    /// The session finished.
    Finished,
    /// The guest failed; the session is parked.
    Failed,
    /// The session is stopped (an operator or a limit): the host performs
    /// nothing for it until it is resumed.
    Stopped,
}

pub(crate) enum Command {
    Input {
        from: Sender,
        content: Vec<ContentBlock>,
        reply: oneshot::Sender<Result<u64, SessionError>>,
    },
    Decide {
        key: String,
        allow: bool,
        by: String,
        reason: Option<String>,
        reply: oneshot::Sender<Result<u64, SessionError>>,
    },
    Done {
        key: String,
        result: perform::Done,
    },
    WaitIdle {
        horizon: Duration,
        reply: oneshot::Sender<Activity>,
    },
    /// Append `stopped`: start nothing more (session::stop).
    Stop {
        by: String,
        reason: String,
        reply: oneshot::Sender<Result<u64, SessionError>>,
    },
    /// Append `resumed` and perform what the guest wants from here.
    Resume {
        by: String,
        reply: oneshot::Sender<Result<u64, SessionError>>,
    },
    /// Drop the guest instance and stop the actor; the log is all that remains.
    Hibernate,
    /// Hibernate unless an effect is in flight or a caller is waiting (the
    /// host has too many resident instances, or this one has been idle).
    Evict,
    /// A model call failed and will be tried again: log `event` (a
    /// `failed{retryable: true}`), then answer `ack` with whether the retry
    /// may go ahead (false when the key is no longer in flight).
    Retrying {
        key: String,
        event: crate::journal::EventBody,
        ack: oneshot::Sender<bool>,
    },
}

/// A handle on a live session's actor.
#[derive(Clone)]
pub struct Session {
    log: LogId,
    commands: mpsc::UnboundedSender<Command>,
    deltas: broadcast::Sender<crate::effects::Live>,
}

impl Session {
    /// The log's id.
    pub fn id(&self) -> LogId {
        self.log
    }

    /// Model output as it streams in, and tool progress, from now on:
    /// ephemeral, never logged (the whole response is, once, in
    /// `completed`). A receiver that falls behind gets `Lagged` and simply
    /// misses some.
    pub fn subscribe_live(&self) -> broadcast::Receiver<crate::effects::Live> {
        self.deltas.subscribe()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| SessionError::Stopped)?;
        answer.await.map_err(|_| SessionError::Stopped)
    }

    /// Append an input; answers its seq once it is durable.
    pub async fn input(
        &self,
        from: Sender,
        content: Vec<ContentBlock>,
    ) -> Result<u64, SessionError> {
        self.ask(|reply| Command::Input {
            from,
            content,
            reply,
        })
        .await?
    }

    /// Stop the session (session::stop); answers the seq of `stopped`.
    pub async fn stop(&self, by: &str, reason: &str) -> Result<u64, SessionError> {
        self.ask(|reply| Command::Stop {
            by: by.to_string(),
            reason: reason.to_string(),
            reply,
        })
        .await?
    }

    /// Resume the stopped session; answers the seq of `resumed`.
    pub async fn resume(&self, by: &str) -> Result<u64, SessionError> {
        self.ask(|reply| Command::Resume {
            by: by.to_string(),
            reply,
        })
        .await?
    }

    /// Decide a pending approval; answers the decision's seq once durable.
    pub async fn decide(
        &self,
        key: &str,
        allow: bool,
        by: &str,
        reason: Option<String>,
    ) -> Result<u64, SessionError> {
        self.ask(|reply| Command::Decide {
            key: key.to_string(),
            allow,
            by: by.to_string(),
            reason,
            reply,
        })
        .await?
    }

    /// Wait until nothing is in flight but human decisions and timers further
    /// away than `horizon`.
    pub async fn wait_idle(&self, horizon: Duration) -> Result<Activity, SessionError> {
        self.ask(|reply| Command::WaitIdle { horizon, reply }).await
    }
}

/// The runtime: journal, guest engine, model and tool registries, and the
/// live sessions of this process. Dropping it hibernates every actor; the
/// journal closes once they have stopped (or await [`Host::close`]).
pub struct Host {
    shared: Arc<Shared>,
}

/// What actors share with the host. Actors hold this, never the `Host`, so
/// that dropping the host can stop them.
pub(crate) struct Shared {
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) engine: Arc<GuestEngine>,
    pub(crate) models: ModelRegistry,
    pub(crate) tools: ToolRegistry,
    pub(crate) config: Config,
    workspaces: PathBuf,
    pub(crate) residents: residency::Residents,
    /// What resident guest instances hold against the memory budgets.
    pub(crate) memory: Arc<crate::guest::MemoryBudget>,
    waker: std::sync::OnceLock<residency::TimerWaker>,
    pub(crate) feeds: feed::Feeds,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Effects started per tenant over the last minute, on this host
    /// (session::limits).
    pub(crate) tenant_rates: std::sync::Mutex<std::collections::HashMap<String, limits::Window>>,
}

impl Shared {
    /// Count `n` effects of `tenant` at `second`; answers what the tenant's
    /// window held before them.
    pub(crate) fn tenant_effects(&self, tenant: &str, second: u64, n: u64) -> u64 {
        let mut rates = self
            .tenant_rates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Allocate the tenant's name once, not on every effectful commit.
        if !rates.contains_key(tenant) {
            rates.insert(tenant.to_string(), limits::Window::default());
        }
        let Some(window) = rates.get_mut(tenant) else {
            return 0;
        };
        let before = window.count(second);
        if n > 0 {
            window.add(second, n);
        }
        before
    }

    /// The live session of a log, activating it if needed. Activating may
    /// ask the least recently used idle sessions to hibernate, to keep the
    /// number of resident instances (host-wide and per tenant) in bounds.
    ///
    /// Returns without waiting for the replay (the actor replays on the
    /// blocking pool; commands queue meanwhile), and holds no host-wide lock
    /// across it: wakes of different logs run in parallel.
    pub(crate) async fn activate(self: &Arc<Self>, log: LogId) -> Result<Session, SessionError> {
        self.activate_if(log, false).await
    }

    /// [`Shared::activate`]; with `refuse_ended`, a log that is not resident
    /// and that the journal says has finished or parked is refused from its
    /// stored status, before anything is replayed.
    pub(crate) async fn activate_if(
        self: &Arc<Self>,
        log: LogId,
        refuse_ended: bool,
    ) -> Result<Session, SessionError> {
        if let Some(session) = self.residents.touch(log) {
            return Ok(session);
        }
        // The MCP servers' tools decide the policies the actor applies.
        self.tools.start_mcp().await?;
        let info = self
            .journal
            .info(log)
            .await?
            .ok_or_else(|| SessionError::UnknownSession(log.to_string()))?;
        if refuse_ended {
            self.refuse_ended(&info).await?;
        }
        let limits = &self.config.limits;
        let tenant_limit = self
            .config
            .tenants
            .get(&info.tenant)
            .and_then(|t| t.limits.active_instances);
        if let Some(limit) = tenant_limit
            && self.residents.staying(Some(&info.tenant)) >= limit
            && self
                .residents
                .evict_down_to(limit.saturating_sub(1), Some(&info.tenant))
                == 0
        {
            return Err(SessionError::Busy(format!(
                "tenant has {limit} active sessions, all busy"
            )));
        }
        self.residents
            .evict_down_to(limits.max_resident.saturating_sub(1), None);
        // Room for at least a page of memory: the replay is refused any
        // growth past the budgets, and the caller makes room for what it
        // was short of and tries again (`on_session`).
        self.make_room(&info.tenant, WASM_PAGE).await?;
        let tenant = info.tenant.clone();
        Ok(self
            .residents
            .get_or_start(log, &tenant, |generation, state| {
                actor::spawn(self.clone(), info, generation, state)
            }))
    }

    /// Refuse input to a log that the journal says has finished or parked,
    /// with the reason its last event gives: one short read, no replay.
    pub(super) async fn refuse_ended(&self, info: &LogInfo) -> Result<(), SessionError> {
        use crate::journal::{EventBody, LogStatus};
        if !matches!(info.status, LogStatus::Finished | LogStatus::Failed) {
            return Ok(());
        }
        let last = self
            .journal
            .read(info.id, info.next_seq.saturating_sub(1), 1)
            .await?
            .pop()
            .map(|stored| stored.event.body);
        Err(match (info.status, last) {
            (_, Some(EventBody::Finished { result, .. })) => SessionError::Finished(result),
            (_, Some(EventBody::Continued { log })) => {
                SessionError::Finished(format!("continued in log {log}"))
            }
            (_, Some(EventBody::GuestFailed { message })) => SessionError::Parked(message),
            (LogStatus::Finished, _) => SessionError::Finished("the log says so".into()),
            _ => SessionError::Parked("the log says so".into()),
        })
    }

    /// Refuse an event from outside the guest that is larger than the
    /// tenant's `max_event_bytes`, before anything is written.
    pub(crate) fn check_size(
        &self,
        tenant: &str,
        what: &'static str,
        body: &crate::journal::EventBody,
    ) -> Result<(), SessionError> {
        let limit = self.limits_for(tenant).max_event_bytes;
        let bytes = body.canonical_len();
        if bytes > limit {
            return Err(SessionError::TooLarge { what, bytes, limit });
        }
        Ok(())
    }

    /// The guest limits of a tenant: its own where it sets them, else the host's.
    pub(crate) fn limits_for(&self, tenant: &str) -> crate::config::Limits {
        let mut limits = self.config.limits.clone();
        if let Some(own) = self.config.tenants.get(tenant).map(|t| &t.limits) {
            if let Some(fuel) = own.fuel_per_event {
                limits.fuel_per_event = fuel;
            }
            if let Some(fuel) = own.fuel_per_byte {
                limits.fuel_per_byte = fuel;
            }
            if let Some(bytes) = own.max_event_bytes {
                limits.max_event_bytes = bytes;
            }
            let rates = [
                (
                    own.session_effects_per_minute,
                    &mut limits.session_effects_per_minute,
                ),
                (
                    own.session_model_calls_per_minute,
                    &mut limits.session_model_calls_per_minute,
                ),
                (own.session_model_calls, &mut limits.session_model_calls),
                (own.session_tokens, &mut limits.session_tokens),
                (
                    own.tenant_effects_per_minute,
                    &mut limits.tenant_effects_per_minute,
                ),
            ];
            for (own, limit) in rates {
                if let Some(value) = own {
                    *limit = value;
                }
            }
            if let Some(memory) = own.memory_per_instance {
                limits.memory_per_instance = memory;
            }
        }
        limits
    }

    /// Wake `log` when `until_ms` comes, if it is dormant then.
    pub(crate) fn wake_at(&self, until_ms: u64, log: LogId) {
        if let Some(waker) = self.waker.get() {
            waker.wake_at(until_ms, log);
        }
    }

    /// Wake `log` now, as an input through the HTTP API would: a resident
    /// actor absorbs what was appended to its log on its own (it watches the
    /// head), a dormant log is activated, and one another worker leases is
    /// left to that worker, which the journal notifies.
    pub(crate) fn wake(self: &Arc<Self>, log: LogId) {
        let shared = self.clone();
        tokio::spawn(async move {
            match shared.activate(log).await {
                Ok(_) => {}
                Err(SessionError::Journal(JournalError::Leased { .. })) => {
                    tracing::debug!(%log, "another worker advances the session woken");
                }
                Err(e) => tracing::warn!(%log, "cannot wake session: {e}"),
            }
        });
    }

    /// The directory the `fs.*` tools of a session work in.
    pub(crate) fn workspace_dir(&self, log: LogId) -> PathBuf {
        self.workspaces.join(log.to_string())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for resident in self.shared.residents.drain() {
            let _ = resident.session.commands.send(Command::Hibernate);
        }
    }
}

/// Options of [`Host::open`] that do not belong in the configuration file.
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// `LOGBOOK_ECHO_DELAY_MS`: how long EchoModel takes to answer.
    pub echo_delay: Option<Duration>,
    /// Commit without fsync (benchmarks of the non-durable path only).
    pub no_fsync: bool,
    /// Where compiled guests are cached; `DATA/cache` when not set.
    pub cache_dir: Option<PathBuf>,
}

impl Host {
    /// Open the data directory `data` (created if absent).
    pub fn open(
        data: &Path,
        config: Config,
        options: HostOptions,
    ) -> Result<Arc<Host>, SessionError> {
        std::fs::create_dir_all(data).map_err(|source| SessionError::DataDir {
            path: data.to_path_buf(),
            source,
        })?;
        let journal = RedbJournal::open(
            &data.join("journal.redb"),
            JournalConfig {
                max_batch_events: config.journal.max_batch_events,
                durable: !options.no_fsync,
            },
        )?;
        Host::with_journal(journal, data, config, options)
    }

    /// A host on the journal `config.journal` names: the PostgreSQL
    /// database at `url` when one is set (a worker among any number that
    /// share it), else the redb file in `data` ([`Host::open`]).
    pub async fn open_configured(
        data: &Path,
        config: Config,
        options: HostOptions,
    ) -> Result<Arc<Host>, SessionError> {
        let Some(url) = config.journal.url.clone() else {
            return Host::open(data, config, options);
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(SessionError::Config(format!(
                "the journal URL {} is not a PostgreSQL one: postgres://USER:PASSWORD@HOST:PORT/DB \
                 (leave it out for the redb file in the data directory)",
                crate::journal::redacted_url(&url)
            )));
        }
        std::fs::create_dir_all(data).map_err(|source| SessionError::DataDir {
            path: data.to_path_buf(),
            source,
        })?;
        let settings = &config.journal;
        let pg = crate::journal::PgConfig {
            lease_ttl_ms: settings.lease_ttl_ms,
            max_batch_events: settings.max_batch_events,
            pool_size: settings.pool_size,
            ..crate::journal::PgConfig::default()
        };
        let journal = crate::journal::PgJournal::connect(&url, pg).await?;
        Host::with_journal(journal, data, config, options)
    }

    /// A host on any journal (another backend, or one wrapped for a test);
    /// `data` holds what is local to this host: the compiled-guest cache and
    /// the `fs.*` tool workspaces.
    pub fn with_journal(
        journal: Arc<dyn Journal>,
        data: &Path,
        config: Config,
        options: HostOptions,
    ) -> Result<Arc<Host>, SessionError> {
        let cache = options.cache_dir.unwrap_or_else(|| data.join("cache"));
        let engine = GuestEngine::new(config.limits.clone(), Some(cache))?;
        let models = ModelRegistry::for_config(&config, options.echo_delay)?;
        let tools = ToolRegistry::for_config(&config)?;
        let memory = crate::guest::MemoryBudget::new(config.limits.memory_budget_bytes);
        let shared = Arc::new(Shared {
            journal,
            engine,
            models,
            tools,
            config,
            workspaces: data.join("workspaces"),
            residents: residency::Residents::default(),
            memory,
            waker: std::sync::OnceLock::new(),
            feeds: feed::Feeds::default(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            tenant_rates: std::sync::Mutex::default(),
        });
        let weak = Arc::downgrade(&shared);
        let waker = residency::TimerWaker::start(move |log| match weak.upgrade() {
            Some(shared) => {
                // Only enqueue: the activation reads the journal, which may
                // be a database away, on a task of its own.
                tokio::spawn(async move {
                    if let Err(e) = shared.activate(log).await {
                        tracing::warn!(%log, "cannot wake session for its timer: {e}");
                    }
                });
                true
            }
            None => false,
        });
        let _ = shared.waker.set(waker);
        Ok(Arc::new(Host { shared }))
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.shared.journal
    }

    /// The guest engine.
    pub fn engine(&self) -> &Arc<GuestEngine> {
        &self.shared.engine
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Validate a component and store it under `name` for `tenant`.
    pub async fn add_guest(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<GuestRef, SessionError> {
        if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
            return Err(SessionError::BadGuestName(name.to_string()));
        }
        let digest = crate::journal::digest_of(bytes);
        // Compiling a component takes a while: not on an async worker.
        actor::off_runtime(|| self.shared.engine.load(&digest, bytes))?;
        Ok(self.shared.journal.put_guest(tenant, name, bytes).await?)
    }

    /// A guest by name or digest. A digest resolves only to a guest that the
    /// tenant stored itself (another tenant's component is not there for it)
    /// or to a built-in example ([`crate::examples`]), which is stored for the
    /// tenant when first named.
    pub async fn guest(
        &self,
        tenant: &str,
        name_or_digest: &str,
    ) -> Result<GuestRef, SessionError> {
        if let Some(guest) = self
            .shared
            .journal
            .guest_by_name(tenant, name_or_digest)
            .await?
        {
            return Ok(guest);
        }
        if name_or_digest.starts_with("sha256:")
            && let Some(guest) = self
                .shared
                .journal
                .guests(tenant)
                .await?
                .into_iter()
                .find(|g| g.digest == name_or_digest)
        {
            return Ok(guest);
        }
        // The built-in examples are every tenant's, by name or digest; a
        // tenant's own guest of the same name comes first (above).
        let builtin = crate::examples::get(name_or_digest)
            .map(|bytes| (name_or_digest, bytes))
            .or_else(|| crate::examples::by_digest(name_or_digest));
        if let Some((example, bytes)) = builtin {
            return self.add_builtin(tenant, example, bytes).await;
        }
        Err(SessionError::UnknownGuest(name_or_digest.to_string()))
    }

    /// Store a built-in example for `tenant`: under its name when the tenant
    /// has no other guest of that name, else under its digest, so that a
    /// tenant's own `counter` is never rebound.
    pub(crate) async fn add_builtin(
        &self,
        tenant: &str,
        example: &str,
        bytes: &[u8],
    ) -> Result<GuestRef, SessionError> {
        let digest = crate::journal::digest_of(bytes);
        let name = match self.shared.journal.guest_by_name(tenant, example).await? {
            Some(other) if other.digest != digest => digest.as_str(),
            _ => example,
        };
        self.add_guest(tenant, name, bytes).await
    }

    /// The most sessions `tenant` may hold (`[tenants.T.limits] sessions`);
    /// `None` when it has no limit.
    pub fn session_limit(&self, tenant: &str) -> Option<u64> {
        self.shared
            .config
            .tenants
            .get(tenant)
            .and_then(|t| t.limits.sessions)
    }

    /// Create a session on `guest`, optionally named, with a JSON config.
    /// Refused with [`JournalError::LimitReached`] when the tenant holds its
    /// limit of sessions: checked in the transaction that writes it, so
    /// concurrent creates never overshoot.
    pub async fn create_session(
        &self,
        tenant: &str,
        name: Option<&str>,
        guest: GuestRef,
        config: serde_json::Value,
    ) -> Result<LogId, SessionError> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        if !config.is_object() {
            return Err(SessionError::ConfigNotObject { of: "session" });
        }
        // The new log records the tools it may use, MCP servers' included.
        self.shared.tools.start_mcp().await?;
        let id = uuid::Uuid::now_v7();
        let created = Created {
            guest,
            config,
            seed: rand::random(),
            parent: None,
            compacted_from: None,
            summary: None,
            tools: self.shared.tools.specs_for(tenant),
        };
        let commit = Commit {
            new_logs: vec![NewLog {
                id,
                tenant: tenant.to_string(),
                name: name.map(str::to_string),
                at: now_ms(),
                created,
                session_limit: self.session_limit(tenant),
            }],
            ..Commit::default()
        };
        match self.shared.journal.commit(commit).await {
            Ok(_) => Ok(id),
            Err(JournalError::NameTaken { .. }) => Err(SessionError::NameTaken(
                name.unwrap_or_default().to_string(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The log of a session id or name, checked to belong to `tenant`:
    /// cheaper than [`Host::resolve`] when only the id is needed (a name is
    /// per tenant already; a resident log's tenant is known in memory).
    pub async fn locate(&self, tenant: &str, id_or_name: &str) -> Result<LogId, SessionError> {
        let unknown = || SessionError::UnknownSession(id_or_name.to_string());
        match uuid::Uuid::parse_str(id_or_name) {
            Ok(id) => match self.shared.residents.tenant_of(id) {
                Some(owner) if owner == tenant => Ok(id),
                Some(_) => Err(unknown()),
                None => self.resolve(tenant, id_or_name).await.map(|info| info.id),
            },
            Err(_) => self
                .shared
                .journal
                .resolve(tenant, id_or_name)
                .await?
                .ok_or_else(unknown),
        }
    }

    /// Resolve a session id or name to its log.
    pub async fn resolve(&self, tenant: &str, id_or_name: &str) -> Result<LogInfo, SessionError> {
        let id = match uuid::Uuid::parse_str(id_or_name) {
            Ok(id) => Some(id),
            Err(_) => self.shared.journal.resolve(tenant, id_or_name).await?,
        };
        let info = match id {
            Some(id) => self.shared.journal.info(id).await?,
            None => None,
        };
        match info {
            Some(info) if info.tenant == tenant => Ok(info),
            _ => Err(SessionError::UnknownSession(id_or_name.to_string())),
        }
    }

    /// The live session of a log, activating it if needed.
    pub async fn session(&self, log: LogId) -> Result<Session, SessionError> {
        self.shared.activate(log).await
    }

    /// Append an input to a log, activating its session if needed; answers
    /// the input's seq once it is durable. A dormant log that has finished
    /// or parked is refused from its stored status, without a replay.
    pub async fn input(
        &self,
        log: LogId,
        from: Sender,
        content: Vec<ContentBlock>,
    ) -> Result<u64, SessionError> {
        let here = self
            .on_session(log, true, |s| {
                let (from, content) = (from.clone(), content.clone());
                async move { s.input(from, content).await }
            })
            .await;
        match here {
            Err(SessionError::Journal(JournalError::Leased { .. })) => {
                self.input_elsewhere(log, from, content).await
            }
            other => other,
        }
    }

    /// Decide a pending approval of a log; answers the decision's seq once
    /// it is durable.
    pub async fn decide(
        &self,
        log: LogId,
        key: &str,
        allow: bool,
        by: &str,
        reason: Option<String>,
    ) -> Result<u64, SessionError> {
        let here = self
            .on_session(log, false, |s| {
                let reason = reason.clone();
                async move { s.decide(key, allow, by, reason).await }
            })
            .await;
        match here {
            Err(SessionError::Journal(JournalError::Leased { .. })) => {
                self.decide_elsewhere(log, key, allow, by, reason).await
            }
            other => other,
        }
    }

    /// Wait until a log's session has nothing in flight but human decisions
    /// and timers further away than `horizon` (see [`Session::wait_idle`]).
    pub async fn wait_idle(&self, log: LogId, horizon: Duration) -> Result<Activity, SessionError> {
        self.wait_idle_since(log, None, horizon).await
    }

    /// [`Host::wait_idle`] for a caller that appended the event at seq
    /// `after`: when another worker advances the log, this waits through
    /// the journal until the log is quiescent with an event after that one.
    pub async fn wait_idle_after(
        &self,
        log: LogId,
        after: u64,
        horizon: Duration,
    ) -> Result<Activity, SessionError> {
        self.wait_idle_since(log, Some(after), horizon).await
    }

    /// [`Host::wait_idle_after`], or with `None` no event is waited for:
    /// the log need only be quiescent.
    async fn wait_idle_since(
        &self,
        log: LogId,
        after: Option<u64>,
        horizon: Duration,
    ) -> Result<Activity, SessionError> {
        match self
            .on_session(log, false, |s| async move { s.wait_idle(horizon).await })
            .await
        {
            // No actor here could take the log: it is advanced elsewhere.
            Err(SessionError::Stopped) => self.wait_idle_elsewhere(log, after, horizon).await,
            other => other,
        }
    }

    /// Run `op` on the log's actor, and again on a fresh one (up to
    /// [`ON_SESSION_TRIES`] in all) if that actor stopped having written
    /// nothing of it: evicted between lookup and call, fenced, or beaten to
    /// the log's head by another writer. With `input`, a dormant finished or parked log is
    /// refused without activating it.
    async fn on_session<T, F, Fut>(&self, log: LogId, input: bool, op: F) -> Result<T, SessionError>
    where
        F: Fn(Session) -> Fut,
        Fut: std::future::Future<Output = Result<T, SessionError>>,
    {
        let session = || self.shared.activate_if(log, input);
        let mut tries = 1;
        let mut room_tries = 1;
        loop {
            match op(session().await?).await {
                // The actor was refused memory where nothing of this request
                // was written (its replay, or the fold of this input):
                // hibernate idle instances for what it was short of, and go
                // again on a fresh actor.
                Err(e) if room_tries < memory::ROOM_TRIES && memory::refused_for(&e).is_some() => {
                    room_tries += 1;
                    let short =
                        memory::refused_for(&e).map_or(0, |s| s.instance.saturating_add(s.wanted));
                    let tenant = match self.shared.residents.tenant_of(log) {
                        Some(tenant) => tenant,
                        None => {
                            self.shared
                                .journal
                                .info(log)
                                .await?
                                .ok_or_else(|| SessionError::UnknownSession(log.to_string()))?
                                .tenant
                        }
                    };
                    self.shared.make_room(&tenant, short).await?;
                }
                // The actor stopped having written nothing of this request:
                // it was evicted, its lease was taken (fenced), or another
                // writer appended first (conflict; its guest had folded
                // what it could not log). A fresh actor replays and goes on.
                Err(
                    SessionError::Stopped
                    | SessionError::Journal(
                        JournalError::Fenced { .. } | JournalError::Conflict { .. },
                    ),
                ) if tries < ON_SESSION_TRIES => tries += 1,
                other => return other,
            }
        }
    }

    /// Drop a session's actor and guest instance now. Effects in flight are
    /// abandoned; the next activation resumes them from the log.
    pub fn hibernate(&self, log: LogId) {
        if let Some(resident) = self.shared.residents.take(log) {
            let _ = resident.session.commands.send(Command::Hibernate);
            self.shared.residents.stopping(resident.task);
        }
    }

    /// Stop every actor and wait for them. Commits in flight finish first
    /// (each actor handles its commands in order); effects in flight are
    /// abandoned and resume from the log on the next activation. Once the
    /// last `Arc<Host>` is dropped after this, the journal is closed.
    pub async fn close(&self) {
        let residents = self.shared.residents.drain();
        for resident in &residents {
            let _ = resident.session.commands.send(Command::Hibernate);
        }
        for resident in residents {
            let _ = resident.task.await;
        }
        // Actors told to hibernate earlier may still be on their way out,
        // holding the journal: the data directory is free once they are gone.
        for task in self.shared.residents.take_stopping() {
            let _ = task.await;
        }
    }

    /// Follow a log as its events become durable: its head, and reads of
    /// its events shared with every other observer of the log in this host.
    /// Needs no guest: a dormant session can be followed.
    pub async fn follow(&self, log: LogId) -> Result<Follower, SessionError> {
        let info = self
            .shared
            .journal
            .info(log)
            .await?
            .ok_or_else(|| SessionError::UnknownSession(log.to_string()))?;
        Ok(self.shared.feeds.follow(log, info.next_seq))
    }

    /// Up to `limit` durable events of a followed log from seq `from`, each
    /// read and encoded once for all of the log's observers.
    pub async fn read_followed(
        &self,
        follower: &Follower,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Arc<FedEvent>>, SessionError> {
        Ok(follower
            .read(&*self.shared.journal, &self.shared.metrics, from, limit)
            .await?)
    }

    /// Wait until a followed log holds an event at seq `from` or later,
    /// whoever appended it (an actor here, or on another worker sharing the
    /// journal); `false` when the host is gone.
    pub async fn wait_followed(&self, follower: &mut Follower, from: u64) -> bool {
        follower.changed(&*self.shared.journal, from).await
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    /// The session of a log if it is resident now; never activates it.
    pub fn resident(&self, log: LogId) -> Option<Session> {
        self.shared.residents.peek(log)
    }

    /// How many sessions have a live actor and guest instance (of `tenant`,
    /// when given).
    pub fn resident_sessions(&self, tenant: Option<&str>) -> usize {
        self.shared.residents.count(tenant)
    }

    /// Bytes of linear memory the resident guest instances hold (of
    /// `tenant`, when given), as counted against the memory budgets.
    pub fn guest_memory(&self, tenant: Option<&str>) -> usize {
        match tenant {
            Some(t) => self.shared.memory.tenant_used(t),
            None => self.shared.memory.used(),
        }
    }

    /// Resume, after a restart, every log that the journal says has effects
    /// in flight: activate those with a model or tool call open (it is
    /// re-run or recorded as interrupted), and schedule a wake-up for those
    /// that only sleep. Logs waiting for a human stay dormant.
    pub async fn resume_all(&self) -> Result<usize, SessionError> {
        let mut resumed = 0;
        let mut after = None;
        loop {
            let page = self.shared.journal.open_logs(after, RESUME_PAGE).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(*last);
            for log in page {
                if self.resume_open(log).await? {
                    resumed += 1;
                }
            }
        }
        Ok(resumed)
    }

    /// Resume one log with open effects; whether it was activated. A
    /// stopped log is not: nothing of it runs until it is resumed.
    async fn resume_open(&self, log: LogId) -> Result<bool, SessionError> {
        let Some(info) = self.shared.journal.info(log).await? else {
            return Ok(false);
        };
        if info.stopped {
            return Ok(false);
        }
        let mut wake_at = None;
        let mut now = false;
        for open in &info.open {
            match &open.effect {
                crate::journal::RequestedEffect::Sleep { until } => {
                    wake_at = Some(wake_at.map_or(*until, |w: u64| w.min(*until)));
                }
                _ if open.awaiting_approval => {}
                crate::journal::RequestedEffect::Ask(_) => {}
                _ => now = true,
            }
        }
        if now {
            self.shared.activate(log).await?;
            return Ok(true);
        }
        if let Some(until) = wake_at {
            self.shared.wake_at(until, log);
        }
        Ok(false)
    }

    /// The directory the `fs.*` tools of a session work in.
    pub fn workspace_dir(&self, log: LogId) -> PathBuf {
        self.shared.workspace_dir(log)
    }
}

/// A WebAssembly page: the least room an activation asks for.
const WASM_PAGE: usize = 64 << 10;

/// How many actors one request may go to before its error is answered.
const ON_SESSION_TRIES: usize = 3;

/// How many logs with open effects [`Host::resume_all`] reads at a time.
const RESUME_PAGE: usize = 1024;

fn validate_name(name: &str) -> Result<(), SessionError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && uuid::Uuid::parse_str(name).is_err()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(SessionError::BadSessionName(name.to_string()))
    }
}

/// The host's clock, in unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
