//! A ready chat agent: each input goes to a model; the tools it calls run
//! (all of one answer's calls at once, under the host's approval policy);
//! their results go back to the model; its final answer becomes an `output`.
//! When the input came from another session (its `send`), the answer is
//! also sent back to that session, so agents can ask it as they ask a model.
//!
//! The model's context is a projection of the log: the conversation as
//! neutral messages, cut from the front to a budget. A request is rebuilt
//! from the log whenever it is needed, so a session can move to another
//! provider between two turns.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{
    Agent, ContentBlock, Created, Effects, Event, EventBody, EventExt, Failed, Message,
    ModelRequest, Outcome, Role, ToolCall, ToolPart, ToolResult, ToolSpec, text_of, tool_calls,
};

/// How a [`ChatAgent`] behaves. Every field can be set per session in its
/// config JSON (`{"system": "...", "model": "fast", "max_steps": 4}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatConfig {
    /// The system prompt.
    pub system: Option<String>,
    /// The model alias; the host maps it to a provider.
    pub model: String,
    /// Tools offered to the model, by name or glob (`fs.*`); `None`: all the
    /// tools the session was created with.
    pub tools: Option<Vec<String>>,
    /// Model calls one input may lead to before the agent stops.
    pub max_steps: u32,
    /// Most tokens the model may generate per call; `None` (the default):
    /// the alias's `max_tokens` in the host's configuration, or the host's
    /// default for the provider.
    pub max_tokens: Option<u32>,
    /// The context budget, in estimated tokens (4 bytes each): the oldest
    /// turns are left out of the model's context past it.
    pub context_budget: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            system: Some("You are a helpful assistant. Use the tools when they help.".into()),
            model: "default".into(),
            tools: None,
            max_steps: 8,
            max_tokens: None,
            context_budget: 100_000,
        }
    }
}

/// A tool call of the last answer, and its result once it is in.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Pending {
    call_id: String,
    result: Option<ToolResult>,
}

/// The model/tool loop as an [`Agent`]; export it as is, or wrap it to
/// change its defaults ([`ChatAgent::with_config`]).
#[derive(Default, Serialize, Deserialize)]
pub struct ChatAgent {
    config: ChatConfig,
    messages: Vec<Message>,
    tools: Vec<ToolSpec>,
    /// The model call in flight, if any.
    model_key: Option<String>,
    /// How many messages the call in flight was asked over: its request is
    /// built from them when the host asks (`Agent::build`), never on replay.
    #[serde(default)]
    model_upto: usize,
    /// The two latest model calls, by key, with how many messages each was
    /// asked over: a request may then be said as the one before it plus
    /// the messages since (`Agent::build_after`).
    #[serde(default)]
    last_call: Option<(String, usize)>,
    #[serde(default)]
    previous_call: Option<(String, usize)>,
    /// Tool calls of the last answer, by effect key.
    calls: BTreeMap<String, Pending>,
    /// Every tool-call key used, so that a model that repeats an id does not
    /// reuse a key the log has recorded (it would never run again).
    used_keys: BTreeSet<String>,
    steps: u32,
    /// What the log this one was compacted from said, when it was.
    #[serde(default)]
    summary: Option<String>,
    /// The session whose input the turn in progress answers, when another
    /// session sent it: the answer goes back there too.
    #[serde(default)]
    reply_to: Option<String>,
}

