//! `logbook fork`, `export`, `import` and `verify`: operations on whole logs.
//! Exit codes: 0 when all is well, 1 when a check fails or a command is refused.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;

use super::CLI_TENANT;
use crate::journal::{LogInfo, Utf8Lines};
use crate::session::otel::{OtelOptions, send_otlp, traces_url};
use crate::session::{ForkOptions, Host};

#[derive(clap::Args, Debug)]
pub(crate) struct ForkArgs {
    /// The session to fork (name or id).
    session: String,
    /// The last seq the fork shares with it (default: its last event).
    #[arg(long)]
    at: Option<u64>,
    /// A name for the fork.
    #[arg(long = "as")]
    name: Option<String>,
    /// Run the fork on another guest (name or digest).
    #[arg(long)]
    guest: Option<String>,
    /// Config keys to change on the fork, as a JSON object (e.g. '{"model":"other"}').
    /// Named like `run`'s: the global `--config FILE` is the host's configuration.
    #[arg(long = "session-config")]
    session_config: Option<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct UpgradeArgs {
    /// The session (name or id).
    session: String,
    /// The guest to move it to: a stored name or digest, a .wasm file, or an example.
    #[arg(long)]
    guest: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ReplayArgs {
    /// The session (name or id).
    session: String,
    /// The guest to check: a stored name or digest, a .wasm file, or an example.
    #[arg(long)]
    guest: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ExportArgs {
    /// The session to export (name or id).
    session: String,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// `logbook`: the log itself, hash-chained, for `import`. `otel`:
    /// OpenTelemetry traces after the GenAI conventions, as OTLP/JSON (one
    /// export request a line).
    #[arg(long, value_enum, default_value_t = ExportFormat::Logbook)]
    format: ExportFormat,
    /// With `--format otel`: put message content in the spans (inputs,
    /// answers, outputs, tool arguments and results). Off, spans hold ids,
    /// names, models and usage only.
    #[arg(long)]
    include_content: bool,
    /// With `--format otel`: send the spans to this OTLP/HTTP collector
    /// (protobuf; `/v1/traces` is added unless the URL ends with it)
    /// instead of writing them.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
}

/// What `export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    /// Logbook's own JSONL: the log, byte for byte.
    Logbook,
    /// OTLP/JSON traces (OpenTelemetry GenAI semantic conventions).
    Otel,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// The exported log (JSONL), or `-` for standard input.
    file: PathBuf,
    /// A name for the imported session.
    #[arg(long = "as")]
    name: Option<String>,
    /// What wrote the file: Logbook's own export, or a Claude Code session
    /// transcript (`~/.claude/projects/*/*.jsonl`).
    #[arg(long, value_enum, default_value_t = ImportFrom::Logbook)]
    from: ImportFrom,
    /// With `--from claude-code`: the guest the session runs on (a stored
    /// name or digest, a .wasm file, or an example); default `assistant`.
    #[arg(long)]
    guest: Option<String>,
}

/// The formats `logbook import` reads.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImportFrom {
    /// Logbook's own export (`logbook export`).
    Logbook,
    /// A Claude Code session transcript.
    ClaudeCode,
}

#[derive(clap::Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The session to verify (name or id).
    #[arg(required_unless_present = "all")]
    session: Option<String>,
    /// Verify every session.
    #[arg(long, conflicts_with = "session")]
    all: bool,
    /// Also check that each snapshot equals a full replay's state at its seq.
    #[arg(long)]
    snapshots: bool,
}

