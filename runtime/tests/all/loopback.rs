//! A loopback HTTP/1.1 server that plays a script of replies and records the
//! requests it got, so that a test can speak a provider's wire format on
//! `127.0.0.1:0` and check what the host sent. Each connection serves one
//! request and closes, which also lets a reply end a stream early. A reply
//! may echo the request's headers: `{{NAME}}` in its body or stream chunks is
//! replaced by the value of request header NAME (lower case), the way a
//! provider quotes a key back. Below the server: replies built from the
//! providers' documented examples.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
    /// When the request arrived.
    pub at: std::time::Instant,
}

/// What the server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status, extra headers and a JSON (or any) body.
    Body {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// An event stream, written as these chunks; the connection then closes.
    Sse(Vec<String>),
    /// Never answer (for a while).
    Hang,
}

impl Reply {
    pub fn json(body: serde_json::Value) -> Reply {
        Reply::Body {
            status: 200,
            headers: vec![],
            body: body.to_string(),
        }
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Body {
            status,
            headers: vec![],
            body: body.to_string(),
        }
    }

    /// This reply with each `{{NAME}}` replaced by request header NAME.
    fn echoing(&self, request: &HashMap<String, String>) -> Reply {
        let echo = |text: &str| {
            request
                .iter()
                .fold(text.to_string(), |text, (name, value)| {
                    text.replace(&format!("{{{{{name}}}}}"), value)
                })
        };
        match self {
            Reply::Body {
                status,
                headers,
                body,
            } => Reply::Body {
                status: *status,
                headers: headers.clone(),
                body: echo(body),
            },
            Reply::Sse(chunks) => Reply::Sse(chunks.iter().map(|c| echo(c)).collect()),
            Reply::Hang => Reply::Hang,
        }
    }

    /// SSE events from `(event name or "", data)` pairs.
    pub fn sse(events: &[(&str, String)]) -> Reply {
        Reply::Sse(
            events
                .iter()
                .map(|(name, data)| {
                    if name.is_empty() {
                        format!("data: {data}\n\n")
                    } else {
                        format!("event: {name}\ndata: {data}\n\n")
                    }
                })
                .collect(),
        )
    }
}

/// A running loopback server.
pub struct Loopback {
    pub base_url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Loopback {
    /// Serve `script` in order; the last reply repeats.
    pub async fn start(script: Vec<Reply>) -> Loopback {
        Loopback::start_checked(script, |_| None).await
    }

    /// Like [`Loopback::start`], but a request for which `check` gives a
    /// reply gets that reply instead of its turn of the script (and is
    /// recorded all the same): a server that refuses what it cannot read.
    pub async fn start_checked(
        script: Vec<Reply>,
        check: fn(&serde_json::Value) -> Option<Reply>,
    ) -> Loopback {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    let headers = request.headers.clone();
                    let refused = check(&request.body);
                    let n = {
                        let mut all = recorded.lock().unwrap();
                        all.push(request);
                        all.len() - 1
                    };
                    let reply = refused
                        .unwrap_or_else(|| script[n.min(script.len() - 1)].clone())
                        .echoing(&headers);
                    let _ = write_reply(&mut socket, reply).await;
                });
            }
        });
        Loopback { base_url, requests }
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(serde_json::Value::Null);
    Some(Recorded {
        path,
        headers,
        body,
        at: std::time::Instant::now(),
    })
}

async fn write_reply(socket: &mut tokio::net::TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Body {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(body.as_bytes()).await?;
        }
        Reply::Hang => tokio::time::sleep(std::time::Duration::from_secs(30)).await,
        Reply::Sse(chunks) => {
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
                )
                .await?;
            for chunk in chunks {
                socket.write_all(chunk.as_bytes()).await?;
                socket.flush().await?;
            }
        }
    }
    socket.shutdown().await
}

// Replies built from the providers' documented examples.

pub fn oa_chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
    serde_json::json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
           "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb",
           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    .to_string()
}

pub fn oa_usage(prompt: u64, completion: u64) -> String {
    serde_json::json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
           "model": "gpt-4o-mini", "choices": [],
           "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                     "total_tokens": prompt + completion}})
    .to_string()
}

/// A streamed tool call of `fs_read` on note.txt, its arguments in pieces.
pub fn oa_stream_tool_call() -> Reply {
    Reply::sse(&[
        (
            "",
            oa_chunk(
                serde_json::json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
            "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
            "function": {"name": "fs_read", "arguments": ""}}]}),
                None,
            ),
        ),
        (
            "",
            oa_chunk(
                serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"pa"}}]}),
                None,
            ),
        ),
        (
            "",
            oa_chunk(
                serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": "th\":\"note.txt\"}"}}]}),
                None,
            ),
        ),
        ("", oa_chunk(serde_json::json!({}), Some("tool_calls"))),
        ("", oa_usage(82, 17)),
        ("", "[DONE]".into()),
    ])
}

pub fn oa_stream_text(pieces: &[&str]) -> Reply {
    let mut events = vec![(
        "",
        oa_chunk(
            serde_json::json!({"role": "assistant", "content": ""}),
            None,
        ),
    )];
    for piece in pieces {
        events.push(("", oa_chunk(serde_json::json!({"content": piece}), None)));
    }
    events.push(("", oa_chunk(serde_json::json!({}), Some("stop"))));
    events.push(("", oa_usage(120, 9)));
    events.push(("", "[DONE]".into()));
    Reply::sse(&events)
}

pub fn oa_whole_text(text: &str) -> Reply {
    Reply::json(serde_json::json!({
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion",
        "created": 1741570283, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                     "refusal": null, "annotations": []},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163}
    }))
}

pub fn an_stream_text(text: &[&str]) -> Reply {
    let mut events = vec![
        ("message_start", serde_json::json!({"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}).to_string()),
        ("content_block_start", serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}).to_string()),
        ("ping", serde_json::json!({"type": "ping"}).to_string()),
    ];
    for piece in text {
        events.push(("content_block_delta", serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}).to_string()));
    }
    events.push((
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}).to_string(),
    ));
    events.push(("message_delta", serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}}).to_string()));
    events.push((
        "message_stop",
        serde_json::json!({"type": "message_stop"}).to_string(),
    ));
    Reply::sse(&events)
}
