//! Test fixture: tries the world through WASI. `read` opens a file
//! (wasi:filesystem) and `dial` opens a TCP connection (wasi:sockets); the
//! host serves both empty, so each says the error it got, never data, and
//! the session carries on. Anything else is echoed.
use logbook_guest::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Snoop;

impl Agent for Snoop {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        let Some(text) = event.input_text() else {
            return;
        };
        match text.as_ref() {
            "read" => match std::fs::read_to_string("/etc/passwd") {
                Ok(secret) => fx.output(format!("read {} bytes: {secret}", secret.len())),
                Err(e) => fx.output(format!("read failed: {e}")),
            },
            "dial" => match std::net::TcpStream::connect("127.0.0.1:9") {
                Ok(_) => fx.output("dial connected"),
                Err(e) => fx.output(format!("dial failed: {e}")),
            },
            other => fx.output(format!("echo: {other}")),
        };
    }
}

logbook_guest::export_agent!(Snoop);
