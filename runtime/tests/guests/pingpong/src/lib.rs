//! A test guest that keeps a conversation between sessions going: `ping
//! NAME` sends `ping` to the session NAME, and every input another session
//! sent is answered with a send back to it, so two of them bounce a message
//! between them until the host's `max_send_hops` stops the chain. Each
//! input is counted in an output, and a refused send is output with its
//! message.

use logbook_guest::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct PingPong {
    received: u64,
}

impl Agent for PingPong {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if let Some(from) = event.sent_by() {
            self.received += 1;
            fx.output(format!("received {}", self.received));
            fx.reply_text(from, "pong");
        } else if let Some(text) = event.input_text() {
            match text.strip_prefix("ping ") {
                Some(name) => {
                    fx.send_text(name.trim(), "ping");
                }
                None => {
                    fx.output("usage: ping NAME");
                }
            }
        } else if let Some(failed) = event.failure() {
            fx.output(format!("failed: {}", failed.message));
        }
    }
}

logbook_guest::export_agent!(PingPong);
