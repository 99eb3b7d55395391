//! `logbook run`, `send`, `approve`, `deny`, `unpark`, `stop` and `resume`: drive a session
//! until it is idle.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

use super::CLI_TENANT;
use crate::config::Config;
use crate::journal::{
    ChainPos, ContentBlock, EventBody, LogId, LogInfo, Sender, StoredEvent, plain_text,
};
use crate::session::{Activity, Host, Session};

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// A `.wasm` component, a stored guest's name, or an example (`counter`,
    /// `assistant`). Leave out to resume an existing session.
    guest: Option<String>,
    /// The session's name.
    #[arg(long)]
    session: String,
    /// An input to append (repeatable; each runs until idle before the next).
    #[arg(long = "input", short = 'i')]
    inputs: Vec<String>,
    /// The session's configuration, as a JSON object (new sessions only).
    #[arg(long = "session-config")]
    session_config: Option<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DecideArgs {
    /// The session's name or id.
    pub(crate) session: String,
    /// The key of the pending approval (see `logbook log`).
    pub(crate) key: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DenyArgs {
    #[command(flatten)]
    pub(crate) decision: DecideArgs,
    /// Why, for the model to read.
    #[arg(long)]
    pub(crate) reason: Option<String>,
}

pub(crate) async fn run(data: &Path, config: Config, args: RunArgs) -> anyhow::Result<ExitCode> {
    let session_config = match &args.session_config {
        Some(text) => serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| anyhow!("--session-config is not JSON: {e}"))?,
        None => serde_json::json!({}),
    };
    let host = match &args.guest {
        Some(_) => super::open(data, config).await?,
        None => super::open_existing(data, config).await?,
    };
    let info = match host.resolve(CLI_TENANT, &args.session).await {
        Ok(info) => {
            if let Some(guest) = &args.guest {
                let wanted = guest_ref(&host, guest).await?;
                if wanted.digest != info.guest.digest {
                    return Err(anyhow!(
                        "session {} runs guest {} ({}), not {guest} ({})",
                        args.session,
                        info.guest.name,
                        info.guest.digest,
                        wanted.digest
                    ));
                }
            }
            info
        }
        Err(crate::session::SessionError::UnknownSession(_)) => {
            let Some(guest) = &args.guest else {
                return Err(anyhow!(
                    "no session {:?}: name a guest to create it (logbook run counter --session {})",
                    args.session,
                    args.session
                ));
            };
            let guest = guest_ref(&host, guest).await?;
            let id = host
                .create_session(CLI_TENANT, Some(&args.session), guest, session_config)
                .await?;
            host.resolve(CLI_TENANT, &id.to_string()).await?
        }
        Err(e) => return Err(e.into()),
    };
    let mut info = info;
    let mut printer = Printer::new(&host, &args.session, &info).await?;
    let mut session = host.session(info.id).await?;
    let horizon = Duration::from_millis(host.config().run.timer_horizon_ms);
    let mut activity = settle(&session, horizon, &mut printer).await?;
    for text in &args.inputs {
        // A compaction moves the name to a new log: the next input goes there.
        if let Ok(now) = host.resolve(CLI_TENANT, &args.session).await
            && now.id != info.id
        {
            info = now;
            printer = Printer::new(&host, &args.session, &info).await?;
            session = host.session(info.id).await?;
            settle(&session, horizon, &mut printer).await?;
        }
        let content = vec![ContentBlock::text(text.clone())];
        session
            .input(Sender::Principal("cli".into()), content)
            .await?;
        activity = settle(&session, horizon, &mut printer).await?;
    }
    report(&host, &info, activity).await
}

pub(crate) async fn decide(
    host: &Arc<Host>,
    args: DecideArgs,
    allow: bool,
    reason: Option<String>,
) -> anyhow::Result<ExitCode> {
    let info = host.resolve(CLI_TENANT, &args.session).await?;
    let mut printer = Printer::new(host, &args.session, &info).await?;
    let session = host.session(info.id).await?;
    let horizon = Duration::from_millis(host.config().run.timer_horizon_ms);
    settle(&session, horizon, &mut printer).await?;
    session.decide(&args.key, allow, "cli", reason).await?;
    let activity = settle(&session, horizon, &mut printer).await?;
    report(host, &info, activity).await
}

