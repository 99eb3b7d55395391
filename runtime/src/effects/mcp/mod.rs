//! MCP servers as tools, through the official Rust SDK (`rmcp`): a server is
//! a command spoken to over stdio or a streamable HTTP URL. Its tools are
//! offered as `SERVER.TOOL`, with the JSON Schemas the server gives.
//!
//! Servers are started on first need (a session is created or woken, or a
//! tool is called), never by commands that only read the journal, all at
//! once; a stdio server is killed when the host is dropped. A server that
//! dies, or stops answering, is started again (reconnected, for HTTP: a new
//! session) at the next call, with backoff (see `server`); the call that saw
//! it die fails, and its result in the log says so. A stdio server gets an
//! empty environment but for `PATH`, `HOME`, `LANG`, `TMPDIR` and the
//! variables its `env_from` names: the host's API keys are not its business.

mod server;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use serde_json::Value;

use self::server::McpServer;
use super::{SetupError, Tool, ToolContext, ToolError};
use crate::config::{McpServerConfig, Policy};
use crate::journal::ToolSpec;

/// Time to start a server and list its tools.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The configured MCP servers, and their tools once they have been listed.
#[derive(Default)]
pub(crate) struct McpServers {
    servers: Vec<Arc<McpServer>>,
    tools: tokio::sync::OnceCell<BTreeMap<String, Arc<dyn Tool>>>,
}

impl McpServers {
    /// The servers a configuration names, none started.
    pub(crate) fn new(
        servers: &BTreeMap<String, McpServerConfig>,
    ) -> Result<McpServers, SetupError> {
        Ok(McpServers {
            servers: servers
                .iter()
                .map(|(name, config)| McpServer::new(name, config).map(Arc::new))
                .collect::<Result<_, _>>()?,
            tools: tokio::sync::OnceCell::new(),
        })
    }

    /// Whether any server is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Every server's tools, starting the servers (all at once) and listing
    /// them the first time. A failure is not kept: the next call tries again.
    pub(crate) async fn start(&self) -> Result<&BTreeMap<String, Arc<dyn Tool>>, SetupError> {
        self.tools
            .get_or_try_init(|| async {
                let listed = futures_util::future::join_all(self.servers.iter().map(|server| {
                    let server = server.clone();
                    async move {
                        let tools = tokio::time::timeout(CONNECT_TIMEOUT, server.list())
                            .await
                            .map_err(|_| SetupError::Mcp {
                                server: server.name.clone(),
                                why: format!("no answer within {CONNECT_TIMEOUT:?}"),
                            })??;
                        Ok::<_, SetupError>((server, tools))
                    }
                }))
                .await;
                let mut tools = BTreeMap::new();
                for found in listed {
                    let (server, listed) = found?;
                    for tool in listed {
                        let spec = ToolSpec {
                            name: format!("{}.{}", server.name, tool.name),
                            description: tool
                                .description
                                .as_deref()
                                .unwrap_or_default()
                                .to_string(),
                            parameters: Value::Object((*tool.input_schema).clone()),
                        };
                        let tool = McpTool {
                            server: server.clone(),
                            tool: tool.name.to_string(),
                            spec,
                        };
                        tools.insert(tool.spec.name.clone(), Arc::new(tool) as Arc<dyn Tool>);
                    }
                }
                Ok(tools)
            })
            .await
    }

    /// The tools, if the servers have been started.
    pub(crate) fn started(&self) -> Option<&BTreeMap<String, Arc<dyn Tool>>> {
        self.tools.get()
    }
}

/// One tool of an MCP server.
pub struct McpTool {
    server: Arc<McpServer>,
    /// The name the server knows it by.
    tool: String,
    spec: ToolSpec,
}

impl McpTool {
    async fn run(&self, arguments: Value) -> Result<String, ToolError> {
        let Value::Object(arguments) = arguments else {
            return Err(ToolError("arguments must be a JSON object".into()));
        };
        let server = &self.server;
        let timeout = server.timeout();
        // Starting the server again (after its backoff) counts against the call's time.
        let connected = tokio::time::timeout(timeout, server.client())
            .await
            .map_err(|_| {
                ToolError(format!(
                    "the MCP server {:?} did not start within {timeout:?}",
                    server.name
                ))
            })?
            .map_err(|e| ToolError(e.to_string()))?;
        let client = connected.client;
        let params = CallToolRequestParams::new(self.tool.clone()).with_arguments(arguments);
        let result = match tokio::time::timeout(timeout, client.call_tool(params)).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) if lost(&e) => {
                server.failed(&client).await;
                return Err(ToolError(format!(
                    "the MCP call failed: {e} (the MCP server {:?} stopped; it is started again for the next call)",
                    server.name
                )));
            }
            Ok(Err(e)) => return Err(ToolError(format!("the MCP call failed: {e}"))),
            Err(_) => {
                // A server that does not answer may be gone (an HTTP server
                // that restarted): the next call starts over.
                server.failed(&client).await;
                return Err(ToolError(format!(
                    "no answer within {timeout:?} (the connection to the MCP server {:?} is started again for the next call)",
                    server.name
                )));
            }
        };
        server.succeeded().await;
        if connected.restarted {
            tracing::info!(server = %server.name, tool = %self.tool, "first call after a restart succeeded");
        }
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

/// Whether an error means the connection is gone (rather than the server
/// refusing this one call).
fn lost(error: &ServiceError) -> bool {
    matches!(
        error,
        ServiceError::TransportClosed | ServiceError::TransportSend(_)
    )
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
        self.server.idempotent()
    }

    fn call(
        &self,
        _cx: ToolContext,
        arguments: Value,
    ) -> Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + '_>> {
        Box::pin(self.run(arguments))
    }
}
