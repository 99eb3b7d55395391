//! Import from another harness (`logbook import --from claude-code`): a
//! transcript becomes a log that its guest would have written itself.
//!
//! The log is not written by hand. The real guest (the built-in `assistant`
//! unless the caller names another) is driven over the transcript the way
//! the host drives a live session: each step from outside (an input, a
//! model's answer, a tool's result) is appended and folded, then whatever the
//! guest newly wants is recorded under the guest's own keys (`requested` for
//! model and tool calls, `output`), folded in turn, round after round, and
//! an open effect it stops wanting is `cancelled`. A model's answer completes
//! the newest open model call; older ones (an input came while they were in
//! flight) have no answer and are recorded as `failed`, so that no model is
//! asked them again; a tool's result completes the open tool call with its
//! call id. So the replay check agrees with the log by construction, and
//! a woken session wants nothing the log has not recorded.
//!
//! Invariants:
//! - nothing is written unless the whole transcript was driven through and
//!   the log's chain holds: the log is written in one transaction by the
//!   journal's import;
//! - every event carries the time of the transcript line it came from;
//! - lines that do not become events (unknown types, sidechains,
//!   compactions, a step the guest was not waiting for) are kept verbatim in
//!   `created.config.import.kept`, with their line number and why; the
//!   assistant guest ignores config keys it does not know;
//! - a guest that wants what a transcript cannot answer (a question, a
//!   timer, a compaction, a message to another session, finishing) fails the
//!   import: the log would not be one the guest could continue.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;

use serde_json::json;

use super::actor::{ModelBase, model_requested, wanted};
use super::claude_code::{Kept, Transcript, What};
use super::keys::{Keys, OpenEffect};
use crate::effects::{Effect, EffectBody};
use crate::guest::GuestInstance;
use crate::journal::{
    Created, ErrorKind, Event, EventBody, GENESIS_HASH, GuestRef, LogId, Outcome, RequestedEffect,
    Sender, chain_events,
};
use crate::session::{Host, SessionError, validate_name};

/// The principal the imported user turns are said by.
pub const CLAUDE_CODE_SENDER: &str = "claude-code";

/// What an import from another harness did.
#[derive(Clone, Debug)]
pub struct ForeignImport {
    /// The new log.
    pub id: LogId,
    /// Events written.
    pub events: u64,
    /// Lines read, the torn one included.
    pub lines: usize,
    /// Lines kept verbatim in `created.config.import.kept`, by `type`.
    pub kept: BTreeMap<String, usize>,
    /// The torn last line, if any: its number and length in bytes. Left out.
    pub torn: Option<(usize, usize)>,
    /// Content blocks left out of the imported messages, by type.
    pub blocks_left_out: BTreeMap<String, usize>,
}

