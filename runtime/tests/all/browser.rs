//! A real browser against the server: Debian's Chromium, headless, loads a
//! page from another loopback origin that tries every write a page can make
//! without the server's consent, and the log must show none of them. Then
//! the same kind of page from an origin listed in `[server] allowed_origins`
//! decides the approval and sends an input, and the log must show both: the
//! positive control, without which a harness that never ran the page would
//! pass.
//!
//! Each page is served by a one-page HTTP server on its own `127.0.0.1:0`
//! port and writes what it saw into its DOM, which Chromium prints
//! (`--dump-dom`). Chromium comes from `scripts/test.sh`; set
//! `LOGBOOK_SKIP_BROWSER=1` to skip this test where it cannot be installed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use logbook::journal::{EventBody, StoredEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::fixtures::*;
use crate::server::{Api, Server, WRITE_A};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser to run, or `None` when the caller asked to skip it.
fn chromium() -> Option<&'static Path> {
    if std::env::var("LOGBOOK_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("skipped: LOGBOOK_SKIP_BROWSER=1 (this test needs {CHROMIUM})");
        return None;
    }
    let path = Path::new(CHROMIUM);
    assert!(
        path.exists(),
        "{CHROMIUM} is missing: run scripts/test.sh, which installs Chromium \
         (or `apt-get install chromium`), or set LOGBOOK_SKIP_BROWSER=1 to skip this test"
    );
    Some(path)
}

/// Serve `html` at `/` (and 404 elsewhere) on `listener`, one request per
/// connection, until the task is aborted.
fn serve_page(listener: TcpListener, html: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let (status, body) = if head.starts_with(b"GET / ") {
                    ("200 OK", html)
                } else {
                    ("404 Not Found", String::new())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    })
}

/// Load `url` in a fresh headless Chromium and return the DOM it ends with.
async fn dump_dom(chromium: &Path, url: &str) -> String {
    let dir = tempfile::tempdir().expect("a profile dir");
    let out = dir.path().join("dom.html");
    let err = dir.path().join("stderr.txt");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("a DOM file"))
        .stderr(std::fs::File::create(&err).expect("a stderr file"))
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + GUARD;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "deadlock guard: chromium never finished: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let dom = std::fs::read_to_string(&out).expect("the DOM");
    assert!(
        status.success() && !dom.is_empty(),
        "chromium failed ({status}): {}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    dom
}

/// The page's report: the text of its `<pre id="out">`, one line per attempt.
fn report(dom: &str) -> Vec<String> {
    let start = dom.find("<pre id=\"out\">").expect("the report element") + 14;
    let end = start + dom[start..].find("</pre>").expect("the report's end");
    dom[start..end].lines().map(str::to_string).collect()
}

/// A page whose script runs `body` (JavaScript with `api`, `say` and
/// `attempt` in scope), then says `done`.
fn page(api: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<meta charset="utf-8"><title>a page on another origin</title>
<pre id="out"></pre>
<script>
const api = "{api}";
const out = document.getElementById("out");
const say = line => {{ out.textContent += line + "\n"; }};
const attempt = async (name, url, init) => {{
  try {{
    const r = await fetch(url, init);
    say(name + ": answered " + r.type + " " + r.status + " " + (r.type === "opaque" ? "" : await r.text()));
  }} catch (e) {{
    say(name + ": blocked " + e.name);
  }}
}};
(async () => {{
{body}
  say("done");
}})();
</script>
"#
    )
}

/// Every way a page may write without consent: `no-cors` fetches with the
/// three types they may send, a cors-mode JSON fetch (its preflight must
/// fail), and a real form whose text/plain body is valid JSON.
fn attack(api: &str, key: &str) -> String {
    let script = format!(
        r#"
  await attempt("no-cors text/plain approval", api + "/approvals/{key}",
    {{method: "POST", mode: "no-cors", body: '{{"allow": true}}'}});
  await attempt("no-cors text/plain input", api + "/input",
    {{method: "POST", mode: "no-cors", body: '{{"text": "injected as text"}}'}});
  await attempt("no-cors form-urlencoded input", api + "/input",
    {{method: "POST", mode: "no-cors", body: new URLSearchParams({{text: "injected as a form"}})}});
  const multipart = new FormData();
  multipart.append("text", "injected as multipart");
  await attempt("no-cors multipart input", api + "/input",
    {{method: "POST", mode: "no-cors", body: multipart}});
  await attempt("cors json approval", api + "/approvals/{key}",
    {{method: "POST", mode: "cors", headers: {{"content-type": "application/json"}}, body: '{{"allow": true}}'}});
  await attempt("cors json input", api + "/input",
    {{method: "POST", mode: "cors", headers: {{"content-type": "application/json"}}, body: '{{"text": "injected by cors"}}'}});
  // A form posting text/plain `NAME=VALUE`: here `{{"allow": true, "reason": "="}}`.
  const sink = document.createElement("iframe");
  sink.name = "sink";
  document.body.appendChild(sink);
  const form = document.createElement("form");
  form.method = "POST";
  form.action = api + "/approvals/{key}";
  form.enctype = "text/plain";
  form.target = "sink";
  const field = document.createElement("input");
  field.name = '{{"allow": true, "reason": "';
  field.value = '"}}';
  form.appendChild(field);
  document.body.appendChild(form);
  await new Promise(loaded => {{
    // Loaded once the frame holds the server's answer (another origin).
    sink.addEventListener("load", () => {{
      try {{ sink.contentWindow.location.href; }} catch (e) {{ loaded(); }}
    }});
    form.submit();
  }});
  say("form text/plain approval: submitted");
"#
    );
    page(api, &script)
}