/// `logbook send` on a data directory: one input, then (with `wait`) run
/// until idle and print the outputs.
pub(crate) async fn send(
    host: &Arc<Host>,
    session: &str,
    text: &str,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let info = host.resolve(CLI_TENANT, session).await?;
    let mut printer = Printer::new(host, session, &info).await?;
    let live = host.session(info.id).await?;
    let seq = live
        .input(
            Sender::Principal("cli".into()),
            vec![ContentBlock::text(text)],
        )
        .await?;
    if !wait {
        eprintln!("appended at seq {seq}");
        return Ok(ExitCode::SUCCESS);
    }
    let horizon = Duration::from_millis(host.config().run.timer_horizon_ms);
    let activity = settle(&live, horizon, &mut printer).await?;
    report(host, &info, activity).await
}

#[derive(clap::Args, Debug)]
pub(crate) struct UnparkArgs {
    /// The session's name or id.
    pub(crate) session: String,
    /// The seq of an input the guest is never to see again (the one it
    /// failed on, see `logbook log`). Leave out to let the guest try again
    /// (after limits were raised, say).
    #[arg(long)]
    pub(crate) skip: Option<u64>,
    /// Why: recorded in the log with the decision.
    #[arg(long)]
    pub(crate) reason: String,
}

/// `logbook unpark` on a data directory: append `unparked`, then run the
/// session until idle and print its outputs.
pub(crate) async fn unpark(host: &Arc<Host>, args: UnparkArgs) -> anyhow::Result<ExitCode> {
    let info = host.resolve(CLI_TENANT, &args.session).await?;
    let mut printer = Printer::new(host, &args.session, &info).await?;
    let seq = host
        .unpark(CLI_TENANT, &args.session, args.skip, "cli", &args.reason)
        .await?;
    match args.skip {
        Some(skip) => eprintln!("unparked at seq {seq}; seq {skip} is skipped for good"),
        None => eprintln!("unparked at seq {seq}"),
    }
    let live = host.session(info.id).await?;
    let horizon = Duration::from_millis(host.config().run.timer_horizon_ms);
    let activity = settle(&live, horizon, &mut printer).await?;
    report(host, &info, activity).await
}

