//! `logbook serve`: the HTTP API over a data directory.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::config::Config;
use crate::server::{self, ServerSettings, Tenants};

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Where to listen. Beyond loopback only with bearer tokens configured.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Largest request body in bytes (a tenant's own limit wins).
    #[arg(long, default_value_t = ServerSettings::default().max_body_bytes)]
    max_body_bytes: usize,
}

pub(crate) async fn serve(
    data: &Path,
    config: Config,
    args: ServeArgs,
) -> anyhow::Result<ExitCode> {
    let tenants = Tenants::from_config(&config)?;
    // Refuse before anything is opened or written.
    server::check_exposure(&args.listen, &tenants)?;
    // `server::run` raises it too (idempotent); here to say the figures.
    let files = server::raise_open_files_limit();
    let cap = server::connection_cap(&config.server, files.now);
    let serving = match &config.journal.url {
        Some(url) => format!(
            "{} (data {})",
            crate::journal::redacted_url(url),
            data.display()
        ),
        None => data.display().to_string(),
    };
    let host = super::open(data, config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    eprintln!("logbook: serving {serving} on http://{addr}");
    eprintln!(
        "logbook: open files limit {} (was {}); at most {cap} connections at once",
        files.now, files.before
    );
    let settings = ServerSettings {
        max_body_bytes: args.max_body_bytes,
    };
    server::run(listener, host, tenants, settings, shutdown_signal()).await?;
    eprintln!("logbook: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