impl ChatAgent {
    /// A chat agent with these defaults; a session's config JSON still wins.
    pub fn with_config(config: ChatConfig) -> ChatAgent {
        ChatAgent {
            config,
            ..ChatAgent::default()
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// The conversation so far, as neutral messages.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The model's context: the latest messages within the budget, starting
    /// at a user message that is not a tool result (a result without its
    /// call would be refused by providers).
    pub fn context(&self) -> Vec<Message> {
        self.context_of(&self.messages)
    }

    fn context_of(&self, messages: &[Message]) -> Vec<Message> {
        messages[self.context_start(messages)..].to_vec()
    }

    /// Where the context over `messages` starts.
    fn context_start(&self, messages: &[Message]) -> usize {
        let mut total: u64 = messages.iter().map(message_size).sum();
        let mut start = 0;
        let last = messages.len().saturating_sub(1);
        while start < last && total > self.config.context_budget {
            total -= message_size(&messages[start]);
            start += 1;
        }
        while start < last && !is_plain_user(&messages[start]) {
            start += 1;
        }
        start
    }

    /// The request of the model call in flight, over the messages it was
    /// asked over.
    fn request(&self) -> ModelRequest {
        let upto = self.model_upto.min(self.messages.len());
        ModelRequest {
            model: self.config.model.clone(),
            system: self.system(),
            extends: None,
            messages: self.context_of(&self.messages[..upto]),
            tools: self.offered_tools(),
            max_tokens: self.config.max_tokens,
        }
    }

    /// The request of the model call in flight as model call `base`'s
    /// context and the messages since, when its context starts where
    /// `base`'s did (it was not cut from the front since).
    fn request_after(&self, base: &str) -> Option<ModelRequest> {
        let (_, base_upto) = [&self.previous_call, &self.last_call]
            .into_iter()
            .flatten()
            .find(|(key, _)| key == base)?;
        let upto = self.model_upto.min(self.messages.len());
        let base_upto = *base_upto;
        if base_upto > upto
            || self.context_start(&self.messages[..base_upto])
                != self.context_start(&self.messages[..upto])
        {
            return None;
        }
        Some(ModelRequest {
            model: self.config.model.clone(),
            system: self.system(),
            extends: Some(base.to_string()),
            messages: self.messages[base_upto..upto].to_vec(),
            tools: self.offered_tools(),
            max_tokens: self.config.max_tokens,
        })
    }

    /// After a turn: when the whole conversation is over the context budget,
    /// continue in a new log that starts from a summary of it.
    fn compact_if_over_budget(&self, fx: &mut Effects) {
        let total: u64 = self.messages.iter().map(message_size).sum();
        if total > self.config.context_budget {
            fx.compact(self.summary_text());
        }
    }

    /// The summary a compacted log starts from: the earlier summary, then the
    /// conversation as a transcript, cut from the front to about half the
    /// budget. Pure: the same log always gives the same summary.
    pub fn summary_text(&self) -> String {
        let mut text = String::new();
        if let Some(summary) = &self.summary {
            text.push_str(summary);
            text.push('\n');
        }
        for message in &self.messages {
            let who = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            for block in &message.content {
                let said = match block {
                    ContentBlock::Text(t) => t.clone(),
                    ContentBlock::ToolCall(c) => {
                        format!("(called {} {})", c.name, c.arguments_json)
                    }
                    ContentBlock::ToolResult(r) => format!("(tool result) {}", r.content),
                    ContentBlock::Reasoning(_) => continue,
                };
                text.push_str(who);
                text.push_str(": ");
                text.push_str(&said);
                text.push('\n');
            }
        }
        // The budget is in tokens of about four characters: keep half of it.
        let keep = usize::try_from(self.config.context_budget)
            .unwrap_or(usize::MAX)
            .saturating_mul(2);
        if text.len() > keep {
            let mut cut = text.len() - keep;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = format!("…{}", &text[cut..]);
        }
        text
    }

    /// The system prompt, with the summary of earlier logs when there is one.
    fn system(&self) -> Option<String> {
        match (&self.config.system, &self.summary) {
            (system, None) => system.clone(),
            (None, Some(summary)) => Some(format!("The conversation so far:\n{summary}")),
            (Some(system), Some(summary)) => {
                Some(format!("{system}\n\nThe conversation so far:\n{summary}"))
            }
        }
    }

    fn offered_tools(&self) -> Vec<ToolSpec> {
        match &self.config.tools {
            None => self.tools.clone(),
            Some(patterns) => self
                .tools
                .iter()
                .filter(|t| patterns.iter().any(|p| glob(p, &t.name)))
                .cloned()
                .collect(),
        }
    }

    fn ask_model(&mut self, fx: &mut Effects) {
        self.steps += 1;
        self.model_upto = self.messages.len();
        let key = fx.want_built("model");
        self.previous_call = self.last_call.replace((key.clone(), self.model_upto));
        self.model_key = Some(key);
    }

    /// The turn's last word: an output, and a send back to the session
    /// that asked, if one did.
    fn say(&mut self, text: String, fx: &mut Effects) {
        if let Some(to) = self.reply_to.take() {
            fx.send_text(to, text.clone());
        }
        fx.output(text);
    }

    fn answered(&mut self, content: Vec<ContentBlock>, fx: &mut Effects) {
        let calls: Vec<ToolCall> = tool_calls(&content).cloned().collect();
        self.messages.push(Message {
            role: Role::Assistant,
            content,
        });
        if calls.is_empty() {
            let text = self
                .messages
                .last()
                .map(|m| text_of(&m.content))
                .unwrap_or_default();
            self.say(text, fx);
            self.compact_if_over_budget(fx);
        } else if self.steps >= self.config.max_steps {
            self.say(
                format!("stopped after {} model calls", self.config.max_steps),
                fx,
            );
        } else {
            for call in calls {
                let mut key = call.id.clone();
                if self.used_keys.contains(&key) {
                    key = format!("{}~{}", call.id, fx.seq());
                }
                self.used_keys.insert(key.clone());
                self.calls.insert(
                    key.clone(),
                    Pending {
                        call_id: call.id.clone(),
                        result: None,
                    },
                );
                fx.want(
                    key.clone(),
                    crate::EffectBody::Tool(ToolCall { id: key, ..call }),
                );
            }
        }
    }

    /// A tool's result: its text and typed parts (an image reaches the model
    /// as an image) join the results the next model call reads.
    fn tool_done(
        &mut self,
        key: &str,
        content: String,
        is_error: bool,
        parts: Vec<ToolPart>,
        fx: &mut Effects,
    ) {
        let Some(pending) = self.calls.get_mut(key) else {
            return;
        };
        pending.result = Some(ToolResult {
            call_id: pending.call_id.clone(),
            content,
            is_error,
            parts,
        });
        if self.calls.values().all(|p| p.result.is_some()) {
            let results = std::mem::take(&mut self.calls)
                .into_values()
                .filter_map(|p| p.result)
                .map(ContentBlock::ToolResult)
                .collect();
            self.messages.push(Message {
                role: Role::User,
                content: results,
            });
            self.ask_model(fx);
        }
    }
}

/// A message's size in the budget's units: about four characters a token.
fn message_size(m: &Message) -> u64 {
    m.content
        .iter()
        .map(|b| match b {
            ContentBlock::Text(t) => t.len(),
            ContentBlock::ToolCall(c) => c.name.len() + c.arguments_json.len(),
            ContentBlock::ToolResult(r) => r.content.len(),
            ContentBlock::Reasoning(r) => {
                r.text.as_deref().map_or(0, str::len) + r.opaque.as_deref().map_or(0, str::len)
            }
        })
        .sum::<usize>() as u64
        / 4
        + 4
}

fn is_plain_user(m: &Message) -> bool {
    m.role == Role::User
        && !m
            .content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolResult(_)))
}

