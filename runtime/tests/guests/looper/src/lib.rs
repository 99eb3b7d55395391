//! Test fixture: loops forever on the input `loop`; on `again KEY` wants an
//! output under the explicit key KEY (a key the log may have retired, which
//! the host must never perform again); otherwise echoes.
use logbook_guest::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Looper;

impl Agent for Looper {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if let Some(text) = event.input_text() {
            if text == "loop" {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            if let Some(key) = text.strip_prefix("again ") {
                fx.want(key, EffectBody::Output(vec![ContentBlock::text("again")]));
                return;
            }
            fx.output(format!("ok: {text}"));
        }
    }
}

logbook_guest::export_agent!(Looper);
