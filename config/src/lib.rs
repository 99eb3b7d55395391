//! Configuration: every limit, model alias and tool policy, each with a default
//! that works. Read from TOML (`--config FILE`, else `DATA/logbook.toml`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors reading configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, as the TOML parser says it.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Sandbox limits for guests.
    pub limits: Limits,
    /// The journal's group commit.
    pub journal: JournalSettings,
    /// Model aliases: what a guest's `model` name maps to.
    pub models: BTreeMap<String, ModelConfig>,
    /// Tool policies, by tool name.
    pub tools: ToolsConfig,
    /// How `logbook run` decides a session is idle.
    pub run: RunConfig,
    /// The built-in `http.fetch` tool; offered only when hosts are allowed.
    pub http_fetch: HttpFetchConfig,
    /// MCP servers, by name; their tools are offered as `NAME.TOOL`.
    pub mcp: BTreeMap<String, McpServerConfig>,
    /// Tenants, by name: their tokens, limits, model aliases and tool policies.
    /// A tenant's `models` and `tools.policy` entries override the top-level
    /// ones for its sessions; everything it leaves out falls back to them.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// What `logbook serve` lets browsers do.
    pub server: ServerConfig,
    /// Where the host sends its own traces.
    pub telemetry: TelemetryConfig,
}

/// Where the host sends its own spans (`[telemetry]`): to an OpenTelemetry
/// collector over OTLP/HTTP (protobuf), or nowhere.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; spans
    /// are sent to `URL/v1/traces`. Unset: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) when set, else no exporter.
    pub otlp: Option<String>,
    /// The spans' `service.name` (default `logbook`).
    pub service_name: Option<String>,
}

/// What `logbook serve` lets browsers do (see `docs/http-api.md`, "Browsers
/// and origins"), who may read its metrics, and the limits on its
/// connections ("Limits"). The defaults serve curl, the CLI and the server's
/// own pages, refuse every other web page, and keep idle or half-sent
/// connections from holding the server's open files.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Origins of other web pages that may call the API, exactly as a browser
    /// sends them: `scheme://host[:port]`, e.g. `http://localhost:5173`. They
    /// get CORS answers; every other foreign origin gets 403.
    pub allowed_origins: Vec<String>,
    /// `Host` names served besides loopback ones while no bearer token is
    /// configured: `name` (any port) or `name:port`. Loopback names and
    /// literals (`localhost`, `127.0.0.0/8`, `[::1]`) are always served.
    pub allowed_hosts: Vec<String>,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// Time a client has to send a whole request head (request line and
    /// headers), in ms, from when the server starts waiting for it: on a new
    /// connection, and on a kept-alive one after each answer. Then the
    /// connection is closed without an answer.
    pub header_read_timeout_ms: u64,
    /// A connection on which no byte moves either way for this long, in ms,
    /// is closed, unless a handler is at work on a request it has read
    /// whole (an input waiting for its turn to end may take minutes). An
    /// event stream stays open: its keep-alive comments move bytes.
    pub idle_timeout_ms: u64,
    /// Interval of the comments that keep a quiet event stream alive, in ms;
    /// below `idle_timeout_ms`.
    pub sse_keep_alive_ms: u64,
    /// Connections open at once, event streams included; past it new
    /// connections wait in the listen backlog until one closes. Unset: 10000,
    /// or less so as to leave a quarter of the open-files limit (at least
    /// 256 files) to the journal, model calls and tools.
    pub max_connections: Option<usize>,
    /// Largest request head (request line and headers), in bytes; a larger
    /// one is answered 431.
    pub max_head_bytes: usize,
    /// Longest request target (path and query), in bytes; a longer one is
    /// answered 414.
    pub max_uri_bytes: usize,
    /// Largest `wait=idle` answer to an input, in bytes of its outputs'
    /// JSON: outputs past it are left out, and the answer says where to
    /// read them (`more`, `next_seq`).
    pub max_answer_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            metrics: MetricsAccess::default(),
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            sse_keep_alive_ms: 15_000,
            max_connections: None,
            max_head_bytes: 64 << 10,
            max_uri_bytes: 8 << 10,
            max_answer_bytes: 1 << 20,
        }
    }
}

/// Who may read `/metrics`. Its figures are host-wide: every tenant's
/// sessions are counted in them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsAccess {
    /// A caller with a bearer token of any tenant; without tokens configured
    /// (the loopback-only mode) anyone who reaches the server, like every
    /// other route.
    #[default]
    Token,
    /// Anyone who reaches the server, tokens or not (for a scraper that has
    /// none, on a network that only it reaches).
    Public,
}