/// `*` matches any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => {
            pattern.len() == text.len()
                && pattern
                    .chars()
                    .zip(text.chars())
                    .all(|(p, t)| p == '?' || p == t)
        }
        Some((head, rest)) => {
            text.len() >= head.len()
                && glob(head, &text[..head.len()])
                && (0..=text.len() - head.len())
                    .filter(|i| text.is_char_boundary(head.len() + i))
                    .any(|i| glob(rest, &text[head.len() + i..]))
        }
    }
}

impl Agent for ChatAgent {
    fn init(&mut self, created: &Created, _fx: &mut Effects) {
        self.tools = created.tools.clone();
        if created.summary.is_some() {
            self.summary = created.summary.clone();
        }
        // The session's config overrides the agent's defaults, field by field.
        if let Ok(serde_json::Value::Object(overrides)) =
            serde_json::from_str::<serde_json::Value>(&created.config_json)
            && !overrides.is_empty()
            && let Ok(serde_json::Value::Object(mut merged)) = serde_json::to_value(&self.config)
        {
            merged.extend(overrides);
            if let Ok(config) = serde_json::from_value(serde_json::Value::Object(merged)) {
                self.config = config;
            }
        }
    }

    fn build(&self, key: &str) -> Option<crate::EffectBody> {
        (self.model_key.as_deref() == Some(key)).then(|| crate::EffectBody::Model(self.request()))
    }