#[derive(clap::Args, Debug)]
pub(crate) struct StopArgs {
    /// The session's name or id.
    pub(crate) session: String,
    /// Why: recorded in the log with the stop.
    #[arg(long)]
    pub(crate) reason: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ResumeArgs {
    /// The session's name or id.
    pub(crate) session: String,
}

/// `logbook stop` on a data directory: append `stopped`.
pub(crate) async fn stop(host: &Arc<Host>, args: StopArgs) -> anyhow::Result<ExitCode> {
    let seq = host
        .stop(CLI_TENANT, &args.session, "cli", &args.reason)
        .await?;
    eprintln!("stopped at seq {seq}");
    Ok(ExitCode::SUCCESS)
}

/// `logbook resume` on a data directory: append `resumed`, then run the
/// session until idle and print its outputs.
pub(crate) async fn resume(host: &Arc<Host>, args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let info = host.resolve(CLI_TENANT, &args.session).await?;
    let mut printer = Printer::new(host, &args.session, &info).await?;
    let seq = host.resume(CLI_TENANT, &args.session, "cli").await?;
    eprintln!("resumed at seq {seq}");
    let live = host.session(info.id).await?;
    let horizon = Duration::from_millis(host.config().run.timer_horizon_ms);
    let activity = settle(&live, horizon, &mut printer).await?;
    report(host, &info, activity).await
}

/// Wait until idle, then print the outputs logged meanwhile.
///
/// A session that sent to others (its `send` effects) is settled again
/// once they are: whatever they sent back (a reply) is then in its log, and
/// what it made of it is printed too. Each round follows new sends only,
/// and a chain of sends is bounded by `[limits] max_send_hops`.
async fn settle(
    session: &Session,
    horizon: Duration,
    printer: &mut Printer,
) -> anyhow::Result<Activity> {
    loop {
        let activity = session.wait_idle(horizon).await?;
        let targets = printer.print_new().await?;
        if targets.is_empty() {
            return Ok(activity);
        }
        for target in targets {
            if target != session.id() {
                printer.host.wait_idle(target, horizon).await?;
            }
        }
    }
}

/// Say on stderr why the session stopped, and choose the exit code.
async fn report(host: &Host, info: &LogInfo, activity: Activity) -> anyhow::Result<ExitCode> {
    let fresh = host
        .journal()
        .info(info.id)
        .await?
        .unwrap_or_else(|| info.clone());
    let name = fresh.name.clone().unwrap_or_else(|| fresh.id.to_string());
    match activity {
        Activity::Idle | Activity::Finished => {}
        Activity::Sleeping => {
            eprintln!("sleeping: a timer is pending; `logbook run --session {name}` resumes it")
        }
        Activity::WaitingApproval => {
            for open in fresh.open.iter().filter(|o| o.awaiting_approval) {
                eprintln!(
                    "waiting for approval: {} — logbook approve {name} {}",
                    describe(open),
                    open.key
                );
            }
        }
        Activity::Failed => {
            return Err(anyhow!(
                "session {name} is parked: its guest failed (see `logbook log {name}`)"
            ));
        }
        Activity::Stopped => {
            eprintln!(
                "stopped: the host performs nothing for it (see `logbook log {name}`); `logbook resume {name}` lets it go on"
            )
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(open: &crate::journal::OpenEffect) -> String {
    match &open.effect {
        crate::journal::RequestedEffect::Tool(call) => {
            format!("tool {} {}", call.name, call.arguments)
        }
        crate::journal::RequestedEffect::Ask(q) => format!("question {:?}", q.text),
        other => format!("{other:?}"),
    }
}

/// Prints each `output` (and a `finished`) once, in log order. Every event
/// it reads is checked against its predecessor as it is read.
struct Printer {
    host: Arc<Host>,
    /// The session as the user named it, for messages.
    session: String,
    log: LogId,
    pos: ChainPos,
}

impl Printer {
    /// A printer of what is appended after the log's head, made before the
    /// session wakes. It checks the head itself against its predecessor
    /// first, so a session is not woken on a newest event that was altered;
    /// the older events are for replay to check as it reads them.
    async fn new(host: &Arc<Host>, session: &str, info: &LogInfo) -> anyhow::Result<Printer> {
        let head = info.next_seq.checked_sub(1);
        let pos = match head.and_then(|h| h.checked_sub(1)) {
            Some(before) => host
                .journal()
                .read(info.id, before, 1)
                .await?
                .first()
                .map_or(ChainPos::START, ChainPos::after),
            None => ChainPos::START,
        };
        let mut printer = Printer {
            host: host.clone(),
            session: session.to_owned(),
            log: info.id,
            pos,
        };
        if head.is_some() {
            // Only up to the head: what follows it is to be printed.
            let limit = info.next_seq.saturating_sub(pos.next_seq) as usize;
            printer.read(limit).await?;
        }
        Ok(printer)
    }

    async fn read(&mut self, limit: usize) -> anyhow::Result<Vec<StoredEvent>> {
        super::read_checked(&self.host, &self.session, self.log, &mut self.pos, limit).await
    }

    /// Print what is new; the sessions it sent to, each once.
    async fn print_new(&mut self) -> anyhow::Result<Vec<LogId>> {
        let mut targets: Vec<LogId> = Vec::new();
        loop {
            let page = self.read(super::EVENT_PAGE).await?;
            if page.is_empty() {
                return Ok(targets);
            }
            for stored in &page {
                match &stored.event.body {
                    EventBody::Sent { target, .. } => {
                        if let Ok(target) = target.parse()
                            && !targets.contains(&target)
                        {
                            targets.push(target);
                        }
                    }
                    EventBody::Output { content, .. } => println!("{}", plain_text(content)),
                    EventBody::Finished { result, .. } => eprintln!("finished: {result}"),
                    EventBody::GuestFailed { message } => eprintln!("guest failed: {message}"),
                    _ => {}
                }
            }
        }
    }
}

/// A guest by `.wasm` path, stored name, or built-in example; stored if new.
pub(crate) async fn guest_ref(
    host: &Host,
    guest: &str,
) -> anyhow::Result<crate::journal::GuestRef> {
    let path = PathBuf::from(guest);
    if guest.ends_with(".wasm") || path.is_file() {
        let bytes = std::fs::read(&path).map_err(|e| anyhow!("cannot read {guest}: {e}"))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| guest.to_string());
        return host
            .add_guest(CLI_TENANT, &name, &bytes)
            .await
            .map_err(|e| anyhow!("{guest}: {e}"));
    }
    if let Some(bytes) = crate::examples::get(guest) {
        return host
            .add_guest(CLI_TENANT, guest, bytes)
            .await
            .map_err(|e| anyhow!("{guest}: {e}"));
    }
    host.guest(CLI_TENANT, guest).await.map_err(|_| {
        let available = crate::examples::available();
        let unbuilt =
            available.len() < crate::examples::NAMES.len() + crate::examples::TS_NAMES.len();
        anyhow!(
            "no guest {guest:?}: give a .wasm file, a stored guest or an example ({}{})",
            available.join(", "),
            if unbuilt {
                "; the TypeScript ones once scripts/build-ts-guests.sh built them"
            } else {
                ""
            }
        )
    })
}
