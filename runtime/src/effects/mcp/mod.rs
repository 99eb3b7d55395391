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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rmcp::model::{
    Annotations, CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest,
    ContentBlock, ResourceContents, ServerResult,
};
use rmcp::service::{PeerRequestOptions, ServiceError};
use serde_json::Value;

use self::server::McpServer;
use super::{SetupError, Tool, ToolAnswer, ToolContext, ToolError};
use crate::config::{McpServerConfig, Policy};
use crate::journal::{PartData, ToolPart, ToolSpec};

/// The tools of every server, by `SERVER.TOOL`.
pub(crate) type McpTools = BTreeMap<String, Arc<dyn Tool>>;

/// Time to start a server and list its tools.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The configured MCP servers, and their tools once they have been listed.
#[derive(Default)]
pub(crate) struct McpServers {
    servers: Vec<Arc<McpServer>>,
    /// The tools as last listed.
    tools: RwLock<Option<Arc<McpTools>>>,
    /// Set by a server's `notifications/tools/list_changed`.
    stale: Arc<AtomicBool>,
    /// One listing at a time.
    listing: tokio::sync::Mutex<()>,
}

impl McpServers {
    /// The servers a configuration names, none started.
    pub(crate) fn new(
        servers: &BTreeMap<String, McpServerConfig>,
    ) -> Result<McpServers, SetupError> {
        let stale = Arc::new(AtomicBool::new(false));
        Ok(McpServers {
            servers: servers
                .iter()
                .map(|(name, config)| McpServer::new(name, config, stale.clone()).map(Arc::new))
                .collect::<Result<_, _>>()?,
            tools: RwLock::default(),
            stale,
            listing: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether any server is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Every server's tools, starting the servers (all at once) and listing
    /// them the first time, and again after a server said they changed. A
    /// failure is not kept: the next call tries again.
    pub(crate) async fn start(&self) -> Result<Arc<McpTools>, SetupError> {
        if let Some(tools) = self.fresh() {
            return Ok(tools);
        }
        let _one = self.listing.lock().await;
        if let Some(tools) = self.fresh() {
            return Ok(tools);
        }
        // Cleared before listing: a change announced during it lists again.
        self.stale.store(false, Ordering::Release);
        let tools = Arc::new(self.list().await.inspect_err(|_| {
            self.stale.store(true, Ordering::Release);
        })?);
        if let Ok(mut slot) = self.tools.write() {
            *slot = Some(tools.clone());
        }
        Ok(tools)
    }

    /// The tools as listed, unless a server said they changed since.
    fn fresh(&self) -> Option<Arc<McpTools>> {
        if self.stale.load(Ordering::Acquire) {
            return None;
        }
        self.started()
    }

    /// List every server's tools, starting the servers that are not running.
    async fn list(&self) -> Result<McpTools, SetupError> {
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
                    description: tool.description.as_deref().unwrap_or_default().to_string(),
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
    }

    /// The tools, if the servers have been started.
    pub(crate) fn started(&self) -> Option<Arc<McpTools>> {
        self.tools.read().ok().and_then(|t| t.clone())
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
    async fn run(&self, cx: ToolContext, arguments: Value) -> Result<ToolAnswer, ToolError> {
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
        let client = connected.client.clone();
        let params = CallToolRequestParams::new(self.tool.clone()).with_arguments(arguments);
        let result = match call(&connected, params, timeout, &cx).await {
            Ok(result) => result,
            Err(ServiceError::Timeout { .. }) => {
                // A server that does not answer may be gone (an HTTP server
                // that restarted): the next call starts over.
                server.failed(&client).await;
                return Err(ToolError(format!(
                    "no answer within {timeout:?} (the connection to the MCP server {:?} is started again for the next call)",
                    server.name
                )));
            }
            Err(e) if lost(&e) => {
                server.failed(&client).await;
                return Err(ToolError(format!(
                    "the MCP call failed: {e} (the MCP server {:?} stopped; it is started again for the next call)",
                    server.name
                )));
            }
            Err(e) => return Err(ToolError(format!("the MCP call failed: {e}"))),
        };
        server.succeeded().await;
        if connected.restarted {
            tracing::info!(server = %server.name, tool = %self.tool, "first call after a restart succeeded");
        }
        // An error result is read as its text.
        match answer(result) {
            (answer, true) => Err(ToolError(answer.text)),
            (answer, false) => Ok(answer),
        }
    }
}

/// Send `tools/call` and wait for its result, sending the server's progress
/// notifications for it to the context's sink meanwhile. A server that
/// answers with something else than a result (it asks for input, or makes
/// the call a task) is refused: a session's effects go through its log.
async fn call(
    connected: &server::Connected,
    params: CallToolRequestParams,
    timeout: Duration,
    cx: &ToolContext,
) -> Result<CallToolResult, ServiceError> {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = connected
        .client
        .send_cancellable_request(request, PeerRequestOptions::with_timeout(timeout))
        .await?;
    // rmcp gives every request a progress token; a notification that arrives
    // before this line (a very fast server) is not shown, which costs nothing
    // but that one update.
    let _watch = cx.progress.clone().map(|sink| {
        connected
            .client
            .service()
            .watch(handle.progress_token.clone(), cx.key.clone(), sink)
    });
    match handle.await_response().await? {
        ServerResult::CallToolResult(result) => Ok(result),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

/// An MCP result as text and typed parts: text blocks become the text, the
/// others parts, each in the form the providers send natively. When there
/// is no text but a structured result, its JSON is the text (as the spec
/// asks servers to do themselves). Also whether the server flagged it an error.
fn answer(result: CallToolResult) -> (ToolAnswer, bool) {
    let mut texts = Vec::new();
    let mut parts = Vec::new();
    for block in result.content {
        match block {
            ContentBlock::Text(t) => texts.push(t.text),
            ContentBlock::Image(i) => parts.push(ToolPart::Image {
                mime_type: i.mime_type,
                data: PartData::Base64(i.data),
                annotations: annotations(i.annotations.as_ref()),
            }),
            ContentBlock::Audio(a) => parts.push(ToolPart::Audio {
                mime_type: a.mime_type,
                data: PartData::Base64(a.data),
                annotations: annotations(a.annotations.as_ref()),
            }),
            ContentBlock::Resource(r) => parts.push(match r.resource {
                ResourceContents::TextResourceContents {
                    uri,
                    mime_type,
                    text,
                    ..
                } => ToolPart::Resource {
                    uri,
                    mime_type,
                    text: Some(text),
                    data: None,
                    annotations: annotations(r.annotations.as_ref()),
                },
                ResourceContents::BlobResourceContents {
                    uri,
                    mime_type,
                    blob,
                    ..
                } => ToolPart::Resource {
                    uri,
                    mime_type,
                    text: None,
                    data: Some(PartData::Base64(blob)),
                    annotations: annotations(r.annotations.as_ref()),
                },
                other => {
                    texts.push(serde_json::to_string(&other).unwrap_or_default());
                    continue;
                }
            }),
            ContentBlock::ResourceLink(l) => parts.push(ToolPart::ResourceLink {
                annotations: annotations(l.annotations.as_ref()),
                uri: l.uri,
                name: l.name,
                mime_type: l.mime_type,
                description: l.description,
            }),
            // A kind of block newer than this host: kept as its JSON text.
            other => texts.push(serde_json::to_string(&other).unwrap_or_default()),
        }
    }
    let structured = result.structured_content.map(|v| v.to_string());
    if texts.is_empty()
        && let Some(structured) = &structured
    {
        texts.push(structured.clone());
    }
    let answer = ToolAnswer {
        text: texts.join("\n"),
        parts,
        structured,
    };
    (answer, result.is_error == Some(true))
}

/// A block's annotations as the log keeps them: JSON text.
fn annotations(a: Option<&Annotations>) -> Option<String> {
    a.and_then(|a| serde_json::to_string(a).ok())
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
        cx: ToolContext,
        arguments: Value,
    ) -> Pin<Box<dyn Future<Output = Result<ToolAnswer, ToolError>> + Send + '_>> {
        Box::pin(self.run(cx, arguments))
    }
}