impl ServerConfig {
    /// Refuse an allowed origin a browser could never send, so a typo such as
    /// a trailing slash or a path is an error rather than a silent 403; and
    /// limits that cannot work.
    fn check(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_string(),
            message,
        };
        for origin in &self.allowed_origins {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            let valid = authority.is_some_and(|a| {
                !a.is_empty() && !a.contains(['/', '?', '#', '@', ' ']) && !a.starts_with(':')
            });
            if !valid {
                return Err(invalid(format!(
                    "[server] allowed_origins: {origin:?} is not an origin; write scheme://host[:port], e.g. \"http://localhost:5173\", with no path or trailing slash"
                )));
            }
        }
        for host in &self.allowed_hosts {
            if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
                return Err(invalid(format!(
                    "[server] allowed_hosts: {host:?} is not a host; write name or name:port, e.g. \"logbook.internal\""
                )));
            }
        }
        let zero = [
            ("header_read_timeout_ms", self.header_read_timeout_ms == 0),
            ("idle_timeout_ms", self.idle_timeout_ms == 0),
            ("sse_keep_alive_ms", self.sse_keep_alive_ms == 0),
            ("max_connections", self.max_connections == Some(0)),
            ("max_head_bytes", self.max_head_bytes == 0),
            ("max_uri_bytes", self.max_uri_bytes == 0),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return Err(invalid(format!("[server] {name} must be more than 0")));
        }
        if self.sse_keep_alive_ms >= self.idle_timeout_ms {
            return Err(invalid(format!(
                "[server] sse_keep_alive_ms ({}) must be below idle_timeout_ms ({}), or quiet event streams are closed as idle",
                self.sse_keep_alive_ms, self.idle_timeout_ms
            )));
        }
        Ok(())
    }
}

/// One tenant's settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// Environment variables that hold this tenant's bearer tokens (the tokens
    /// themselves never appear in configuration, the log or an error).
    pub token_envs: Vec<String>,
    /// Model aliases of this tenant, over the top-level ones.
    pub models: BTreeMap<String, ModelConfig>,
    /// Tool policies of this tenant, over the top-level ones.
    pub tools: ToolsConfig,
    /// Limits of this tenant; unset ones are the top-level limits.
    pub limits: TenantLimits,
}

/// Per-tenant limits; `None` falls back to the host-wide value.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    /// Sessions the tenant may create.
    pub sessions: Option<u64>,
    /// Guest instances the tenant may have resident at once.
    pub active_instances: Option<usize>,
    /// Fuel per event folded.
    pub fuel_per_event: Option<u64>,
    /// Fuel per byte handed to the guest.
    pub fuel_per_byte: Option<u64>,
    /// Largest event (its canonical JSON), in bytes: an input, a model
    /// response or a tool result.
    pub max_event_bytes: Option<usize>,
    /// Linear memory per instance, in bytes.
    pub memory_per_instance: Option<usize>,
    /// Linear memory the tenant's resident instances may hold together on
    /// this host, in bytes: its share of the host's `memory_budget_bytes`.
    /// Unset: only the host's budget applies to it.
    pub memory_budget_bytes: Option<usize>,
    /// Largest request body the server accepts from this tenant, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Effects a session may start in a minute before it is stopped.
    pub session_effects_per_minute: Option<u64>,
    /// Model calls a session may start in a minute before it is stopped.
    pub session_model_calls_per_minute: Option<u64>,
    /// Model calls a session may request between resumes (0: no limit).
    pub session_model_calls: Option<u64>,
    /// Tokens a session may use between resumes (0: no limit).
    pub session_tokens: Option<u64>,
    /// Effects the tenant's sessions on this host may start in a minute.
    pub tenant_effects_per_minute: Option<u64>,
}

