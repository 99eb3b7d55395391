//! The `logbook` command line: parsing, and a thin layer over the library.

mod logops;
mod migrate;
mod remote;
mod run;
mod serve;
mod show;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::journal::{ChainPos, JournalError, LogId, LogInfo, StoredEvent};
use crate::session::{Host, HostOptions};

/// The tenant the command line acts as when it works on a data directory.
pub(crate) const CLI_TENANT: &str = crate::journal::DEFAULT_TENANT;

/// Logbook: durable AI agents on WebAssembly. The log is the agent.
#[derive(Parser, Debug)]
#[command(name = "logbook", version, about)]
pub struct Cli {
    /// The data directory: the journal, compiled guests, tool workspaces.
    #[arg(long, global = true, default_value = ".logbook", env = "LOGBOOK_DATA")]
    data: PathBuf,
    /// A TOML configuration file (default: DATA/logbook.toml when present).
    #[arg(long, global = true, env = "LOGBOOK_CONFIG")]
    config: Option<PathBuf>,
    /// Talk to a Logbook server instead of a data directory (sessions, send,
    /// log, approve, deny, unpark, stop, resume); the bearer token is read
    /// from LOGBOOK_TOKEN.
    #[arg(long, global = true, env = "LOGBOOK_URL")]
    url: Option<String>,
    /// The journal in a PostgreSQL database that any number of workers share
    /// (postgres://USER:PASSWORD@HOST:PORT/DB), instead of DATA/journal.redb;
    /// overrides `[journal] url`. The data directory still holds this
    /// worker's compiled guests and tool workspaces.
    #[arg(long, global = true, env = "LOGBOOK_JOURNAL")]
    journal: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a session until it is idle: create it if new, append inputs, print outputs.
    Run(run::RunArgs),
    /// Serve the HTTP API over the data directory.
    Serve(serve::ServeArgs),
    /// Append an input to a session (with --wait, print its outputs).
    Send(SendArgs),
    /// Show a session's log.
    Log(show::LogArgs),
    /// List sessions: name, id, status, events.
    Sessions,
    /// Allow a pending tool call or answer yes to a question.
    Approve(run::DecideArgs),
    /// Deny a pending tool call or answer no to a question.
    Deny(run::DenyArgs),
    /// Validate a guest component and store it under a name.
    #[command(subcommand)]
    Guest(GuestCommand),
    /// Measure wake, step, throughput, memory and turn latency.
    Bench(BenchArgs),
    /// Fork a session: a new log sharing its events up to a seq (none copied).
    Fork(logops::ForkArgs),
    /// Write a session's whole log as JSONL, one event a line with its hash.
    Export(logops::ExportArgs),
    /// Import an exported log as a new session, after checking its chain.
    Import(logops::ImportArgs),
    /// Recompute sessions' hash chains; exit 1 when any does not hold.
    Verify(logops::VerifyArgs),
    /// Move a session to another guest version (appends `guest-changed`).
    Upgrade(logops::UpgradeArgs),
    /// Let a session whose guest failed go on (appends `unparked`), skipping
    /// an input for good with --skip SEQ.
    Unpark(run::UnparkArgs),
    /// Stop a session (appends `stopped`): the host starts none of its
    /// effects and fires none of its timers until `logbook resume`.
    Stop(run::StopArgs),
    /// Let a stopped session go on (appends `resumed`).
    Resume(run::ResumeArgs),
    /// Run a guest over a session's log, performing nothing; exit 1 at the first difference.
    Replay(logops::ReplayArgs),
    /// Copy a data directory's journal into PostgreSQL: every log with its id and
    /// hashes, every guest, name and snapshot. Resumable.
    Migrate(migrate::MigrateArgs),
}

