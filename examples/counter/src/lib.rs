//! A counter: `inc` adds one, `get` tells the count, `remind MS` tells it again
//! MS milliseconds later, `compact` continues the session in a new log that
//! starts from the count, `done` finishes the session.

use logbook_guest::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Counter {
    count: u64,
}

impl Agent for Counter {
    fn init(&mut self, created: &Created, _fx: &mut Effects) {
        // A compacted log starts from the summary the old one left.
        let summary = created.summary.as_deref().unwrap_or_default();
        if let Some(n) = summary.strip_prefix("count = ") {
            self.count = n.parse().unwrap_or_default();
        }
    }

    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if let Some(text) = event.input_text() {
            let mut words = text.split_whitespace();
            match (words.next(), words.next()) {
                (Some("inc"), None) => {
                    self.count += 1;
                    fx.output(format!("count = {}", self.count));
                }
                (Some("get"), None) => {
                    fx.output(format!("count = {}", self.count));
                }
                (Some("remind"), Some(ms)) => match ms.parse() {
                    Ok(ms) => {
                        fx.sleep_for(ms);
                    }
                    Err(_) => {
                        fx.output(format!("not a number of milliseconds: {ms}"));
                    }
                },
                (Some("compact"), None) => {
                    fx.compact(format!("count = {}", self.count));
                }
                (Some("done"), None) => {
                    fx.finish(format!("count = {}", self.count));
                }
                _ => {
                    fx.output(format!("unknown command: {text}"));
                }
            }
        } else if let Some(Outcome::TimerFired) = event.outcome() {
            fx.output(format!("reminder: count = {}", self.count));
        }
    }
}

logbook_guest::export_agent!(Counter);