/// Limits on every guest instance and on the host's pool of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) for one guest call per event it folds.
    pub fuel_per_event: u64,
    /// Fuel for every call, besides what it gets for its events and bytes.
    pub fuel_per_call: u64,
    /// Fuel per byte of text a call hands the guest (see [`Limits::fuel_for`]):
    /// folding a large input costs in proportion to its size, so every input
    /// the host accepts can be folded.
    pub fuel_per_byte: u64,
    /// Largest event the host appends from outside the guest, in bytes of
    /// its canonical JSON: an input is refused (HTTP 413 `event_too_large`)
    /// and a model response or tool result is recorded as `failed` with kind
    /// `too-large` instead. Nothing larger is ever made durable.
    pub max_event_bytes: usize,
    /// A tool part (an image, a sound, a binary resource) whose bytes are
    /// more than this is stored once beside the log, by digest, and its
    /// event carries only the reference: replays and guests never copy it,
    /// and it is read back only to send it to a model.
    pub blob_threshold_bytes: usize,
    /// Linear memory one instance may use, in bytes.
    pub memory_per_instance: usize,
    /// Linear memory all resident instances may hold together, in bytes
    /// (counted as wasmtime sizes each store's memories: when an instance
    /// is created, at every growth, and when it is dropped). Past it the
    /// least recently used idle instances hibernate, and an activation that
    /// still finds no room is refused (HTTP 429 `memory_budget`); see
    /// "Limits" in `docs/http-api.md`. 0: no budget.
    pub memory_budget_bytes: usize,
    /// Instances the pooling allocator holds at once (slots are reserved up front).
    pub max_instances: u32,
    /// Table elements per table.
    pub table_elements: usize,
    /// Events handed to a guest per `apply` call during replay.
    pub replay_batch: usize,
    /// Bytes of a guest's stdout/stderr kept for its trace and failure message.
    pub guest_output_bytes: usize,
    /// Sessions resident at once (a live actor and guest instance); the
    /// least recently used idle ones hibernate first. At most `max_instances`.
    pub max_resident: usize,
    /// A resident session idle this long hibernates, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Store the guest's snapshot when a session goes idle at least this many
    /// events after its last one, so activation replays only the tail; 0: never.
    pub snapshot_every: u64,
    /// Effects (model calls, tool calls, timers) one session may start in a
    /// sliding minute: a loop must start one per turn, a client's inputs
    /// start none of themselves. The advance that would pass it appends
    /// `stopped` instead (session::limits). 0: none.
    pub session_effects_per_minute: u64,
    /// Model calls one session may start in a sliding minute. 0: none.
    pub session_model_calls_per_minute: u64,
    /// Model calls one session may request in its life (since its last
    /// `resumed`). 0: none, the default.
    pub session_model_calls: u64,
    /// Tokens (input + output, from the responses' `usage`) one session may
    /// use in its life (since its last `resumed`): the next model call after
    /// they are spent is stopped. 0: none, the default.
    pub session_tokens: u64,
    /// Effects the sessions of one tenant may start in a sliding minute on
    /// this host (per worker with a shared journal). 0: none.
    pub tenant_effects_per_minute: u64,
    /// Sends between sessions one chain may take (A → B → A …): an input a
    /// session got from another carries how many sends led to it, and a
    /// send that would go past this many is recorded as `failed` (kind
    /// `limit`) naming the limit, so that two agents that answer each other
    /// cannot loop for ever.
    pub max_send_hops: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_event: 50_000_000,
            fuel_per_call: 200_000_000,
            fuel_per_byte: FUEL_PER_BYTE,
            max_event_bytes: 4 << 20,
            blob_threshold_bytes: 16 << 10,
            memory_per_instance: 64 << 20,
            // A quarter of a 4 GiB machine: 16 instances at their 64 MiB
            // limit, or thousands of the usual 20-80 KiB ones.
            memory_budget_bytes: 1 << 30,
            max_instances: 2_000,
            table_elements: 20_000,
            replay_batch: 1_024,
            guest_output_bytes: 16 << 10,
            max_resident: 1_000,
            idle_timeout_ms: 60_000,
            snapshot_every: 1_000,
            session_effects_per_minute: 600,
            session_model_calls_per_minute: 120,
            session_model_calls: 0,
            session_tokens: 0,
            tenant_effects_per_minute: 60_000,
            max_send_hops: 16,
        }
    }
}

/// The default [`Limits::fuel_per_byte`]: about four times what a byte of
/// input costs the example guests (see the figures in `docs/guest-contract.md`).
pub const FUEL_PER_BYTE: u64 = 160;

impl Limits {
    /// The fuel of one guest call that hands the guest `events` events and
    /// `bytes` bytes of text: `fuel_per_call + fuel_per_event × events +
    /// fuel_per_byte × bytes`, saturating. Every call into a guest gets its
    /// budget here, so the same log gets the same fuel on every host with
    /// the same limits.
    pub fn fuel_for(&self, events: u64, bytes: u64) -> u64 {
        self.fuel_per_call
            .saturating_add(self.fuel_per_event.saturating_mul(events))
            .saturating_add(self.fuel_per_byte.saturating_mul(bytes))
    }
}