impl Host {
    /// Import a Claude Code session transcript as a new session of
    /// `tenant` that runs on `guest` (see the module doc). The guest must
    /// be stored here or be a built-in example (stored once the transcript
    /// has gone through). Nothing is written when it fails.
    pub async fn import_claude_code(
        &self,
        tenant: &str,
        input: &mut (dyn BufRead + Send),
        name: Option<&str>,
        guest: GuestRef,
    ) -> Result<ForeignImport, SessionError> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        let transcript = read(input)?;
        // A built-in example is here whenever this binary is: it is stored
        // only once the import has gone through.
        let (bytes, builtin) = match self.journal().guest_bytes(&guest.digest).await? {
            Some(bytes) => (bytes, None),
            None => match crate::examples::by_digest(&guest.digest) {
                Some((example, bytes)) => (bytes.to_vec(), Some((example, bytes))),
                None => return Err(SessionError::UnknownGuest(guest.name.clone())),
            },
        };
        let shared = self.shared.clone();
        let limits = shared.limits_for(tenant);
        let (bodies, transcript) = tokio::task::spawn_blocking(move || {
            let loaded = shared.engine.load(&guest.digest, &bytes)?;
            let fresh = || -> Result<GuestInstance, SessionError> {
                Ok(shared.engine.instantiate_with(&loaded, 0, &limits, None)?)
            };
            let mut drive = Drive {
                bodies: Vec::new(),
                keys: Keys::default(),
                base: None,
                models: BTreeMap::new(),
                guest: fresh()?,
            };
            drive
                .run(transcript, guest, &fresh)
                .map(|t| (drive.bodies, t))
        })
        .await
        .map_err(|e| SessionError::TaskFailed {
            task: "import task",
            why: e.to_string(),
        })??;
        let events = chain_events(GENESIS_HASH, 0, bodies);
        let count = events.len() as u64;
        if let Some((example, bytes)) = builtin {
            self.add_builtin(tenant, example, bytes).await?;
        }
        let id = match self
            .journal()
            .import(tenant, name, &events, self.session_limit(tenant))
            .await
        {
            Ok(id) => id,
            Err(crate::journal::JournalError::NameTaken { name, .. }) => {
                return Err(SessionError::NameTaken(name));
            }
            Err(e) => return Err(e.into()),
        };
        let mut kept = BTreeMap::new();
        for k in &transcript.kept {
            *kept.entry(k.kind.clone()).or_default() += 1;
        }
        Ok(ForeignImport {
            id,
            events: count,
            lines: transcript.lines,
            kept,
            torn: transcript.torn,
            blocks_left_out: transcript.blocks_left_out,
        })
    }
}

/// Reads the whole transcript: a torn last line is noted, not refused.
fn read(input: &mut (dyn BufRead + Send)) -> Result<Transcript, SessionError> {
    let mut transcript = Transcript::default();
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        let n = input
            .read_until(b'\n', &mut bytes)
            .map_err(|source| SessionError::Io {
                doing: "read the import",
                source,
            })?;
        if n == 0 {
            break;
        }
        let ended = bytes.last() == Some(&b'\n');
        let body = if ended {
            &bytes[..bytes.len() - 1]
        } else {
            &bytes[..]
        };
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        match std::str::from_utf8(body) {
            Ok(text) => transcript.line(text, !ended),
            Err(_) if !ended => transcript.torn = Some((transcript.lines + 1, body.len())),
            Err(e) => {
                return Err(SessionError::BadImport {
                    line: transcript.lines + 1,
                    why: format!("not UTF-8: {e}"),
                });
            }
        }
    }
    if transcript.steps.is_empty() {
        return Err(SessionError::EmptyImport);
    }
    Ok(transcript)
}

/// The log being written by driving the guest.
struct Drive {
    bodies: Vec<(u64, EventBody)>,
    keys: Keys,
    /// The latest model call's whole request, as a live actor holds it.
    base: Option<ModelBase>,
    /// Each model call requested so far, by the seq that requested it.
    models: BTreeMap<u64, String>,
    guest: GuestInstance,
}

