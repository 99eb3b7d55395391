//! Performing async effects: each runs in its own task and reports back to
//! the actor, which logs the result. Nothing here touches the journal.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::workspace::Workspace;
use super::{Command, Shared};
use crate::effects::{
    DeltaKind, DeltaSink, Live, ModelDelta, ModelError, ModelRequest, ProviderText, Redactor,
    ToolAnswer, ToolContext, ToolError, ToolProgress,
};
use crate::journal::{ErrorKind, EventBody, LogId, ModelResponse, Outcome, ToolCall};

/// How an effect ended, as the performer saw it.
pub(crate) enum Done {
    /// A model's answer, or its last failure and the attempt it ended.
    Model(Result<ModelResponse, ModelError>, u32),
    /// A tool's output, or why it could not run (which the model reads).
    Tool(Result<ToolAnswer, ToolError>),
    Timer,
}

impl Done {
    /// The event that records this end: a model response or tool result
    /// larger than `max_event_bytes` is not stored, but recorded as `failed`
    /// with kind `too-large` (not retryable: it would be as large again).
    pub(crate) fn into_event(self, key: String, max_event_bytes: usize) -> EventBody {
        let attempt = match &self {
            Done::Model(_, attempt) => *attempt,
            _ => 1,
        };
        let event = self.record(key);
        let EventBody::Completed { key, outcome } = &event else {
            return event;
        };
        let bytes = event.canonical_len();
        if bytes <= max_event_bytes {
            return event;
        }
        let what = match outcome {
            Outcome::Model(_) => "the model's response",
            _ => "the tool's result",
        };
        EventBody::Failed {
            key: key.clone(),
            error: ErrorKind::TooLarge,
            message: format!(
                "{what} was {bytes} bytes, over the limit max_event_bytes = {max_event_bytes}; it was not stored"
            ),
            retryable: false,
            attempt,
        }
    }

    fn record(self, key: String) -> EventBody {
        match self {
            Done::Model(Ok(response), _) => EventBody::Completed {
                key,
                outcome: Outcome::Model(response),
            },
            Done::Model(Err(e), attempt) => EventBody::Failed {
                key,
                error: e.kind,
                message: e.message.into_string(),
                retryable: false,
                attempt,
            },
            Done::Tool(result) => {
                let (answer, is_error) = match result {
                    Ok(answer) => (answer, false),
                    Err(ToolError(message)) => (ToolAnswer::from(message), true),
                };
                EventBody::Completed {
                    key,
                    outcome: Outcome::Tool {
                        content: answer.text,
                        is_error,
                        parts: answer.parts,
                        structured: answer.structured,
                    },
                }
            }
            Done::Timer => EventBody::Completed {
                key,
                outcome: Outcome::TimerFired,
            },
        }
    }
}

