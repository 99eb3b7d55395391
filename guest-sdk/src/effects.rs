//! The effects an agent wants, and the runtime that keeps them until the log
//! says they are done.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    Agent, ContentBlock, Created, EffectBody, Event, EventBody, ModelRequest, Question,
    SendRequest, ToolCall,
};

/// What an agent wants done, said while it folds an event.
///
/// Every method returns the key of the effect; keys derive from the seq of
/// the event being folded (`output-7`, `output-7.1`, ...), or are the ones
/// given, such as a tool call's id.
pub struct Effects<'a> {
    wanted: &'a mut BTreeMap<String, Wanted>,
    seq: u64,
    at: u64,
    made: u32,
}

impl Effects<'_> {
    /// The seq of the event being folded.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The host's clock when the event being folded was written (unix ms).
    pub fn now_ms(&self) -> u64 {
        self.at
    }

    fn next_key(&mut self, kind: &str) -> String {
        // Built by hand: this runs for every effect of every replayed event,
        // and core::fmt is slow in wasm.
        let mut key = String::with_capacity(kind.len() + 24);
        key.push_str(kind);
        key.push('-');
        push_decimal(&mut key, self.seq);
        if self.made > 0 {
            key.push('.');
            push_decimal(&mut key, u64::from(self.made));
        }
        self.made += 1;
        key
    }

    /// Want an effect under an explicit key. A key the log already records is
    /// never performed again, so keys must be unique within the log.
    pub fn want(&mut self, key: impl Into<String>, body: EffectBody) -> String {
        let key = key.into();
        self.wanted.insert(key.clone(), Wanted::Body(body));
        key
    }

    /// Want an effect whose body [`Agent::build`] makes when the host asks
    /// for it; `kind` names the key (`model` gives `model-7`). For bodies
    /// that are large and a function of the state, such as a model request
    /// over the whole conversation: replay then never builds them.
    pub fn want_built(&mut self, kind: &str) -> String {
        let key = self.next_key(kind);
        self.wanted.insert(key.clone(), Wanted::Built);
        key
    }

    /// Stop wanting an effect; the host cancels it if it is in flight.
    pub fn drop_effect(&mut self, key: &str) {
        self.wanted.remove(key);
    }

    /// Whether an effect is still wanted (not yet done).
    pub fn is_wanted(&self, key: &str) -> bool {
        self.wanted.contains_key(key)
    }

    /// Say text to the session's participants.
    pub fn output(&mut self, text: impl Into<String>) -> String {
        self.output_blocks(vec![ContentBlock::text(text)])
    }

    /// Say content to the session's participants.
    pub fn output_blocks(&mut self, content: Vec<ContentBlock>) -> String {
        let key = self.next_key("output");
        self.want(key, EffectBody::Output(content))
    }

    /// Call a model.
    pub fn model(&mut self, request: ModelRequest) -> String {
        let key = self.next_key("model");
        self.want(key, EffectBody::Model(request))
    }

    /// Run a tool; the key is the call's id.
    pub fn tool(&mut self, call: ToolCall) -> String {
        let key = call.id.clone();
        self.want(key, EffectBody::Tool(call))
    }

    /// Ask a human; the answer arrives as `approval-decided` with this key.
    pub fn ask(&mut self, text: impl Into<String>) -> String {
        let key = self.next_key("ask");
        self.want(key, EffectBody::Ask(Question { text: text.into() }))
    }

    /// Sleep until a unix time in ms; `completed` with `timer-fired` follows.
    pub fn sleep_until(&mut self, until_ms: u64) -> String {
        let key = self.next_key("sleep");
        self.want(key, EffectBody::Sleep(until_ms))
    }

    /// Sleep for `ms` after the event being folded was written.
    pub fn sleep_for(&mut self, ms: u64) -> String {
        self.sleep_until(self.at.saturating_add(ms))
    }

    /// Send a message to another session (by id or name) of this tenant:
    /// it arrives there as an `input` from this log and this key
    /// ([`EventExt::sent_by`](crate::EventExt::sent_by)). The log records
    /// `sent` under the key, or `failed` when the target is unknown, has
    /// ended, or a limit of the host refuses it (the message says which).
    pub fn send(&mut self, target: impl Into<String>, content: Vec<ContentBlock>) -> String {
        let key = self.next_key("send");
        let target = target.into();
        self.want(key, EffectBody::Send(SendRequest { target, content }))
    }

    /// Send text to another session (by id or name); see [`Effects::send`].
    pub fn send_text(&mut self, target: impl Into<String>, text: impl Into<String>) -> String {
        self.send(target, vec![ContentBlock::text(text)])
    }

    /// Send text back to the session an input came from (`from` is what
    /// [`EventExt::sent_by`](crate::EventExt::sent_by) gave).
    pub fn reply_text(&mut self, from: &crate::LogSender, text: impl Into<String>) -> String {
        self.send_text(from.log.clone(), text)
    }

    /// Continue the session in a new log that starts from `summary`.
    pub fn compact(&mut self, summary: impl Into<String>) -> String {
        let key = self.next_key("compact");
        self.want(key, EffectBody::Compact(summary.into()))
    }

    /// End the session with a result.
    pub fn finish(&mut self, result: impl Into<String>) -> String {
        let key = self.next_key("finish");
        self.want(key, EffectBody::Finish(result.into()))
    }
}