/// What a listed origin's page does: decide the approval and send an input,
/// as a cors-mode JSON client, then follow the log with a plain
/// `EventSource` and its `onmessage`.
fn control(api: &str, key: &str) -> String {
    let script = format!(
        r#"
  await attempt("cors json approval", api + "/approvals/{key}",
    {{method: "POST", mode: "cors", headers: {{"content-type": "application/json"}},
      body: '{{"allow": true, "reason": "from a listed origin"}}'}});
  await attempt("cors json input", api + "/input",
    {{method: "POST", mode: "cors", headers: {{"content-type": "application/json"}},
      body: '{{"text": "hello from a listed origin"}}'}});
  // A plain EventSource: with `?events=message`, `onmessage` sees the log.
  await new Promise(done => {{
    const source = new EventSource(api + "/events?events=message");
    const end = line => {{ say(line); clearTimeout(timer); source.close(); done(); }};
    const timer = setTimeout(() => end("eventsource: no message"), 5000);
    source.onmessage = m => end("eventsource message: " + m.lastEventId + " " + JSON.parse(m.data).kind);
    source.onerror = () => end("eventsource: error");
  }});
"#
    );
    page(api, &script)
}

fn decisions(log: &[StoredEvent]) -> usize {
    log.iter()
        .filter(|e| matches!(e.event.body, EventBody::ApprovalDecided { .. }))
        .count()
}

fn inputs(log: &[StoredEvent]) -> Vec<String> {
    log.iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Input { content, .. } => Some(logbook::journal::plain_text(content)),
            _ => None,
        })
        .collect()
}

async fn pending_key(api: &Api) -> String {
    let (_, info) = api.get("/v1/sessions/victim").await;
    info["pending_approvals"][0]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("a pending approval: {info}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_cannot_approve_or_inject_and_a_listed_one_can() {
    let Some(chromium) = chromium() else { return };
    let started = Instant::now();
    let stranger = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let friend = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stranger_url = format!("http://{}/", stranger.local_addr().expect("address"));
    let friend_origin = format!("http://{}", friend.local_addr().expect("address"));
    let mut config = config();
    config.server.allowed_origins = vec![friend_origin.clone()];
    let server = Server::start(config).await;
    let api = server.api(None);
    api.add_guest("assistant").await;
    let id = api.session("assistant", "victim").await;
    let waited = api.send_and_wait("victim", WRITE_A).await;
    assert_eq!(waited["status"], "waiting-approval", "{waited}");
    let key = pending_key(&api).await;
    let target = format!("{}/v1/sessions/{id}", api.base);
    let file = server
        .host
        .workspace_dir(id.parse().expect("an id"))
        .join("a.txt");
    let before = api.all_events(&id).await;

    // The stranger's page: every attempt runs, none gets through.
    let page = serve_page(stranger, attack(&target, &key));
    let dom = dump_dom(chromium, &stranger_url).await;
    page.abort();
    let seen = report(&dom);
    eprintln!("the stranger's page saw:\n{}", seen.join("\n"));
    assert_eq!(seen.last().map(String::as_str), Some("done"), "{dom}");
    assert_eq!(seen.len(), 8, "every attempt reported: {seen:?}");
    for line in &seen[..4] {
        assert!(line.contains("answered opaque"), "a no-cors send: {line}");
    }
    for line in &seen[4..6] {
        assert!(
            line.ends_with("blocked TypeError"),
            "preflight refused: {line}"
        );
    }
    let after = api.all_events(&id).await;
    let kinds: Vec<&str> = after.iter().map(|e| e.event.body.kind()).collect();
    assert_eq!(after.len(), before.len(), "the log moved: {kinds:?}");
    assert_eq!(decisions(&after), 0);
    assert_eq!(inputs(&after), [WRITE_A]);
    assert!(!file.exists(), "the tool never ran");
    let (_, info) = api.get("/v1/sessions/victim").await;
    assert_eq!(info["status"], "waiting-approval", "{info}");

    // The positive control: the listed origin's page gets through.
    let page = serve_page(friend, control(&target, &key));
    let dom = dump_dom(chromium, &format!("{friend_origin}/")).await;
    page.abort();
    let seen = report(&dom);
    eprintln!("the listed origin's page saw:\n{}", seen.join("\n"));
    assert_eq!(seen.len(), 4, "{dom}");
    assert!(
        seen[0].starts_with("cors json approval: answered cors 200 {\"seq\":"),
        "{seen:?}"
    );
    assert!(
        seen[1].starts_with("cors json input: answered cors 202 {\"seq\":"),
        "{seen:?}"
    );
    assert_eq!(seen[2], "eventsource message: 0 created", "{seen:?}");
    api.wait_status("victim", "idle").await;
    let after = api.all_events(&id).await;
    assert_eq!(decisions(&after), 1);
    assert_eq!(inputs(&after), [WRITE_A, "hello from a listed origin"]);
    assert_eq!(std::fs::read_to_string(&file).expect("written"), "x");
    server.stop().await;
    eprintln!("browser test took {:?}", started.elapsed());
}
