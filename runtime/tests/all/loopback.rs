//! A loopback HTTP/1.1 server that plays a script of replies and records the
//! requests it got, so that a test can speak a provider's wire format on
//! `127.0.0.1:0` and check what the host sent. Each connection serves one
//! request and closes, which also lets a reply end a stream early.

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
                    let n = {
                        let mut all = recorded.lock().unwrap();
                        all.push(request);
                        all.len() - 1
                    };
                    let reply = script[n.min(script.len() - 1)].clone();
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
