//! A tiny MCP server for Logbook's tests: `echo` answers with its text, `add`
//! with a sum, `pid` with its process id (so a test can kill it), `sleep`
//! after the milliseconds it is given (so a test can kill it mid-call),
//! `picture` with typed content (an annotated image, a text resource, one for
//! people only, a link and a structured result), `steps` with progress notifications on the way, and
//! `grow` makes the tool `late` appear and says the tool list changed, and
//! `client` tells the client's name, version and capabilities, and `big`
//! answers with a 30,000-byte image.
//! Built with rmcp's server side, so the host's MCP client is tested against
//! the official SDK's behaviour. Over stdio by default; with `--http [ADDR]`
//! it serves streamable HTTP on ADDR (a free loopback port when absent) and
//! prints `listening on URL` as its first line. With `--http ADDR
//! --unknown-session-400` it answers a request in a session it never opened
//! as the TypeScript SDK's servers do (the reference servers among them):
//! `400 Bad Request: No valid session ID provided`, where rmcp's own server
//! answers 404 (on which rmcp's client opens a new session by itself).

use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    Annotations, CallToolResult, ContentBlock, EmbeddedResource, ImageContent, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, Resource, ResourceContents, Role,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router,
};

/// A 1×1 red PNG.
const RED_DOT: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// Whether `grow` has been called (then `late` is listed).
static GROWN: AtomicBool = AtomicBool::new(false);

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct StepsRequest {
    /// How many steps to take, 100 ms each.
    n: u32,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoRequest {
    /// The text to send back.
    text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddRequest {
    a: i64,
    b: i64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct SleepRequest {
    /// How long to wait before answering.
    ms: u64,
}

#[derive(Clone)]
struct Echo;

#[tool_router]
impl Echo {
    #[tool(description = "Send the text back")]
    fn echo(&self, Parameters(EchoRequest { text }): Parameters<EchoRequest>) -> String {
        text
    }

    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddRequest { a, b }): Parameters<AddRequest>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "The server's process id")]
    fn pid(&self) -> String {
        std::process::id().to_string()
    }

    #[tool(description = "An image, a text resource, a link and a structured result")]
    fn picture(&self) -> CallToolResult {
        let mut result = CallToolResult::success(vec![
            ContentBlock::text("a red dot"),
            ContentBlock::Image(
                ImageContent::new(RED_DOT, "image/png")
                    .with_annotations(Annotations::default().with_priority(0.5)),
            ),
            ContentBlock::embedded_text("file:///notes/dot.txt", "the dot is red"),
            ContentBlock::Resource(
                EmbeddedResource::new(ResourceContents::text(
                    "for the people watching",
                    "file:///notes/people.txt",
                ))
                .with_annotations(Annotations::default().with_audience(vec![Role::User])),
            ),
            ContentBlock::ResourceLink(
                Resource::new("file:///notes/big.bin", "big.bin")
                    .with_mime_type("application/octet-stream")
                    .with_description("too big to send"),
            ),
        ]);
        result.structured_content = Some(serde_json::json!({"width": 1, "height": 1}));
        result
    }

    #[tool(description = "A large image: 30,000 bytes")]
    fn big(&self) -> CallToolResult {
        use base64::Engine;
        let bytes: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        CallToolResult::success(vec![
            ContentBlock::text("a big picture"),
            ContentBlock::image(data, "image/png"),
        ])
    }

    #[tool(description = "Take steps, reporting progress")]
    async fn steps(
        &self,
        Parameters(StepsRequest { n }): Parameters<StepsRequest>,
        context: RequestContext<RoleServer>,
    ) -> String {
        let token = context.meta.get_progress_token();
        // Each step is reported halfway through: the last report comes well
        // before the answer (a report after it is of no use to anyone).
        for i in 1..=n {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if let Some(token) = &token {
                let _ = context
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(i))
                            .with_total(f64::from(n))
                            .with_message(format!("step {i} of {n}")),
                    )
                    .await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        format!("{n} steps")
    }

    #[tool(description = "Add the tool `late`")]
    async fn grow(&self, context: RequestContext<RoleServer>) -> String {
        GROWN.store(true, Ordering::SeqCst);
        let _ = context.peer.notify_tool_list_changed().await;
        "grown".into()
    }

    #[tool(description = "The client's name and version, and its capabilities")]
    fn client(&self, context: RequestContext<RoleServer>) -> String {
        match context.peer.peer_info() {
            Some(info) => format!(
                "{} {} {}",
                info.client_info.name,
                info.client_info.version,
                serde_json::to_string(&info.capabilities).unwrap_or_default()
            ),
            None => "unknown".into(),
        }
    }

    #[tool(description = "Listed only after `grow`")]
    fn late(&self) -> String {
        "late".into()
    }

    #[tool(description = "Answer after a while")]
    async fn sleep(&self, Parameters(SleepRequest { ms }): Parameters<SleepRequest>) -> String {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        format!("slept {ms} ms")
    }
}

#[tool_handler]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_instructions("An echo server for tests")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let grown = GROWN.load(Ordering::SeqCst);
        let tools = Self::tool_router()
            .list_all()
            .into_iter()
            .filter(|t| grown || t.name != "late")
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--http") {
        let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
        let strict = args.next().as_deref() == Some("--unknown-session-400");
        use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
        use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
        let service = StreamableHttpService::new(
            || Ok(Echo),
            LocalSessionManager::default().into(),
            StreamableHttpServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on http://{}/mcp", listener.local_addr()?);
        let mut router = axum::Router::new().nest_service("/mcp", service);
        if strict {
            let opened = Opened::default();
            router = router.layer(axum::middleware::from_fn(move |request, next| {
                refuse_unknown_sessions(opened.clone(), request, next)
            }));
        }
        axum::serve(listener, router).await?;
        return Ok(());
    }
    let server = Echo.serve(rmcp::transport::stdio()).await?;
    server.waiting().await?;
    Ok(())
}

/// The session ids this process has handed out.
type Opened = std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

/// Refuse a request in a session this process did not open, with the
/// TypeScript SDK's answer; note the sessions it opens.
async fn refuse_unknown_sessions(
    opened: Opened,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    const HEADER: &str = "mcp-session-id";
    let known = |id: &str| opened.lock().map(|o| o.contains(id)).unwrap_or(false);
    if let Some(id) = request.headers().get(HEADER).and_then(|v| v.to_str().ok())
        && !known(id)
    {
        let body = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}"#;
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    let response = next.run(request).await;
    if let Some(id) = response.headers().get(HEADER).and_then(|v| v.to_str().ok())
        && let Ok(mut opened) = opened.lock()
    {
        opened.insert(id.to_string());
    }
    response
}
