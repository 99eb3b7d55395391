//! Test fixture: panics on the input `panic`; otherwise echoes.
use logbook_guest::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Panicky;

impl Agent for Panicky {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if let Some(text) = event.input_text() {
            assert!(text != "panic", "asked to panic");
            fx.output(format!("ok: {text}"));
        }
    }
}

logbook_guest::export_agent!(Panicky);
