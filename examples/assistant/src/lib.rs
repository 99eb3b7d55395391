//! An assistant: each input goes to the model aliased `default`; the tools the
//! model calls run (with the host's approval policy), their results go back to
//! the model, and its final answer becomes an output.

use std::collections::BTreeMap;

use logbook_guest::prelude::*;
use logbook_guest::{Failed, ToolResult, text_of, tool_calls};

/// Model calls one input may lead to before the assistant gives up.
const MAX_STEPS: u32 = 8;

#[derive(Default, Serialize, Deserialize)]
struct Assistant {
    messages: Vec<Message>,
    tools: Vec<ToolSpec>,
    /// The model call in flight, if any.
    model_key: Option<String>,
    /// Tool calls of the last model answer, with their results as they come.
    calls: BTreeMap<String, Option<ToolResult>>,
    steps: u32,
}

impl Assistant {
    fn ask_model(&mut self, fx: &mut Effects) {
        self.steps += 1;
        let request = ModelRequest {
            model: "default".into(),
            system: Some("You are a helpful assistant. Use the tools when they help.".into()),
            messages: self.messages.clone(),
            tools: self.tools.clone(),
            max_tokens: Some(1024),
        };
        self.model_key = Some(fx.model(request));
    }

    fn answered(&mut self, content: Vec<ContentBlock>, fx: &mut Effects) {
        self.messages.push(Message {
            role: Role::Assistant,
            content: content.clone(),
        });
        let calls: Vec<ToolCall> = tool_calls(&content).cloned().collect();
        if calls.is_empty() {
            fx.output(text_of(&content));
        } else if self.steps >= MAX_STEPS {
            fx.output(format!("stopped after {MAX_STEPS} model calls"));
        } else {
            for call in calls {
                self.calls.insert(call.id.clone(), None);
                fx.tool(call);
            }
        }
    }

    fn tool_done(&mut self, key: &str, content: String, is_error: bool, fx: &mut Effects) {
        let Some(slot) = self.calls.get_mut(key) else {
            return;
        };
        *slot = Some(ToolResult {
            call_id: key.to_string(),
            content,
            is_error,
        });
        if self.calls.values().all(Option::is_some) {
            let results = std::mem::take(&mut self.calls)
                .into_values()
                .flatten()
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

impl Agent for Assistant {
    fn init(&mut self, created: &Created, _fx: &mut Effects) {
        self.tools = created.tools.clone();
    }

    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        match &event.body {
            EventBody::Input(input) => {
                self.messages.push(Message {
                    role: Role::User,
                    content: input.content.clone(),
                });
                self.steps = 0;
                self.ask_model(fx);
            }
            EventBody::Completed(done) => match &done.outcome {
                Outcome::Model(response) if self.model_key.as_deref() == Some(&done.key) => {
                    self.model_key = None;
                    self.answered(response.content.clone(), fx);
                }
                Outcome::Tool(out) => {
                    self.tool_done(&done.key, out.content.clone(), out.is_error, fx);
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
                    fx.output(format!("the model failed: {message}"));
                } else {
                    self.tool_done(key, format!("the tool failed: {message}"), true, fx);
                }
            }
            _ => {}
        }
    }
}

logbook_guest::export_agent!(Assistant);
