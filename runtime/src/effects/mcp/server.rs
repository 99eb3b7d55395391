//! One MCP server's connection, started on first need and started again
//! after it dies.
//!
//! Invariants: at most one live client per server; a client is replaced only
//! by the caller that saw it fail (so calls failing together do not start
//! several servers); attempts after a failure wait a backoff that doubles
//! per failure in a row, from [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`], and
//! resets when a call succeeds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam, ProgressToken,
    Tool as ListedTool,
};
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{ClientHandler, ServiceExt};
use tokio::time::Instant;

use super::super::{ProgressSink, SetupError, ToolProgress};
use crate::config::McpServerConfig;

/// Variables every stdio server gets from the host, when set.
const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "TMPDIR"];

/// The wait before the first new start after a failure.
pub(super) const BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between starts of a server that keeps failing.
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(super) type Client = RunningService<RoleClient, Handler>;

/// Where progress of calls in flight goes, by their progress token.
type Watchers = std::sync::Mutex<std::collections::HashMap<ProgressToken, (String, ProgressSink)>>;

/// The host's side of a connection: it says who it is, and takes the
/// server's notifications (progress of calls, a changed tool list).
#[derive(Clone)]
pub(super) struct Handler {
    server: String,
    /// Progress of calls in flight, by token.
    watchers: Arc<Watchers>,
    /// Set when a server says its tools changed: they are listed again at
    /// the next start of a session.
    pub(super) stale: Arc<AtomicBool>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        // No sampling, roots or elicitation: a server's requests for them are
        // refused, since a session's effects happen only through its log.
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("logbook", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        let watcher = self
            .watchers
            .lock()
            .ok()
            .and_then(|w| w.get(&params.progress_token).cloned());
        if let Some((key, sink)) = watcher {
            sink(ToolProgress {
                key,
                progress: params.progress,
                total: params.total,
                message: params.message,
            });
        }
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        tracing::info!(server = %self.server, "the MCP server's tools changed; they are listed again");
        self.stale.store(true, Ordering::Release);
    }
}

impl Handler {
    /// Send the progress of the call with `token` to `sink` until the guard drops.
    pub(super) fn watch(&self, token: ProgressToken, key: String, sink: ProgressSink) -> Watch {
        if let Ok(mut w) = self.watchers.lock() {
            w.insert(token.clone(), (key, sink));
        }
        Watch {
            watchers: self.watchers.clone(),
            token,
        }
    }
}

/// A call's progress is watched while this lives.
pub(super) struct Watch {
    watchers: Arc<Watchers>,
    token: ProgressToken,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut w) = self.watchers.lock() {
            w.remove(&self.token);
        }
    }
}

/// A configured server and its live client, if any.
pub(super) struct McpServer {
    pub(super) name: String,
    config: McpServerConfig,
    state: tokio::sync::Mutex<State>,
    pub(super) handler: Handler,
}

#[derive(Default)]
struct State {
    client: Option<Arc<Client>>,
    /// Failures in a row (of starts and of calls' transports).
    failures: u32,
    /// No new start before this.
    not_before: Option<Instant>,
    /// Starts so far, the first included.
    starts: u64,
}

/// A client, and whether getting it started the server again.
pub(super) struct Connected {
    pub(super) client: Arc<Client>,
    pub(super) restarted: bool,
}

impl McpServer {
    pub(super) fn new(
        name: &str,
        config: &McpServerConfig,
        stale: Arc<AtomicBool>,
    ) -> Result<McpServer, SetupError> {
        if config.command.is_some() == config.url.is_some() {
            return Err(SetupError::Mcp {
                server: name.to_string(),
                why: "give exactly one of `command` and `url`".into(),
            });
        }
        Ok(McpServer {
            name: name.to_string(),
            config: config.clone(),
            state: tokio::sync::Mutex::new(State::default()),
            handler: Handler {
                server: name.to_string(),
                watchers: Arc::default(),
                stale,
            },
        })
    }