#[derive(Subcommand, Debug)]
enum GuestCommand {
    /// Validate a component and store it under a name.
    Add {
        /// The name sessions will use.
        name: String,
        /// The component (.wasm).
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct SendArgs {
    /// The session's name or id.
    session: String,
    /// The text to send.
    text: String,
    /// Wait until the session is idle again and print its outputs.
    #[arg(long)]
    wait: bool,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Run only these benchmarks (wake, wake-concurrent, step, throughput,
    /// memory, turn, http-turn, http, fork, wake-snapshot, export, read,
    /// failover). With --journal postgres://… each runs on a database of
    /// its own, created and dropped on that server.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Smaller sizes, for a quick look.
    #[arg(long)]
    quick: bool,
    /// The lease TTL of the workers the failover bench starts (PostgreSQL).
    #[arg(long, default_value_t = crate::bench::DEFAULT_FAILOVER_LEASE_TTL_MS)]
    lease_ttl_ms: u64,
}

/// Run the command line; returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Read before tracing starts: `[telemetry]` says where spans go. With
    // --url nothing local is read.
    let config = match &cli.url {
        Some(_) => None,
        None => match Config::load(cli.config.as_deref(), &cli.data) {
            Ok(config) => Some(config),
            Err(e) => return fail(e.to_string()),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let telemetry = config
        .as_ref()
        .map(|c| c.telemetry.clone())
        .unwrap_or_default();
    // Dropped before the runtime: it flushes the exporter's last spans on it.
    let _telemetry = match crate::telemetry::init(&telemetry, runtime.handle()) {
        Ok(telemetry) => telemetry,
        Err(e) => return fail(e.to_string()),
    };
    match runtime.block_on(dispatch(cli, config)) {
        Ok(code) => code,
        Err(e) => fail(e.to_string()),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn dispatch(cli: Cli, config: Option<Config>) -> anyhow::Result<ExitCode> {
    let Cli {
        data,
        url,
        journal,
        command,
        ..
    } = cli;
    if let Some(url) = url {
        return remote(&url, command).await;
    }
    let mut config = config.ok_or_else(|| anyhow!("no configuration was read"))?;
    if journal.is_some() {
        config.journal.url = journal;
    }
    match command {
        Command::Serve(args) => serve::serve(&data, config, args).await,
        Command::Send(args) => {
            let host = open_existing(&data, config).await?;
            run::send(&host, &args.session, &args.text, args.wait).await
        }
        Command::Run(args) => run::run(&data, config, args).await,
        Command::Log(args) => show::log(&open_existing(&data, config).await?, args).await,
        Command::Sessions => show::sessions(&open_existing(&data, config).await?).await,
        Command::Approve(args) => {
            run::decide(&open_existing(&data, config).await?, args, true, None).await
        }
        Command::Deny(args) => {
            let reason = args.reason.clone();
            run::decide(
                &open_existing(&data, config).await?,
                args.decision,
                false,
                reason,
            )
            .await
        }
        Command::Guest(GuestCommand::Add { name, file }) => {
            let bytes =
                std::fs::read(&file).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
            let host = open(&data, config).await?;
            let guest = host
                .add_guest(CLI_TENANT, &name, &bytes)
                .await
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            println!("{} {}", guest.name, guest.digest);
            Ok(ExitCode::SUCCESS)
        }
        Command::Fork(args) => logops::fork(&open_existing(&data, config).await?, args).await,
        Command::Export(args) => logops::export(&open_existing(&data, config).await?, args).await,
        Command::Import(args) => logops::import(&open(&data, config).await?, args).await,
        Command::Verify(args) => logops::verify(&open_existing(&data, config).await?, args).await,
        Command::Upgrade(args) => logops::upgrade(&open_existing(&data, config).await?, args).await,
        Command::Replay(args) => logops::replay(&open_existing(&data, config).await?, args).await,
        Command::Unpark(args) => run::unpark(&open_existing(&data, config).await?, args).await,
        Command::Stop(args) => run::stop(&open_existing(&data, config).await?, args).await,
        Command::Resume(args) => run::resume(&open_existing(&data, config).await?, args).await,
        Command::Migrate(args) => migrate::migrate(&config, args).await,
        Command::Bench(args) => {
            let options = crate::bench::BenchOptions {
                only: args.only,
                quick: args.quick,
                lease_ttl_ms: args.lease_ttl_ms,
            };
            crate::bench::run(config, options, args.json).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The commands that work against a server.
async fn remote(url: &str, command: Command) -> anyhow::Result<ExitCode> {
    let remote = remote::Remote::new(url)?;
    match command {
        Command::Sessions => remote::sessions(&remote).await,
        Command::Send(args) => remote::send(&remote, &args.session, &args.text, args.wait).await,
        Command::Log(args) => remote::log(&remote, &args.session, args.json, args.follow).await,
        Command::Approve(args) => {
            remote::decide(&remote, &args.session, &args.key, true, None).await
        }
        Command::Deny(args) => {
            let d = args.decision;
            remote::decide(&remote, &d.session, &d.key, false, args.reason).await
        }
        Command::Unpark(args) => {
            remote::unpark(&remote, &args.session, args.skip, &args.reason).await
        }
        Command::Stop(args) => remote::stop(&remote, &args.session, &args.reason).await,
        Command::Resume(args) => remote::resume(&remote, &args.session).await,
        _ => Err(anyhow!(
            "with --url, the commands are sessions, send, log, approve, deny, unpark, stop and resume; the others work on a data directory"
        )),
    }
}

/// Logs read from the journal per page by the commands that walk them all.
const LIST_PAGE: usize = 1000;

/// Events read from the journal per page by the commands that print them.
const EVENT_PAGE: usize = 1024;

/// Up to `limit` of `log`'s events from `pos`, each checked against its
/// predecessor as it is read (and `pos` moved past them): the events before
/// one that does not hold, then an error that names it. `session` is what
/// the user called the session, for the message.
pub(crate) async fn read_checked(
    host: &Host,
    session: &str,
    log: LogId,
    pos: &mut ChainPos,
    limit: usize,
) -> anyhow::Result<Vec<StoredEvent>> {
    host.journal()
        .read_checked(log, pos, limit)
        .await
        .map_err(|e| match e {
            JournalError::ChainBroken { seq, why, .. } => anyhow!(
                "the log of {session} ({log}) breaks its hash chain at seq {seq}: {why}; \
                 it was altered or damaged after it was written and is not read from there on \
                 (`logbook verify {session}` checks all of it)"
            ),
            e => e.into(),
        })
}

/// Every log of the CLI's tenant, in creation order, a page at a time.
pub(crate) struct LogPages<'h> {
    host: &'h Host,
    after: Option<LogId>,
    done: bool,
}

impl<'h> LogPages<'h> {
    pub(crate) fn new(host: &'h Host) -> Self {
        LogPages {
            host,
            after: None,
            done: false,
        }
    }

    /// The next page; `None` after the last.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<Vec<LogInfo>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .host
            .journal()
            .list_page(CLI_TENANT, self.after, LIST_PAGE)
            .await?;
        self.after = page.next;
        self.done = page.next.is_none();
        Ok(Some(page.logs))
    }
}

/// Open the data directory, creating it if needed, and the journal the
/// configuration names (redb in the data directory by default).
pub(crate) async fn open(data: &Path, config: Config) -> anyhow::Result<Arc<Host>> {
    let echo_delay = match std::env::var("LOGBOOK_ECHO_DELAY_MS") {
        Ok(ms) => Some(std::time::Duration::from_millis(ms.parse().map_err(
            |_| anyhow!("LOGBOOK_ECHO_DELAY_MS must be a number of milliseconds, not {ms:?}"),
        )?)),
        Err(_) => None,
    };
    let options = HostOptions {
        echo_delay,
        ..HostOptions::default()
    };
    Host::open_configured(data, config, options)
        .await
        .map_err(anyhow::Error::from)
}

/// Open a data directory that must exist already (commands that only read or
/// act on existing sessions write nothing when it does not).
async fn open_existing(data: &Path, config: Config) -> anyhow::Result<Arc<Host>> {
    if config.journal.url.is_none() && !data.join("journal.redb").exists() {
        return Err(anyhow!(
            "no Logbook data in {} (start a session with `logbook run GUEST --session NAME`, or pass --data)",
            data.display()
        ));
    }
    open(data, config).await
}
