//! Performing async effects: each runs in its own task and reports back to
//! the actor, which logs the result. Nothing here touches the journal.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{Command, Shared};
use crate::effects::{ModelError, ModelRequest, ToolContext};
use crate::journal::{ErrorKind, EventBody, LogId, ModelResponse, Outcome, ToolCall};

/// How an effect ended, as the performer saw it.
pub(crate) enum Done {
    Model(Result<ModelResponse, ModelError>),
    Tool(Result<String, String>),
    Timer,
}

impl Done {
    /// The event that records this end.
    pub(crate) fn into_event(self, key: String) -> EventBody {
        match self {
            Done::Model(Ok(response)) => EventBody::Completed {
                key,
                outcome: Outcome::Model(response),
            },
            Done::Model(Err(e)) => EventBody::Failed {
                key,
                error: e.kind,
                message: e.message,
                retryable: false,
                attempt: 1,
            },
            Done::Tool(result) => {
                let (content, is_error) = match result {
                    Ok(content) => (content, false),
                    Err(message) => (message, true),
                };
                EventBody::Completed {
                    key,
                    outcome: Outcome::Tool { content, is_error },
                }
            }
            Done::Timer => EventBody::Completed {
                key,
                outcome: Outcome::TimerFired,
            },
        }
    }
}

pub(crate) fn model(
    host: &Arc<Shared>,
    tx: &mpsc::UnboundedSender<Command>,
    key: String,
    request: ModelRequest,
) -> AbortHandle {
    let provider = host.models.get(&request.model);
    let tx = tx.clone();
    tokio::spawn(async move {
        let result = match provider {
            Some(provider) => provider.complete(request).await,
            None => Err(ModelError {
                kind: ErrorKind::InvalidRequest,
                message: format!("no model alias {:?} is configured", request.model),
                retryable: false,
            }),
        };
        let _ = tx.send(Command::Done {
            key,
            result: Done::Model(result),
        });
    })
    .abort_handle()
}

pub(crate) fn tool(
    host: &Arc<Shared>,
    tx: &mpsc::UnboundedSender<Command>,
    log: LogId,
    call: ToolCall,
) -> AbortHandle {
    let tool = host.tools.get(&call.name);
    let cx = ToolContext {
        workspace: host.workspace_dir(log),
    };
    let tx = tx.clone();
    tokio::spawn(async move {
        let result = match (tool, serde_json::from_str(&call.arguments)) {
            (None, _) => Err(format!("no tool named {:?}", call.name)),
            (_, Err(e)) => Err(format!("arguments are not valid JSON: {e}")),
            (Some(tool), Ok(arguments)) => tool.call(cx, arguments).await.map_err(|e| e.0),
        };
        let _ = tx.send(Command::Done {
            key: call.id,
            result: Done::Tool(result),
        });
    })
    .abort_handle()
}

pub(crate) fn timer(
    tx: &mpsc::UnboundedSender<Command>,
    key: String,
    until_ms: u64,
) -> AbortHandle {
    let tx = tx.clone();
    tokio::spawn(async move {
        let wait = until_ms.saturating_sub(super::now_ms());
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        let _ = tx.send(Command::Done {
            key,
            result: Done::Timer,
        });
    })
    .abort_handle()
}