    /// Time one tool call may take.
    pub(super) fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms.unwrap_or(60_000))
    }

    pub(super) fn idempotent(&self) -> bool {
        self.config.idempotent
    }

    /// Start the server (if it is not running) and list its tools.
    pub(super) async fn list(&self) -> Result<Vec<ListedTool>, SetupError> {
        let connected = self.client().await?;
        match connected.client.list_all_tools().await {
            Ok(tools) => Ok(tools),
            Err(e) => {
                self.failed(&connected.client).await;
                Err(self.refused(format!("cannot list tools: {e}")))
            }
        }
    }

    /// The live client: the one running, or a new one after waiting out the
    /// backoff if the last one died (or none was started yet).
    pub(super) async fn client(&self) -> Result<Connected, SetupError> {
        let mut state = self.state.lock().await;
        if let Some(client) = &state.client {
            if !client.is_closed() && !client.is_transport_closed() {
                return Ok(Connected {
                    client: client.clone(),
                    restarted: false,
                });
            }
            // It died between calls: nothing was lost, start another.
            tracing::warn!(server = %self.name, "the MCP server stopped; starting it again");
            state.client = None;
        }
        if let Some(at) = state.not_before {
            tokio::time::sleep_until(at).await;
        }
        match self.connect().await {
            Ok(client) => {
                let client = Arc::new(client);
                state.client = Some(client.clone());
                state.not_before = None;
                state.starts += 1;
                if state.starts > 1 {
                    tracing::info!(server = %self.name, starts = state.starts, "MCP server started again");
                }
                Ok(Connected {
                    client,
                    restarted: state.starts > 1,
                })
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                state.not_before = Some(Instant::now() + backoff(state.failures));
                Err(e)
            }
        }
    }

    /// `client` failed in its transport (or stopped answering): drop it, so
    /// the next call starts the server again after the backoff.
    pub(super) async fn failed(&self, client: &Arc<Client>) {
        let mut state = self.state.lock().await;
        if state
            .client
            .as_ref()
            .is_some_and(|live| Arc::ptr_eq(live, client))
        {
            tracing::warn!(server = %self.name, "MCP server connection lost; it is started again at the next call");
            client.cancellation_token().cancel();
            state.client = None;
            state.failures = state.failures.saturating_add(1);
            state.not_before = Some(Instant::now() + backoff(state.failures));
        }
    }

    /// A call went through: the server is healthy again.
    pub(super) async fn succeeded(&self) {
        let mut state = self.state.lock().await;
        state.failures = 0;
    }

    fn refused(&self, why: String) -> SetupError {
        SetupError::Mcp {
            server: self.name.clone(),
            why,
        }
    }

    async fn connect(&self) -> Result<Client, SetupError> {
        let config = &self.config;
        let fail = |what: &str, e: &dyn std::fmt::Display| self.refused(format!("{what}: {e}"));
        match (&config.command, &config.url) {
            (Some(command), None) => {
                let cmd = tokio::process::Command::new(command).configure(|cmd| {
                    cmd.args(&config.args).env_clear();
                    for var in BASE_ENV
                        .iter()
                        .copied()
                        .chain(config.env_from.iter().map(String::as_str))
                    {
                        if let Ok(value) = std::env::var(var) {
                            cmd.env(var, value);
                        }
                    }
                });
                let (transport, _) = TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::inherit())
                    .spawn()
                    .map_err(|e| fail(&format!("cannot start {command:?}"), &e))?;
                self.handler
                    .clone()
                    .serve(transport)
                    .await
                    .map_err(|e| fail("initialization failed", &e))
            }
            (None, Some(url)) => {
                use rmcp::transport::StreamableHttpClientTransport;
                use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
                super::super::providers::install_crypto_provider();
                let mut transport_config =
                    StreamableHttpClientTransportConfig::with_uri(url.as_str());
                if let Some(var) = &config.bearer_env {
                    let token = std::env::var(var)
                        .map_err(|_| self.refused(format!("{var} (bearer_env) is not set")))?;
                    transport_config = transport_config.auth_header(token);
                }
                let transport = StreamableHttpClientTransport::from_config(transport_config);
                self.handler
                    .clone()
                    .serve(transport)
                    .await
                    .map_err(|e| fail("initialization failed", &e))
            }
            _ => Err(self.refused("give exactly one of `command` and `url`".into())),
        }
    }
}

/// The wait after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), BACKOFF_FIRST);
        assert_eq!(backoff(2), BACKOFF_FIRST * 2);
        assert_eq!(backoff(4), BACKOFF_FIRST * 8);
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
