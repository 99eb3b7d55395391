//! Test fixture: an effect loop that never stops by itself. On the input
//! `spin` it sleeps 0 ms after every timer; on `chat` it calls the model
//! again after every answer; anything else it echoes (`ok: …`).
use logbook_guest::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Spinner {
    spinning: bool,
    chatting: bool,
    /// Timers fired and answers read: what the loops did.
    laps: u64,
}

fn ask(fx: &mut Effects, lap: u64) {
    fx.model(ModelRequest {
        model: "default".into(),
        system: None,
        extends: None,
        messages: vec![Message {
            role: Role::User,
            content: vec![ContentBlock::Text(format!("lap {lap}"))],
        }],
        tools: Vec::new(),
        max_tokens: None,
    });
}

impl Agent for Spinner {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if let Some(text) = event.input_text() {
            match &*text {
                "spin" => {
                    self.spinning = true;
                    fx.sleep_for(0);
                }
                "chat" => {
                    self.chatting = true;
                    ask(fx, self.laps);
                }
                other => {
                    fx.output(format!("ok: {other} after {} laps", self.laps));
                }
            }
            return;
        }
        match event.outcome() {
            Some(Outcome::TimerFired) if self.spinning => {
                self.laps += 1;
                fx.sleep_for(0);
            }
            Some(Outcome::Model(_)) if self.chatting => {
                self.laps += 1;
                ask(fx, self.laps);
            }
            _ => {}
        }
    }
}

logbook_guest::export_agent!(Spinner);