/// Where the journal is, and its writer's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalSettings {
    /// A PostgreSQL database shared by any number of workers
    /// (`postgres://user:password@host:port/db`); `None` (the default): the
    /// redb file `journal.redb` in the data directory, which one process
    /// owns. `--journal URL` (or `LOGBOOK_JOURNAL`) overrides it.
    pub url: Option<String>,
    /// Most events one group commit takes.
    pub max_batch_events: usize,
    /// With PostgreSQL: how long a worker's leases outlive its last
    /// heartbeat, in ms. A dead worker's sessions are taken over by the
    /// others this much later at most (plus half of it, their sweep).
    pub lease_ttl_ms: u64,
    /// With PostgreSQL: connections of each worker's read pool (its writer
    /// and its listener have one each besides).
    pub pool_size: usize,
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            url: None,
            max_batch_events: 4096,
            lease_ttl_ms: 5000,
            pool_size: 4,
        }
    }
}

/// What a model alias maps to.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `echo` (offline), `openai` (the Chat Completions wire) or `anthropic`
    /// (the Messages wire).
    pub provider: String,
    /// The provider's model name.
    #[serde(default)]
    pub model: Option<String>,
    /// Milliseconds the echo model waits before it answers.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// The provider's API root, e.g. `https://api.openai.com/v1` (the
    /// provider's public endpoint when not set).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The environment variable that holds the API key. The key itself is
    /// never in configuration, the log, a guest or an error message.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Stream the response (SSE), so live observers see tokens as they come
    /// (default true).
    #[serde(default)]
    pub stream: Option<bool>,
    /// Time one attempt may take, in ms (default 300000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Attempts after the first on 429, 5xx and connection errors (default 3).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// First backoff between attempts, in ms; it doubles each time, with
    /// jitter (default 500).
    #[serde(default)]
    pub retry_base_ms: Option<u64>,
    /// Longest wait between attempts, in ms, `Retry-After` included (default 30000).
    #[serde(default)]
    pub retry_max_ms: Option<u64>,
    /// Tokens to generate when the guest does not say (default 4096; the
    /// Anthropic wire requires a value).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Anthropic: the `anthropic-version` header (default `2023-06-01`).
    #[serde(default)]
    pub anthropic_version: Option<String>,
    /// Anthropic: turn on extended thinking with this token budget.
    #[serde(default)]
    pub thinking_budget: Option<u32>,
    /// OpenAI wire: `reasoning_effort` for reasoning models (`low`, `medium`, `high`).
    #[serde(default)]
    pub reasoning_effort: Option<String>,
}

/// How the host treats a tool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Run it.
    Allow,
    /// Ask a human first (`approval-requested`).
    Ask,
    /// Refuse it; the model reads an error result.
    Deny,
}

/// Tool settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Overrides of each tool's default policy, by tool name.
    pub policy: BTreeMap<String, Policy>,
    /// Largest file `fs.read` returns, in bytes.
    pub max_read_bytes: Option<u64>,
}

/// Settings of the `http.fetch` tool.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpFetchConfig {
    /// Hosts it may reach (`example.com`, `*.example.com`); empty: no tool.
    pub allow_hosts: Vec<String>,
    /// Largest response body returned, in bytes (longer ones are cut).
    pub max_bytes: u64,
    /// Time one fetch may take, in ms.
    pub timeout_ms: u64,
}

impl Default for HttpFetchConfig {
    fn default() -> Self {
        HttpFetchConfig {
            allow_hosts: Vec::new(),
            max_bytes: 256 << 10,
            timeout_ms: 30_000,
        }
    }
}

/// An MCP server: a command to run over stdio, or a streamable HTTP URL.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program to start (stdio transport).
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables to pass, by name, from the host's environment
    /// (their values never appear in configuration or the log).
    pub env_from: Vec<String>,
    /// The server's streamable HTTP endpoint (instead of `command`).
    pub url: Option<String>,
    /// The environment variable holding a bearer token for `url`.
    pub bearer_env: Option<String>,
    /// Time one tool call may take, in ms (default 60000).
    pub timeout_ms: Option<u64>,
    /// Whether its tools may be re-run after a crash (default false).
    pub idempotent: bool,
}

/// Settings of `logbook run`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// A session whose next timer is further away than this is idle.
    pub timer_horizon_ms: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            timer_horizon_ms: 1_000,
        }
    }
}