/// Call a model, retrying transient failures with backoff. Each failed
/// attempt but the last is logged as `failed{retryable: true}` through the
/// actor, and the next attempt waits until that event is durable.
pub(crate) fn model(
    host: &Arc<Shared>,
    tx: &mpsc::UnboundedSender<Command>,
    deltas: &broadcast::Sender<Live>,
    (log, tenant): (LogId, &str),
    key: String,
    request: ModelRequest,
) -> AbortHandle {
    let provider = host.models.get_for(tenant, &request.model);
    let tx = tx.clone();
    let deltas = deltas.clone();
    let host = host.clone();
    let tenant = tenant.to_string();
    let mut request = request;
    tokio::spawn(async move {
        // Large tool parts go to the provider whole, read from the blobs.
        if super::blobs::refers_to_blobs(&request)
            && let Err(e) =
                super::blobs::resolve(host.journal.as_ref(), &tenant, &mut request).await
        {
            let error = ModelError::fatal(ErrorKind::InvalidRequest, Redactor::new().scrub(&e.to_string()));
            let _ = tx.send(Command::Done {
                key,
                result: Done::Model(Err(error), 1),
            });
            return;
        }
        let Some(provider) = provider else {
            let error = ModelError::fatal(
                ErrorKind::InvalidRequest,
                Redactor::new().scrub(&format!("no model alias {:?} is configured", request.model)),
            );
            let _ = tx.send(Command::Done {
                key,
                result: Done::Model(Err(error), 1),
            });
            return;
        };
        let policy = provider.retry_policy();
        let sink: DeltaSink = {
            let key = key.clone();
            let deltas = deltas.clone();
            Arc::new(move |kind: DeltaKind, text: &ProviderText| {
                // Nobody watching: skip the allocation.
                if deltas.receiver_count() > 0 && !text.is_empty() {
                    let _ = deltas.send(Live::Delta(ModelDelta {
                        key: key.clone(),
                        kind,
                        text: text.as_str().to_string(),
                    }));
                }
            })
        };
        let mut attempt = 1;
        let result = loop {
            let started = std::time::Instant::now();
            let span = tracing::info_span!("effect", kind = "model", %log, %key, attempt, model = %request.model);
            let answer = provider
                .complete_streaming(request.clone(), sink.clone())
                .instrument(span)
                .await;
            host.metrics.model_call(started.elapsed().as_secs_f64());
            match answer {
                Err(e) if e.retryable && attempt <= policy.max_retries => {
                    let wait = policy.backoff(attempt, e.retry_after);
                    let (ack, acked) = oneshot::channel();
                    let event = EventBody::Failed {
                        key: key.clone(),
                        error: e.kind,
                        message: e.message.into_string(),
                        retryable: true,
                        attempt,
                    };
                    let sent = tx.send(Command::Retrying {
                        key: key.clone(),
                        event,
                        ack,
                    });
                    // Not durable, or no longer wanted: stop here.
                    if sent.is_err() || !matches!(acked.await, Ok(true)) {
                        return;
                    }
                    sink(DeltaKind::Restart, &ProviderText::host("-"));
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                result => break result,
            }
        };
        let _ = tx.send(Command::Done {
            key,
            result: Done::Model(result, attempt),
        });
    })
    .abort_handle()
}

/// Run a tool call. A call of a tool that uses the workspace first waits
/// until the workspace holds every write logged before `upto` (the actor's
/// head as the call starts), then holds the workspace until its result is
/// sent, so the actor logs such results in the order the calls ran.
pub(crate) fn tool(
    host: &Arc<Shared>,
    tx: &mpsc::UnboundedSender<Command>,
    (log, tenant): (LogId, &str),
    call: ToolCall,
    live: &broadcast::Sender<Live>,
    workspace: &Arc<Workspace>,
    upto: u64,
) -> AbortHandle {
    let tool = host.tools.get(&call.name);
    let progress = live.clone();
    let cx = ToolContext {
        workspace: host.workspace_dir(log),
        key: call.id.clone(),
        progress: Some(Arc::new(move |p: ToolProgress| {
            // Nobody watching: nothing to do.
            if progress.receiver_count() > 0 {
                let _ = progress.send(Live::Progress(p));
            }
        })),
    };
    let tx = tx.clone();
    let host = host.clone();
    let workspace = workspace.clone();
    let tenant = tenant.to_string();
    // Tools run once per request (a re-run after a crash is a new actor's).
    let span = tracing::info_span!("effect", kind = "tool", %log, key = %call.id, attempt = 1u32, tool = %call.name);
    tokio::spawn(
        async move {
            // Held until the result is sent (see above).
            let mut turn = None;
            let result = async {
                let tool =
                    tool.ok_or_else(|| ToolError(format!("no tool named {:?}", call.name)))?;
                let arguments = serde_json::from_str(&call.arguments)
                    .map_err(|e| ToolError(format!("arguments are not valid JSON: {e}")))?;
                if tool.uses_workspace() {
                    let entered = workspace.enter(&host, log, upto).await.map_err(|e| {
                        tracing::error!(%log, "cannot rebuild the workspace: {e}");
                        ToolError::from(e)
                    })?;
                    turn = Some(entered);
                }
                let mut answer = tool.call(cx, arguments).await?;
                let threshold = host.config.limits.blob_threshold_bytes;
                super::blobs::store_large(host.journal.as_ref(), &tenant, &mut answer, threshold)
                    .await
                    .map_err(|e| {
                        ToolError(format!("cannot store the result's large parts: {e}"))
                    })?;
                Ok(answer)
            }
            .await;
            let _ = tx.send(Command::Done {
                key: call.id,
                result: Done::Tool(result),
            });
            drop(turn);
        }
        .instrument(span),
    )
    .abort_handle()
}

pub(crate) fn timer(
    tx: &mpsc::UnboundedSender<Command>,
    log: LogId,
    key: String,
    until_ms: u64,
) -> AbortHandle {
    let tx = tx.clone();
    let span = tracing::info_span!("effect", kind = "timer", %log, %key, attempt = 1u32, until_ms);
    tokio::spawn(
        async move {
            let wait = until_ms.saturating_sub(super::now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            let _ = tx.send(Command::Done {
                key,
                result: Done::Timer,
            });
        }
        .instrument(span),
    )
    .abort_handle()
}