    fn build_after(&self, key: &str, base: &str) -> Option<crate::EffectBody> {
        if self.model_key.as_deref() != Some(key) {
            return None;
        }
        self.request_after(base).map(crate::EffectBody::Model)
    }

    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        match &event.body {
            EventBody::Input(input) => {
                self.messages.push(Message {
                    role: Role::User,
                    content: input.content.clone(),
                });
                self.steps = 0;
                self.reply_to = event.sent_by().map(|from| from.log.clone());
                self.ask_model(fx);
            }
            EventBody::Completed(done) => match &done.outcome {
                Outcome::Model(response) if self.model_key.as_deref() == Some(&done.key) => {
                    self.model_key = None;
                    self.answered(response.content.clone(), fx);
                }
                Outcome::Tool(out) => {
                    self.tool_done(
                        &done.key,
                        out.content.clone(),
                        out.is_error,
                        out.parts.clone(),
                        fx,
                    );
                }
                _ => {}
            },
            EventBody::Failed(Failed {
                key,
                message,
                retryable: false,
                ..
            }) => {
                if self.model_key.as_deref() == Some(key) {
                    self.model_key = None;
                    self.say(format!("the model failed: {message}"), fx);
                } else {
                    self.tool_done(
                        key,
                        format!("the tool failed: {message}"),
                        true,
                        Vec::new(),
                        fx,
                    );
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_pick_tools() {
        assert!(glob("fs.*", "fs.read"));
        assert!(glob("*", "x"));
        assert!(glob("*.fetch", "http.fetch"));
        assert!(!glob("fs.*", "http.fetch"));
        assert!(glob("fs.rea?", "fs.read"));
    }

    fn user(text: &str) -> Message {
        Message {
            role: Role::User,
            content: vec![ContentBlock::text(text)],
        }
    }

    #[test]
    fn the_context_is_cut_at_a_plain_user_message() {
        let mut agent = ChatAgent::with_config(ChatConfig {
            context_budget: 30,
            ..ChatConfig::default()
        });
        agent.messages = vec![
            user(&"a".repeat(200)),
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolCall(ToolCall {
                    id: "1".into(),
                    name: "t".into(),
                    arguments_json: "{}".into(),
                })],
            },
            Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult(ToolResult {
                    call_id: "1".into(),
                    content: "r".into(),
                    is_error: false,
                    parts: Vec::new(),
                })],
            },
            user("latest"),
        ];
        let context = agent.context();
        assert_eq!(context.len(), 1);
        assert_eq!(text_of(&context[0].content), "latest");
        agent.config.context_budget = 1_000;
        assert_eq!(agent.context().len(), 4);
    }

    fn created(summary: Option<&str>) -> Created {
        Created {
            guest: crate::GuestRef {
                name: "chat".into(),
                digest: "sha256:00".into(),
            },
            config_json: r#"{"context_budget": 40}"#.into(),
            seed: 1,
            parent: None,
            compacted_from: None,
            summary: summary.map(str::to_string),
            tools: vec![],
        }
    }

    fn event(seq: u64, body: EventBody) -> Event {
        Event {
            seq,
            at: 1_000,
            body,
        }
    }

    fn answer(key: &str, text: &str) -> EventBody {
        EventBody::Completed(crate::Completed {
            key: key.into(),
            outcome: Outcome::Model(crate::ModelResponse {
                content: vec![ContentBlock::text(text)],
                stop_reason: crate::StopReason::EndTurn,
                usage: crate::Usage {
                    input_tokens: 1,
                    output_tokens: 1,
                },
                provider: "echo".into(),
                model: "echo".into(),
            }),
        })
    }

    #[test]
    fn a_turn_over_the_context_budget_compacts_and_the_new_log_starts_from_the_summary() {
        let mut rt = crate::effects::Runtime::<ChatAgent>::default();
        rt.init(created(None));
        let input = EventBody::Input(crate::Input {
            from: crate::Sender::Principal("me".into()),
            content: vec![ContentBlock::text("hello")],
        });
        rt.apply(vec![event(1, input)]);
        let wanted = rt.effects();
        assert_eq!(wanted.len(), 1, "one model call");
        assert!(
            !wanted
                .iter()
                .any(|e| matches!(e.body, crate::EffectBody::Compact(_))),
            "within budget, no compaction"
        );
        let key = wanted[0].key.clone();
        rt.apply(vec![event(3, answer(&key, &"long answer ".repeat(30)))]);
        let summary = rt
            .effects()
            .into_iter()
            .find_map(|e| match e.body {
                crate::EffectBody::Compact(summary) => Some(summary),
                _ => None,
            })
            .expect("over budget after the turn: a compaction");
        assert!(summary.contains("long answer"), "{summary}");
        assert!(
            summary.len() <= 80 + "…".len(),
            "cut to half the budget: {summary:?}"
        );

        let mut next = crate::effects::Runtime::<ChatAgent>::default();
        next.init(created(Some(&summary)));
        let input = EventBody::Input(crate::Input {
            from: crate::Sender::Principal("me".into()),
            content: vec![ContentBlock::text("and now?")],
        });
        next.apply(vec![event(1, input)]);
        let request = next
            .effects()
            .into_iter()
            .find_map(|e| match e.body {
                crate::EffectBody::Model(request) => Some(request),
                _ => None,
            })
            .expect("a model call");
        assert!(
            request
                .system
                .as_deref()
                .is_some_and(|s| s.contains(&summary)),
            "the new log's requests carry the summary: {:?}",
            request.system
        );
    }

    #[test]
    fn an_answer_to_another_session_goes_back_to_it_and_one_to_a_participant_does_not() {
        let mut rt = crate::effects::Runtime::<ChatAgent>::default();
        rt.init(created(None));
        let asked = |seq, from| {
            event(
                seq,
                EventBody::Input(crate::Input {
                    from,
                    content: vec![ContentBlock::text("hi")],
                }),
            )
        };
        let from_log = crate::Sender::Log(crate::LogSender {
            log: "0190f5a2-7c3e-7a11-9e4b-5d2c8f3a6b10".into(),
            key: "send-3".into(),
        });
        rt.apply(vec![asked(1, from_log)]);
        let key = rt.effects()[0].key.clone();
        rt.apply(vec![event(2, answer(&key, "hello back"))]);
        let wanted = rt.effects();
        let sends: Vec<_> = wanted
            .iter()
            .filter_map(|e| match &e.body {
                crate::EffectBody::Send(send) => {
                    Some((send.target.clone(), text_of(&send.content)))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            sends,
            [(
                "0190f5a2-7c3e-7a11-9e4b-5d2c8f3a6b10".to_string(),
                "hello back".to_string()
            )]
        );
        assert!(
            wanted
                .iter()
                .any(|e| matches!(e.body, crate::EffectBody::Output(_))),
            "the participants see the answer too"
        );

        // The log records both; the next turn, from a participant, sends nothing.
        let recorded: Vec<Event> = wanted
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let body = match &e.body {
                    crate::EffectBody::Send(send) => EventBody::Sent(crate::Sent {
                        key: e.key.clone(),
                        target: send.target.clone(),
                    }),
                    crate::EffectBody::Output(content) => EventBody::Output(crate::Output {
                        key: e.key.clone(),
                        content: content.clone(),
                    }),
                    other => panic!("unexpected {other:?}"),
                };
                event(3 + i as u64, body)
            })
            .collect();
        rt.apply(recorded);
        assert!(rt.effects().is_empty());
        rt.apply(vec![asked(5, crate::Sender::Principal("me".into()))]);
        let key = rt.effects()[0].key.clone();
        rt.apply(vec![event(6, answer(&key, "again"))]);
        assert!(
            !rt.effects()
                .iter()
                .any(|e| matches!(e.body, crate::EffectBody::Send(_))),
            "a participant's turn is not sent anywhere"
        );
    }
}