impl Config {
    /// Parse configuration from TOML text.
    pub fn from_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_string(),
            message,
        };
        let config: Config = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        config.server.check(path)?;
        Ok(config)
    }

    /// Read `explicit` if given, else `data/logbook.toml` if present, else defaults.
    pub fn load(explicit: Option<&Path>, data: &Path) -> Result<Config, ConfigError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let path = data.join("logbook.toml");
                if !path.exists() {
                    return Ok(Config::default());
                }
                path
            }
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Config::from_toml(&text, &shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_from_empty() {
        let config = Config::from_toml("", "x").unwrap();
        assert_eq!(config.limits.memory_per_instance, 64 << 20);
        assert!(config.models.is_empty());
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = Config::from_toml("[limits]\nfuel = 3\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
    }

    #[test]
    fn providers_tools_and_mcp_servers_parse() {
        let config = Config::from_toml(
            r#"
[models.default]
provider = "openai"
base_url = "http://127.0.0.1:11434/v1"
model = "qwen2.5:7b"
api_key_env = "OPENAI_API_KEY"
stream = false
max_retries = 5

[http_fetch]
allow_hosts = ["docs.rs", "*.wikipedia.org"]

[mcp.github]
command = "github-mcp-server"
args = ["stdio"]
env_from = ["GITHUB_TOKEN"]

[tools.policy]
"github.*" = "ask"
"#,
            "x",
        )
        .unwrap();
        let model = &config.models["default"];
        assert_eq!(model.provider, "openai");
        assert_eq!(model.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!((model.stream, model.max_retries), (Some(false), Some(5)));
        assert_eq!(config.http_fetch.allow_hosts.len(), 2);
        assert_eq!(config.mcp["github"].args, vec!["stdio"]);
        assert_eq!(config.tools.policy["github.*"], Policy::Ask);
    }

    #[test]
    fn server_origins_and_hosts_parse_and_typos_are_refused() {
        let config = Config::from_toml(
            "[server]\nallowed_origins = [\"http://localhost:5173\", \"https://app.example\"]\nallowed_hosts = [\"logbook.internal\"]\n",
            "x",
        )
        .unwrap();
        assert_eq!(config.server.allowed_origins.len(), 2);
        assert_eq!(config.server.allowed_hosts, ["logbook.internal"]);
        assert!(Config::default().server.allowed_origins.is_empty());
        for bad in [
            "http://localhost:5173/",
            "localhost:5173",
            "http://",
            "null",
            "ftp://x",
        ] {
            let text = format!("[server]\nallowed_origins = [{bad:?}]\n");
            let err = Config::from_toml(&text, "x.toml").unwrap_err();
            assert!(err.to_string().contains("allowed_origins"), "{bad}: {err}");
        }
        let err = Config::from_toml("[server]\nallowed_hosts = [\"http://a\"]\n", "x").unwrap_err();
        assert!(err.to_string().contains("allowed_hosts"), "{err}");
        let err = Config::from_toml("[server]\norigins = []\n", "x").unwrap_err();
        assert!(err.to_string().contains("origins"), "{err}");
    }

    #[test]
    fn server_limits_parse_and_ones_that_cannot_work_are_refused() {
        let config = Config::from_toml(
            "[server]\nmetrics = \"public\"\nheader_read_timeout_ms = 500\nidle_timeout_ms = 2000\nsse_keep_alive_ms = 100\nmax_connections = 7\nmax_head_bytes = 4096\nmax_uri_bytes = 100\n",
            "x",
        )
        .unwrap();
        let server = &config.server;
        assert_eq!(server.metrics, MetricsAccess::Public);
        assert_eq!(
            (server.header_read_timeout_ms, server.idle_timeout_ms),
            (500, 2000)
        );
        assert_eq!(server.sse_keep_alive_ms, 100);
        assert_eq!(server.max_connections, Some(7));
        assert_eq!((server.max_head_bytes, server.max_uri_bytes), (4096, 100));
        let defaults = Config::default().server;
        assert_eq!(defaults.metrics, MetricsAccess::Token);
        assert!(defaults.sse_keep_alive_ms < defaults.idle_timeout_ms);
        assert_eq!(defaults.max_connections, None);

        let err = Config::from_toml("[server]\nidle_timeout_ms = 15000\n", "x").unwrap_err();
        assert!(err.to_string().contains("sse_keep_alive_ms"), "{err}");
        for zero in ["header_read_timeout_ms", "max_connections", "max_uri_bytes"] {
            let err = Config::from_toml(&format!("[server]\n{zero} = 0\n"), "x").unwrap_err();
            assert!(err.to_string().contains(zero), "{err}");
        }
        let err = Config::from_toml("[server]\nmetrics = \"open\"\n", "x").unwrap_err();
        assert!(err.to_string().contains("open"), "{err}");
    }

    #[test]
    fn policies_and_models_parse() {
        let config = Config::from_toml(
            "[models.default]\nprovider = \"echo\"\ndelay_ms = 5\n[tools.policy]\n\"fs.write\" = \"allow\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(config.models["default"].delay_ms, Some(5));
        assert_eq!(config.tools.policy["fs.write"], Policy::Allow);
    }
}
