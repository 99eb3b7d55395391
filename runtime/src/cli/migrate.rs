//! `logbook migrate --from DATA_DIR --to postgres://…`: copies a data
//! directory's journal (every log of every tenant with its hashes, guests,
//! names, snapshots) into a PostgreSQL journal. Thin over
//! [`journal::migrate`](crate::journal::migrate).
//! Exit codes: 0 when everything is there, 1 when the migration stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::config::Config;
use crate::journal::{
    MigrateProgress, PgConfig, PgJournal, RedbJournal, migrate as copy_all, redacted_url,
};

/// Print a progress line every this many logs.
const PROGRESS_EVERY: u64 = 100;

#[derive(clap::Args, Debug)]
pub(crate) struct MigrateArgs {
    /// The data directory to copy from; its journal.redb is opened read-only
    /// (stop any `logbook serve` on it first).
    #[arg(long)]
    from: PathBuf,
    /// The PostgreSQL journal to copy into (postgres://USER:PASSWORD@HOST:PORT/DB).
    #[arg(long)]
    to: String,
    /// Read both journals and report what would be copied; write nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn migrate(config: &Config, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let file = args.from.join("journal.redb");
    if !file.exists() {
        return Err(anyhow!("no Logbook data in {}", args.from.display()));
    }
    if !args.to.starts_with("postgres://") && !args.to.starts_with("postgresql://") {
        return Err(anyhow!(
            "--to {} is not a PostgreSQL URL: postgres://USER:PASSWORD@HOST:PORT/DB",
            redacted_url(&args.to)
        ));
    }
    let source = RedbJournal::open_read_only(&file)
        .map_err(|e| anyhow!("cannot open {} to read: {e}", file.display()))?;
    let tenants = source.tenants()?;
    let settings = &config.journal;
    let pg = PgConfig {
        max_batch_events: settings.max_batch_events,
        pool_size: settings.pool_size,
        ..PgConfig::default()
    };
    let dest = PgJournal::connect(&args.to, pg)
        .await
        .map_err(|e| anyhow!("cannot open {}: {e}", redacted_url(&args.to)))?;
    let verb = if args.dry_run { "would copy" } else { "copied" };
    println!(
        "{} {} → {} ({} tenants){}",
        if args.dry_run {
            "checking"
        } else {
            "migrating"
        },
        file.display(),
        redacted_url(&args.to),
        tenants.len(),
        if args.dry_run {
            ", dry run: nothing is written"
        } else {
            ""
        }
    );
    let mut shown = 0;
    let result = copy_all(&*source, &tenants, &*dest, args.dry_run, |p| {
        let seen = p.logs + p.logs_skipped;
        if seen >= shown + PROGRESS_EVERY {
            shown = seen;
            println!("  {}", line(verb, p));
        }
    })
    .await;
    match result {
        Ok(done) => {
            println!("{}", line(verb, &done));
            println!(
                "note: the destination's tenant counts now include these logs, and the \
                 tenants' session limits were not checked: it is a copy"
            );
            if !args.dry_run {
                println!(
                    "check it with: logbook verify --all --journal {}",
                    redacted_url(&args.to)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(anyhow!(
            "{e}\n(what was copied before this stays; running migrate again skips it)"
        )),
    }
}

fn line(verb: &str, p: &MigrateProgress) -> String {
    format!(
        "{verb} {} logs ({} events, {} already there), {} guests, {} guest names, \
         {} snapshots, {} blobs; {} tenants done",
        p.logs, p.events, p.logs_skipped, p.guests, p.guest_names, p.snapshots, p.blobs, p.tenants
    )
}
