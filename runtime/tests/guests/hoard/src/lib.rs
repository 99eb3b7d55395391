//! Test fixture: on the input `grow`, adds a MiB to its state (`grow N`: N
//! MiB); answers every
//! input with the state's size. Its snapshot writes that state as JSON, a
//! number per byte: far more fuel than one call has in the tests' limits.
use logbook_guest::prelude::*;

/// Bytes one `grow` adds.
const GROWTH: usize = 1 << 20;

#[derive(Default, Serialize, Deserialize)]
struct Hoard {
    hoard: Vec<u8>,
}

impl Agent for Hoard {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if let Some(text) = event.input_text() {
            // `grow` adds a MiB; `grow N`, N MiB.
            let mibs = match text.strip_prefix("grow") {
                Some("") => 1,
                Some(n) => n.trim().parse().unwrap_or(0),
                None => 0,
            };
            if mibs > 0 {
                self.hoard.resize(self.hoard.len() + mibs * GROWTH, 7);
            }
            fx.output(format!("ok: {text} ({} bytes)", self.hoard.len()));
        }
    }
}

logbook_guest::export_agent!(Hoard);
