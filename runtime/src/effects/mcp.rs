//! MCP servers as tools, through the official Rust SDK (`rmcp`): a server is
//! a command spoken to over stdio or a streamable HTTP URL. Its tools are
//! offered as `SERVER.TOOL`, with the JSON Schemas the server gives.
//!
//! Servers are started when the host opens and live as long as it does; a
//! stdio server is killed when the host is dropped. A stdio server gets an
//! empty environment but for `PATH`, `HOME`, `LANG`, `TMPDIR` and the
//! variables its `env_from` names: the host's API keys are not its business.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::Value;

use super::{SetupError, Tool, ToolContext, ToolError};
use crate::config::{McpServerConfig, Policy};
use crate::journal::ToolSpec;

/// Variables every stdio server gets from the host, when set.
const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "TMPDIR"];

/// Time to start a server and list its tools.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

type Client = RunningService<RoleClient, ()>;

/// One tool of an MCP server.
pub struct McpTool {
    client: Arc<Client>,
    /// The name the server knows it by.
    tool: String,
    spec: ToolSpec,
    timeout: Duration,
    idempotent: bool,
}

/// Start every configured server and list its tools. Runs on the caller's
/// tokio runtime (it must be multi-threaded: the connections live on it).
pub(crate) fn connect_all(
    servers: &BTreeMap<String, McpServerConfig>,
) -> Result<Vec<Arc<dyn Tool>>, SetupError> {
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
        .ok_or(SetupError::McpRuntime)?;
    tokio::task::block_in_place(|| {
        handle.block_on(async {
            let mut tools = Vec::new();
            for (name, config) in servers {
                let found = tokio::time::timeout(CONNECT_TIMEOUT, connect(name, config))
                    .await
                    .map_err(|_| SetupError::Mcp {
                        server: name.clone(),
                        why: format!("no answer within {CONNECT_TIMEOUT:?}"),
                    })??;
                tools.extend(found);
            }
            Ok(tools)
        })
    })
}

async fn connect(name: &str, config: &McpServerConfig) -> Result<Vec<Arc<dyn Tool>>, SetupError> {
    let refused = |why: String| SetupError::Mcp {
        server: name.to_string(),
        why,
    };
    let fail = |what: &str, e: &dyn std::fmt::Display| refused(format!("{what}: {e}"));
    let client: Client = match (&config.command, &config.url) {
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
            ().serve(transport)
                .await
                .map_err(|e| fail("initialization failed", &e))?
        }
        (None, Some(url)) => {
            use rmcp::transport::StreamableHttpClientTransport;
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            super::providers::install_crypto_provider();
            let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            if let Some(var) = &config.bearer_env {
                let token = std::env::var(var)
                    .map_err(|_| refused(format!("{var} (bearer_env) is not set")))?;
                transport_config = transport_config.auth_header(token);
            }
            let transport = StreamableHttpClientTransport::from_config(transport_config);
            ().serve(transport)
                .await
                .map_err(|e| fail("initialization failed", &e))?
        }
        _ => {
            return Err(refused("give exactly one of `command` and `url`".into()));
        }
    };
    let listed = client
        .list_all_tools()
        .await
        .map_err(|e| fail("cannot list tools", &e))?;
    let client = Arc::new(client);
    let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(60_000));
    Ok(listed
        .into_iter()
        .map(|tool| {
            let spec = ToolSpec {
                name: format!("{name}.{}", tool.name),
                description: tool.description.as_deref().unwrap_or_default().to_string(),
                parameters: Value::Object((*tool.input_schema).clone()),
            };
            Arc::new(McpTool {
                client: client.clone(),
                tool: tool.name.to_string(),
                spec,
                timeout,
                idempotent: config.idempotent,
            }) as Arc<dyn Tool>
        })
        .collect())
}

impl McpTool {
    async fn run(&self, arguments: Value) -> Result<String, ToolError> {
        let Value::Object(arguments) = arguments else {
            return Err(ToolError("arguments must be a JSON object".into()));
        };
        let params = CallToolRequestParams::new(self.tool.clone()).with_arguments(arguments);
        let result = tokio::time::timeout(self.timeout, self.client.call_tool(params))
            .await
            .map_err(|_| ToolError(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| ToolError(format!("the MCP call failed: {e}")))?;
        let mut parts: Vec<String> = result
            .content
            .iter()
            .map(|block| match block.as_text() {
                Some(text) => text.text.clone(),
                None => serde_json::to_string(block).unwrap_or_default(),
            })
            .collect();
        if parts.is_empty()
            && let Some(structured) = &result.structured_content
        {
            parts.push(structured.to_string());
        }
        let text = parts.join("\n");
        if result.is_error == Some(true) {
            Err(ToolError(text))
        } else {
            Ok(text)
        }
    }
}

impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    /// MCP tools can do anything their server can: a human approves each
    /// call unless the policy says otherwise.
    fn default_policy(&self) -> Policy {
        Policy::Ask
    }

    fn idempotent(&self) -> bool {
        self.idempotent
    }

    fn call(
        &self,
        _cx: ToolContext,
        arguments: Value,
    ) -> Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + '_>> {
        Box::pin(self.run(arguments))
    }
}