pub(crate) async fn fork(host: &Arc<Host>, args: ForkArgs) -> anyhow::Result<ExitCode> {
    let guest = match &args.guest {
        Some(g) => Some(super::run::guest_ref(host, g).await?),
        None => None,
    };
    let config = match &args.session_config {
        Some(text) => Some(
            serde_json::from_str(text).map_err(|e| anyhow!("--session-config is not JSON: {e}"))?,
        ),
        None => None,
    };
    let options = ForkOptions {
        at: args.at,
        name: args.name.clone(),
        guest,
        config,
    };
    let id = host.fork(CLI_TENANT, &args.session, options).await?;
    match &args.name {
        Some(name) => println!("{name} {id}"),
        None => println!("{id}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn export(host: &Arc<Host>, args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.format != ExportFormat::Otel && (args.include_content || args.otlp_endpoint.is_some()) {
        return Err(anyhow!(
            "--include-content and --otlp-endpoint are for --format otel"
        ));
    }
    if args.otlp_endpoint.is_some() && args.output.is_some() {
        return Err(anyhow!(
            "--otlp-endpoint sends the spans; --output writes them: give one"
        ));
    }
    let info = host.resolve(CLI_TENANT, &args.session).await?;
    if args.format == ExportFormat::Otel {
        let options = OtelOptions {
            include_content: args.include_content,
        };
        let requests = host.export_otel(info.id, options).await?;
        if let Some(endpoint) = &args.otlp_endpoint {
            let sent = send_otlp(endpoint, &requests).await?;
            eprintln!("sent {sent} spans to {}", traces_url(endpoint));
            return Ok(ExitCode::SUCCESS);
        }
        let mut out = output(args.output.as_deref())?;
        for request in &requests {
            serde_json::to_writer(&mut out, request)
                .map_err(|e| anyhow!("cannot write the export: {e}"))?;
            out.write_all(b"\n")
                .map_err(|e| anyhow!("cannot write the export: {e}"))?;
        }
        out.flush()
            .map_err(|e| anyhow!("cannot write the export: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = output(args.output.as_deref())?;
    host.export(info.id, &mut out).await?;
    out.flush()
        .map_err(|e| anyhow!("cannot write the export: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Where an export goes: the file, else standard output.
fn output(path: Option<&Path>) -> anyhow::Result<Box<dyn Write + Send>> {
    Ok(match path {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))?;
            Box::new(std::io::BufWriter::with_capacity(1 << 20, file))
        }
        None => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout(),
        )),
    })
}

pub(crate) async fn import(host: &Arc<Host>, args: ImportArgs) -> anyhow::Result<ExitCode> {
    if args.from == ImportFrom::ClaudeCode {
        return import_claude_code(host, args).await;
    }
    if args.guest.is_some() {
        return Err(anyhow!(
            "--guest is for --from claude-code: an exported log names its own guest"
        ));
    }
    let name = args.name.as_deref();
    // Lines are checked for UTF-8 one by one, so a bad byte names its line.
    let id = host
        .import(CLI_TENANT, &mut Utf8Lines::new(input(&args.file)?), name)
        .await
        .map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    match name {
        Some(name) => println!("{name} {id}"),
        None => println!("{id}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What an import reads: the file, or standard input for `-`.
fn input(file: &Path) -> anyhow::Result<Box<dyn BufRead + Send>> {
    if file.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let opened =
        std::fs::File::open(file).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, opened)))
}

/// `import --from claude-code`: prints the session, then a report of what
/// was not imported as events.
async fn import_claude_code(host: &Arc<Host>, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let wanted = args.guest.as_deref().unwrap_or("assistant");
    let guest = match crate::examples::get(wanted) {
        // A built-in example is stored by the import, and only if it succeeds.
        Some(bytes) if !std::path::Path::new(wanted).is_file() => crate::journal::GuestRef {
            name: wanted.to_string(),
            digest: crate::journal::digest_of(bytes),
        },
        _ => super::run::guest_ref(host, wanted).await?,
    };
    let name = args.name.as_deref();
    let imported = host
        .import_claude_code(CLI_TENANT, &mut input(&args.file)?, name, guest)
        .await
        .map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    match name {
        Some(name) => println!("{name} {}", imported.id),
        None => println!("{}", imported.id),
    }
    let kept: usize = imported.kept.values().sum();
    eprintln!(
        "imported {} lines as {} events",
        imported.lines, imported.events
    );
    if kept > 0 {
        let by_type: Vec<String> = imported
            .kept
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        eprintln!(
            "kept verbatim (in created.config.import.kept): {kept} lines ({})",
            by_type.join(", ")
        );
    }
    if !imported.blocks_left_out.is_empty() {
        let by_type: Vec<String> = imported
            .blocks_left_out
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        eprintln!("content blocks left out: {}", by_type.join(", "));
    }
    if let Some((line, bytes)) = imported.torn {
        eprintln!("torn last line {line} ({bytes} bytes, no end of line): left out");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one line per log: `ok` or the first bad seq and why. Exit 1 when
/// any log does not hold.
pub(crate) async fn verify(host: &Arc<Host>, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut all_ok = true;
    match &args.session {
        Some(session) if !args.all => {
            let info = host.resolve(CLI_TENANT, session).await?;
            all_ok = verify_one(host, &info, args.snapshots).await?;
        }
        _ => {
            let mut pages = super::LogPages::new(host);
            while let Some(page) = pages.next().await? {
                for info in page {
                    all_ok &= verify_one(host, &info, args.snapshots).await?;
                }
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the lines of one log; whether all of it holds.
async fn verify_one(host: &Host, info: &LogInfo, snapshots: bool) -> anyhow::Result<bool> {
    let mut ok = true;
    let label = match &info.name {
        Some(name) => format!("{name} {}", info.id),
        None => info.id.to_string(),
    };
    let verified = host.journal().verify(info.id).await?;
    match verified.first_bad {
        None => println!("{label}: ok, {} events", verified.events),
        Some((seq, why)) => {
            ok = false;
            println!("{label}: BAD at seq {seq}: {why}");
        }
    }
    if snapshots {
        for check in host.verify_snapshots(info.id).await? {
            match check.problem {
                None => println!("{label}: snapshot at seq {}: ok", check.seq),
                Some(why) => {
                    ok = false;
                    println!("{label}: snapshot at seq {}: BAD: {why}", check.seq);
                }
            }
        }
    }
    Ok(ok)
}

pub(crate) async fn upgrade(host: &Arc<Host>, args: UpgradeArgs) -> anyhow::Result<ExitCode> {
    let guest = super::run::guest_ref(host, &args.guest).await?;
    let seq = host
        .upgrade(CLI_TENANT, &args.session, guest.clone())
        .await?;
    println!(
        "{}: guest-changed at seq {seq}, now on {} ({})",
        args.session, guest.name, guest.digest
    );
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 when the guest agrees with the whole log, 1 at the first difference.
pub(crate) async fn replay(host: &Arc<Host>, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let guest = super::run::guest_ref(host, &args.guest).await?;
    let report = host
        .replay_check(CLI_TENANT, &args.session, guest.clone())
        .await?;
    match report.difference {
        None => {
            println!(
                "{} agrees with the log of {} ({} events)",
                guest.name, args.session, report.events
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(d) => {
            println!(
                "{} differs from the log of {} at seq {}:",
                guest.name, args.session, d.seq
            );
            println!("  - log:   {}", d.log);
            println!("  + guest: {}", d.guest);
            Ok(ExitCode::FAILURE)
        }
    }
}