impl Drive {
    fn run(
        &mut self,
        mut t: Transcript,
        guest: GuestRef,
        fresh: &dyn Fn() -> Result<GuestInstance, SessionError>,
    ) -> Result<Transcript, SessionError> {
        let at0 = t.first_at.unwrap_or(0);
        // A turn of n model calls needs max_steps above n.
        let longest = t.longest_turn() + 1;
        let steps = std::mem::take(&mut t.steps);
        // An answer needs a model call in flight, a result its tool call:
        // a step with no place is kept verbatim.
        let mut unplaced = Vec::new();
        let mut config = serde_json::Map::new();
        if longest > 8 {
            config.insert("max_steps".into(), json!(longest));
        }
        let created = |kept: &[Kept]| Created {
            guest: guest.clone(),
            config: {
                let mut c = config.clone();
                c.insert(
                    "import".into(),
                    json!({
                        "from": "claude-code",
                        "session_id": t.session_id,
                        "cwd": t.cwd,
                        "kept": kept.iter().map(|k| json!({
                            "line": k.line, "type": k.kind, "why": k.why, "text": k.text,
                        })).collect::<Vec<_>>(),
                    }),
                );
                serde_json::Value::Object(c)
            },
            seed: 0,
            parent: None,
            compacted_from: None,
            summary: None,
            tools: Vec::new(),
        };
        // The config (with the kept lines) must be known before `init`, and
        // which steps are kept is known only once the guest has been driven:
        // drive once to learn it, then again for real. The guest does not
        // read `import`, so both drives place the same steps; the second
        // checks it.
        for pass in 0..2 {
            self.bodies.clear();
            self.keys = Keys::default();
            self.base = None;
            self.models.clear();
            let mut kept = t.kept.clone();
            kept.extend(unplaced.iter().cloned());
            kept.sort_by_key(|k| k.line);
            let created = created(&kept);
            if pass == 1 {
                self.guest = fresh()?;
            }
            self.guest.init(&created, at0)?;
            self.push(at0, EventBody::Created(created));
            self.round(at0, 0)?;
            let mut missed = Vec::new();
            for step in &steps {
                let line = step.lines.first().map_or(0, |l| l.0);
                let body = match &step.what {
                    What::Input(content) => Some(EventBody::Input {
                        from: Sender::Principal(CLAUDE_CODE_SENDER.into()),
                        content: content.clone(),
                    }),
                    What::Answer(_, response) => {
                        self.open_model().map(|key| EventBody::Completed {
                            key,
                            outcome: Outcome::Model(response.clone()),
                        })
                    }
                    What::ToolResult {
                        call_id,
                        content,
                        is_error,
                    } => self.open_tool(call_id).map(|key| EventBody::Completed {
                        key,
                        outcome: Outcome::tool_text(content.clone(), *is_error),
                    }),
                };
                let Some(body) = body else {
                    let (kind, why) = match step.what {
                        What::Answer(..) => ("assistant", "an answer with no model call in flight"),
                        _ => ("user", "a tool result with no open call of its id"),
                    };
                    for (line, text) in &step.lines {
                        missed.push(Kept {
                            line: *line,
                            kind: kind.into(),
                            why: why.into(),
                            text: text.clone(),
                        });
                    }
                    continue;
                };
                let seq = self.push(step.at, body.clone());
                self.guest.apply(&[Event {
                    seq,
                    at: step.at,
                    body,
                }])?;
                self.round(step.at, line)?;
                self.supersede(step.at, line)?;
            }
            if pass == 0 {
                unplaced = missed;
            } else if missed != unplaced {
                return Err(SessionError::BadImport {
                    line: missed.first().map_or(0, |k| k.line),
                    why: "the guest placed the transcript's steps differently once the kept lines were in its config".into(),
                });
            }
        }
        t.kept.extend(unplaced);
        t.kept.sort_by_key(|k| k.line);
        Ok(t)
    }

    fn push(&mut self, at: u64, body: EventBody) -> u64 {
        let seq = self.bodies.len() as u64;
        self.keys.note(seq, &body);
        if let EventBody::Requested {
            key,
            effect: RequestedEffect::Model { .. },
        } = &body
        {
            self.models.insert(seq, key.clone());
        }
        self.bodies.push((at, body));
        seq
    }

