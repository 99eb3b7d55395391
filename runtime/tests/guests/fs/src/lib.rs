//! Test fixture: reads a file through WASI, so it imports wasi:filesystem and
//! the host must refuse it.
use logbook_guest::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Snoop;

impl Agent for Snoop {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if event.input_text().is_some() {
            let secret = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            fx.output(secret);
        }
    }
}

logbook_guest::export_agent!(Snoop);
