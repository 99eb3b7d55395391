//! A delegate: `ask NAME TEXT` sends TEXT to the session NAME of the same
//! tenant (an `assistant`, say), and outputs its reply when it comes back.
//!
//! How the reply comes back: the asked session answers with a `send` of its
//! own to this one (the SDK's `ChatAgent`, which the `assistant` example is,
//! sends its answer back to any session that asked it). Every input that
//! another session sent is output here, labelled with the name it was asked
//! by, so a reply is just an input; nothing waits, and several questions may
//! be out at once. A send the host refuses (no such session, one that has
//! finished, a limit) comes back as `failed` under the send's key, and is
//! output with the host's reason.
//!
//! The state is a pure fold of the log: the names asked, by send key and
//! by the log id each `sent` resolved them to.

use std::collections::BTreeMap;

use logbook_guest::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Delegate {
    /// The name each send asked, by its key, until it is `sent` or `failed`.
    asking: BTreeMap<String, String>,
    /// The name each asked session was asked by, by its log id.
    names: BTreeMap<String, String>,
}

impl Agent for Delegate {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if let Some(from) = event.sent_by() {
            let text = event.input_text().unwrap_or_default();
            let name = self.names.get(&from.log).unwrap_or(&from.log);
            fx.output(format!("{name}: {text}"));
            return;
        }
        if let Some(text) = event.input_text() {
            let mut parts = text.trim().splitn(3, char::is_whitespace);
            match (parts.next(), parts.next(), parts.next()) {
                (Some("ask"), Some(name), Some(question)) if !question.trim().is_empty() => {
                    let key = fx.send_text(name, question.trim());
                    self.asking.insert(key, name.to_string());
                }
                _ => {
                    fx.output("usage: ask NAME TEXT");
                }
            }
            return;
        }
        match &event.body {
            EventBody::Sent(sent) => {
                if let Some(name) = self.asking.remove(&sent.key) {
                    self.names.insert(sent.target.clone(), name);
                }
            }
            EventBody::Failed(failed) => {
                if let Some(name) = self.asking.remove(&failed.key) {
                    fx.output(format!("cannot ask {name}: {}", failed.message));
                }
            }
            _ => {}
        }
    }
}

logbook_guest::export_agent!(Delegate);