    /// Records what the guest newly wants, folds it, until it wants nothing
    /// new; an open effect it no longer wants is cancelled.
    fn round(&mut self, at: u64, line: usize) -> Result<(), SessionError> {
        loop {
            // As a live session asks (actor::reconcile): bodies only for keys
            // the log has not recorded, a model request as the messages after
            // the call before it.
            // Its ledger holds every key (session::keys): no index to ask.
            let mut ask = |_: &[&str]| Ok(HashSet::new());
            let (wanted, effects) = wanted(
                &mut self.guest,
                &self.keys,
                &Keys::default(),
                &mut self.base,
                &mut ask,
            )?;
            let mut new = Vec::new();
            for effect in effects {
                new.push(record(effect, self.base.as_ref(), line)?);
            }
            let gone: Vec<String> = self
                .keys
                .open()
                .filter(|(k, o)| {
                    !wanted.contains(*k) && matches!(o.effect, OpenEffect::Requested(_))
                })
                .map(|(k, _)| k.clone())
                .collect();
            new.extend(gone.into_iter().map(|key| EventBody::Cancelled { key }));
            if new.is_empty() {
                return Ok(());
            }
            let mut events = Vec::new();
            for body in new {
                let seq = self.push(at, body.clone());
                events.push(Event { seq, at, body });
            }
            self.guest.apply(&events)?;
        }
    }

    /// The open model calls, oldest first (by the seq that requested them).
    fn open_models(&mut self) -> Vec<String> {
        // Closed calls leave the map as they are met: it holds the open
        // ones and those closed since the last look.
        self.models.retain(|_, key| self.keys.get(key).is_some());
        self.models.values().cloned().collect()
    }

    /// The model call in flight: the newest open one.
    fn open_model(&mut self) -> Option<String> {
        self.open_models().pop()
    }

    /// Model calls a later one superseded (an input came while they were in
    /// flight: Claude Code interrupted them) have no answer in the
    /// transcript. Left open, they would be asked again when the session
    /// wakes; they are recorded as failed, as a live host records a call
    /// that ended without an answer.
    fn supersede(&mut self, at: u64, line: usize) -> Result<(), SessionError> {
        let mut stale = self.open_models();
        stale.pop();
        if stale.is_empty() {
            return Ok(());
        }
        let mut events = Vec::new();
        for key in stale {
            let body = EventBody::Failed {
                key,
                error: ErrorKind::Other,
                message: "interrupted in Claude Code: the transcript has no answer for it".into(),
                retryable: false,
                attempt: 1,
            };
            let seq = self.push(at, body.clone());
            events.push(Event { seq, at, body });
        }
        self.guest.apply(&events)?;
        self.round(at, line)
    }

    /// The open tool call that a result for `call_id` answers: its key is
    /// the call id, or the call id and `~` when the model repeated an id.
    fn open_tool(&self, call_id: &str) -> Option<String> {
        let mut open: Vec<&String> = self
            .keys
            .open()
            .filter(|(k, o)| {
                matches!(o.effect, OpenEffect::Requested(RequestedEffect::Tool(_)))
                    && (k.as_str() == call_id
                        || k.strip_prefix(call_id).is_some_and(|r| r.starts_with('~')))
            })
            .map(|(k, _)| k)
            .collect();
        open.sort();
        open.first().map(|k| (*k).clone())
    }
}

/// The event the host writes for an effect the guest wants; an effect a
/// transcript cannot answer fails the import.
fn record(
    effect: Effect,
    base: Option<&ModelBase>,
    line: usize,
) -> Result<EventBody, SessionError> {
    let Effect { key, body } = effect;
    Ok(match body {
        EffectBody::Model(request) => model_requested(base, &key, &request),
        EffectBody::Tool(call) => EventBody::Requested {
            key,
            effect: RequestedEffect::Tool(call),
        },
        EffectBody::Output(content) => EventBody::Output { key, content },
        other => {
            let what = match other {
                EffectBody::Ask(_) => "to ask a question",
                EffectBody::Sleep(_) => "a timer",
                EffectBody::Send { .. } => "to message another session",
                EffectBody::Compact(_) => {
                    "to compact the log (the conversation is over its context_budget)"
                }
                _ => "to finish",
            };
            return Err(SessionError::BadImport {
                line,
                why: format!("the guest wants {what} ({key}), which the transcript cannot answer"),
            });
        }
    })
}
