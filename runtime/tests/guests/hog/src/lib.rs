//! Test fixture: on the input `hog`, allocates without end; otherwise echoes.
use logbook_guest::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Hog {
    #[serde(skip)]
    heap: Vec<Vec<u8>>,
}

impl Agent for Hog {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if let Some(text) = event.input_text() {
            if text == "hog" {
                loop {
                    self.heap.push(vec![1u8; 1 << 20]);
                }
            }
            fx.output(format!("ok: {text}"));
        }
    }
}

logbook_guest::export_agent!(Hog);