/// An effect the agent wants, under its key: what the host sees through
/// `wanted-keys` and `effect`. Keys are unique within a log for all time: a
/// key the log already records is never performed again.
#[derive(Clone, Debug)]
pub struct Effect {
    /// The key the agent chose.
    pub key: String,
    /// What it wants done.
    pub body: EffectBody,
}

/// An effect the SDK keeps until the log says it is done.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Wanted {
    /// Said whole when it was wanted.
    Body(EffectBody),
    /// Built by [`Agent::build`] when the host asks.
    Built,
}

/// The guest's whole state: the agent and the effects it still wants.
#[doc(hidden)]
#[derive(Default, Serialize, Deserialize)]
pub struct Runtime<A> {
    agent: A,
    wanted: BTreeMap<String, Wanted>,
}

impl<A: Agent> Runtime<A> {
    pub fn init(&mut self, created: Created) {
        *self = Runtime::default();
        let mut fx = Effects {
            wanted: &mut self.wanted,
            seq: 0,
            at: 0,
            made: 0,
        };
        self.agent.init(&created, &mut fx);
    }

    pub fn restore(&mut self, snapshot: &[u8]) -> bool {
        match serde_json::from_slice(snapshot) {
            Ok(runtime) => {
                *self = runtime;
                true
            }
            Err(_) => false,
        }
    }

    pub fn apply(&mut self, events: Vec<Event>) {
        for event in &events {
            self.retire(&event.body);
            let mut fx = Effects {
                wanted: &mut self.wanted,
                seq: event.seq,
                at: event.at,
                made: 0,
            };
            // A fork's own `created` (after the events it shares with its
            // parent) carries the branch's guest, config and tools: it goes
            // to `init`, which applies them over the state folded so far.
            if let EventBody::Created(created) = &event.body {
                self.agent.init(created, &mut fx);
                continue;
            }
            self.agent.apply(event, &mut fx);
        }
    }

    /// Forget effects that the log says are done.
    fn retire(&mut self, body: &EventBody) {
        let done = match body {
            EventBody::Completed(c) => &c.key,
            EventBody::Failed(f) if !f.retryable => &f.key,
            EventBody::Cancelled(key) => key,
            EventBody::Output(o) => &o.key,
            EventBody::Sent(s) => &s.key,
            EventBody::Finished(f) => &f.key,
            // A decision ends a question; for a tool the host asked about, the
            // tool's own `completed` ends it.
            EventBody::ApprovalDecided(d) => match self.wanted.get(&d.key) {
                Some(Wanted::Body(EffectBody::Ask(_))) => &d.key,
                _ => return,
            },
            _ => return,
        };
        self.wanted.remove(done);
    }

    pub fn wanted_keys(&self) -> Vec<String> {
        self.wanted.keys().cloned().collect()
    }

    pub fn effect(&self, key: &str, base: Option<&str>) -> Option<EffectBody> {
        match self.wanted.get(key)? {
            Wanted::Body(body) => Some(body.clone()),
            Wanted::Built => base
                .and_then(|base| self.agent.build_after(key, base))
                .or_else(|| self.agent.build(key)),
        }
    }

    /// Every wanted effect with its body (tests).
    pub fn effects(&self) -> Vec<Effect> {
        self.wanted
            .keys()
            .filter_map(|key| {
                Some(Effect {
                    key: key.clone(),
                    body: self.effect(key, None)?,
                })
            })
            .collect()
    }

    pub fn snapshot(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self).ok()
    }
}

fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_kind_and_seq() {
        let mut wanted = BTreeMap::new();
        let mut fx = Effects {
            wanted: &mut wanted,
            seq: 1_234_567_890_123,
            at: 0,
            made: 0,
        };
        assert_eq!(fx.output("a"), "output-1234567890123");
        assert_eq!(fx.output("b"), "output-1234567890123.1");
        let mut fx = Effects {
            wanted: &mut wanted,
            seq: 0,
            at: 0,
            made: 0,
        };
        assert_eq!(fx.sleep_for(5), "sleep-0");
        assert_eq!(wanted.len(), 3);
    }
}
