//! A tiny MCP server for Logbook's tests: `echo` answers with its text, `add`
//! with a sum, `pid` with its process id (so a test can kill it), `sleep`
//! after the milliseconds it is given (so a test can kill it mid-call).
//! Built with rmcp's server side, so the host's MCP client is tested against
//! the official SDK's behaviour. Over stdio by default; with `--http [ADDR]`
//! it serves streamable HTTP on ADDR (a free loopback port when absent) and
//! prints `listening on URL` as its first line. With `--http ADDR
//! --unknown-session-400` it answers a request in a session it never opened
//! as the TypeScript SDK's servers do (the reference servers among them):
//! `400 Bad Request: No valid session ID provided`, where rmcp's own server
//! answers 404 (on which rmcp's client opens a new session by itself).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

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

    #[tool(description = "Answer after a while")]
    async fn sleep(&self, Parameters(SleepRequest { ms }): Parameters<SleepRequest>) -> String {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        format!("slept {ms} ms")
    }
}

#[tool_handler]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("An echo server for tests")
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
