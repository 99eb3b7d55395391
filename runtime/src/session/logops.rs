//! Operations on whole logs (DESIGN §5): fork, export, import and verify.
//! None costs time proportional to the history except those that must read
//! it all (export, verify): a fork writes one event whatever the parent's
//! length, and reads only the parent's metadata and the event it forks at.

use std::io::{BufRead, Write};

use crate::journal::{
    ChainCheck, Commit, Created, EventBody, GuestRef, Journal, Kind, LogId, LogPos, NewLog,
    StoredEvent, from_jsonl, to_jsonl,
};
use crate::session::{Host, SessionError, now_ms, validate_name};

/// Events read from the journal per page while exporting.
const EXPORT_PAGE: usize = 4096;

/// What a fork changes from its parent.
#[derive(Clone, Debug, Default)]
pub struct ForkOptions {
    /// The last seq the fork shares with the parent; its head when `None`.
    pub at: Option<u64>,
    /// A name for the fork.
    pub name: Option<String>,
    /// The guest the fork runs on; the parent's current guest when `None`.
    pub guest: Option<GuestRef>,
    /// Keys that replace the top-level keys of the parent's config (a JSON
    /// object), e.g. `{"model":"other"}` to try another model on the branch.
    pub config: Option<serde_json::Value>,
}

impl Host {
    /// Fork a session: a new log that shares the parent's events up to
    /// `options.at` and goes its own way after. No event is copied; the
    /// fork's `created` is its first own event, at `at + 1`, chained from the
    /// parent's hash at `at`. Costs one commit, whatever the parent's length.
    /// A fork is a new session: it counts against the tenant's limit.
    pub async fn fork(
        &self,
        tenant: &str,
        id_or_name: &str,
        options: ForkOptions,
    ) -> Result<LogId, SessionError> {
        if let Some(name) = &options.name {
            validate_name(name)?;
        }
        let parent = self.resolve(tenant, id_or_name).await?;
        let last = parent
            .next_seq
            .checked_sub(1)
            .ok_or_else(|| corrupt(parent.id, "it has no events"))?;
        let at = options.at.unwrap_or(last);
        if at > last {
            return Err(SessionError::BadSeq {
                session: id_or_name.to_string(),
                seq: at,
                last,
            });
        }
        let base = created_in_view(self.journal().as_ref(), parent.id, at).await?;
        let mut config = base.config;
        if let Some(overrides) = options.config {
            let (Some(into), serde_json::Value::Object(from)) = (config.as_object_mut(), overrides)
            else {
                return Err(SessionError::ConfigNotObject { of: "fork" });
            };
            into.extend(from);
        }
        let id = uuid::Uuid::now_v7();
        let created = Created {
            guest: options.guest.unwrap_or(parent.guest),
            config,
            seed: base.seed,
            parent: Some(LogPos {
                log: parent.id.to_string(),
                seq: at,
            }),
            compacted_from: None,
            summary: None,
            tools: base.tools,
        };
        let commit = Commit::new_log(NewLog {
            id,
            tenant: tenant.to_string(),
            name: options.name.clone(),
            at: now_ms(),
            created,
            // A fork is a session of its own.
            session_limit: self.session_limit(tenant),
        });
        match self.journal().commit(commit).await {
            Ok(_) => Ok(id),
            Err(crate::journal::JournalError::NameTaken { name, .. }) => {
                Err(SessionError::NameTaken(name))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The chain of logs that compaction made of a session, oldest first,
    /// ending with `log`: each log's `created` names the one it was compacted
    /// from. One read per log in the chain.
    pub async fn compaction_chain(&self, log: LogId) -> Result<Vec<LogId>, SessionError> {
        let mut chain = vec![log];
        let mut at = log;
        while let Some(from) = created_in_view(self.journal().as_ref(), at, 0)
            .await?
            .compacted_from
        {
            let of = at;
            at = LogId::parse_str(&from.log).map_err(|_| {
                corrupt(
                    of,
                    format!("it is compacted from {:?}, not a log id", from.log),
                )
            })?;
            if chain.contains(&at) {
                return Err(corrupt(at, "it is compacted from itself"));
            }
            chain.push(at);
        }
        chain.reverse();
        Ok(chain)
    }

    /// Write a log's whole view (ancestry included) as JSONL, one event a
    /// line, each ending in `\n`. Answers the number of events written.
    pub async fn export(
        &self,
        log: LogId,
        out: &mut (dyn Write + Send),
    ) -> Result<u64, SessionError> {
        let journal = self.journal();
        let tenant = match journal.info(log).await? {
            Some(info) => info.tenant,
            None => return Err(SessionError::UnknownSession(log.to_string())),
        };
        let mut from = 0;
        let mut line = String::new();
        let mut written = std::collections::HashSet::new();
        loop {
            let page = journal.read(log, from, EXPORT_PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.event.seq + 1;
            for event in &page {
                // A blob goes out once, before the first event that refers to it.
                for blob in event.event.body.blob_refs() {
                    if !written.insert(blob.digest.clone()) {
                        continue;
                    }
                    let bytes = journal.blob(&tenant, &blob.digest).await?.ok_or_else(|| {
                        corrupt(
                            log,
                            format!(
                                "seq {} refers to the blob {}, which is not stored",
                                event.event.seq, blob.digest
                            ),
                        )
                    })?;
                    write_line(
                        out,
                        &mut line,
                        &super::blobs::blob_line(&blob.digest, &bytes),
                    )?;
                }
                write_line(out, &mut line, &to_jsonl(event))?;
            }
        }
        Ok(from)
    }

    /// Import an exported log as a new session of `tenant`. The file is read
    /// whole and its chain checked first: an altered, reordered or cut-short
    /// file is refused, naming its first bad line. The guest it runs on must
    /// be stored here already (`logbook guest add`). An import is a new
    /// session: it counts against the tenant's limit.
    pub async fn import(
        &self,
        tenant: &str,
        input: &mut (dyn BufRead + Send),
        name: Option<&str>,
    ) -> Result<LogId, SessionError> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        let mut events = Vec::new();
        let mut blobs = std::collections::BTreeMap::new();
        let mut check = ChainCheck::new();
        let mut text = String::new();
        let mut line_no = 0usize;
        loop {
            text.clear();
            let read = input
                .read_line(&mut text)
                .map_err(|source| SessionError::Io {
                    doing: "read the import",
                    source,
                })?;
            if read == 0 {
                break;
            }
            line_no += 1;
            let bad = |why: String| SessionError::BadImport { line: line_no, why };
            let Some(body) = text.strip_suffix('\n') else {
                return Err(bad(
                    "cut short (no end of line): the file is truncated".into()
                ));
            };
            if super::blobs::is_blob_line(body) {
                let (digest, bytes) = super::blobs::parse_blob_line(body).map_err(bad)?;
                blobs.insert(digest, bytes);
                continue;
            }
            let event = from_jsonl(body).map_err(|e| bad(e.to_string()))?;
            for blob in event.event.body.blob_refs() {
                if !blobs.contains_key(&blob.digest)
                    && self.journal().blob(tenant, &blob.digest).await?.is_none()
                {
                    return Err(bad(format!(
                        "seq {} refers to the blob {}, which no line before it holds",
                        event.event.seq, blob.digest
                    )));
                }
            }
            check.check(
                event.event.seq,
                event.event.at,
                &event.event.body.to_canonical(),
                Ok(Kind::of(&event.event.body)),
                &event.hash,
            );
            if let Some((seq, why)) = check.first_bad() {
                return Err(bad(format!("seq {seq}: {why}")));
            }
            events.push(event);
        }
        if events.is_empty() {
            return Err(SessionError::EmptyImport);
        }
        if !matches!(events[0].event.body, EventBody::Created(_)) {
            return Err(SessionError::BadImport {
                line: 1,
                why: "the first event is not `created`".into(),
            });
        }
        // The guest it runs on now must be here, or it could never wake.
        let current = events.iter().rev().find_map(|e| match &e.event.body {
            EventBody::Created(c) => Some(&c.guest),
            EventBody::GuestChanged { to, .. } => Some(to),
            _ => None,
        });
        if let Some(guest) = current
            && self.journal().guest_bytes(&guest.digest).await?.is_none()
        {
            // A built-in example is here whenever this binary is: store it.
            let Some((example, bytes)) = crate::examples::by_digest(&guest.digest) else {
                return Err(SessionError::ImportGuestMissing {
                    name: guest.name.clone(),
                    digest: guest.digest.clone(),
                });
            };
            self.add_builtin(tenant, example, bytes).await?;
        }
        // Blobs first: an event is never stored before what it refers to.
        for bytes in blobs.values() {
            self.journal().put_blob(tenant, bytes).await?;
        }
        match self
            .journal()
            .import(tenant, name, &events, self.session_limit(tenant))
            .await
        {
            Ok(id) => Ok(id),
            Err(crate::journal::JournalError::NameTaken { name, .. }) => {
                Err(SessionError::NameTaken(name))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Write `text` and an end of line, through the reused buffer `line`.
fn write_line(
    out: &mut (dyn Write + Send),
    line: &mut String,
    text: &str,
) -> Result<(), SessionError> {
    line.clear();
    line.push_str(text);
    line.push('\n');
    out.write_all(line.as_bytes())
        .map_err(|source| SessionError::Io {
            doing: "write the export",
            source,
        })
}

/// The `created` in force at `seq` of a log's view: the first own event of
/// the ancestor that stores `seq`. Reads one event, and one metadata row per
/// ancestor at most.
pub(crate) async fn created_in_view(
    journal: &dyn Journal,
    log: LogId,
    seq: u64,
) -> Result<Created, SessionError> {
    let mut holder = log;
    let base = loop {
        match journal.parent(holder).await? {
            Some(p) if seq <= p.seq => {
                holder = LogId::parse_str(&p.log).map_err(|_| {
                    corrupt(holder, format!("its parent {:?} is not a log id", p.log))
                })?;
            }
            Some(p) => break p.seq + 1,
            None => break 0,
        }
    };
    match journal.read(holder, base, 1).await?.into_iter().next() {
        Some(StoredEvent {
            event:
                crate::journal::Event {
                    body: EventBody::Created(c),
                    ..
                },
            ..
        }) => Ok(c),
        _ => Err(corrupt(
            holder,
            format!("it has no `created` at seq {base}"),
        )),
    }
}

/// A stored log that breaks a rule the journal keeps.
fn corrupt(log: LogId, why: impl Into<String>) -> SessionError {
    SessionError::Corrupt {
        log,
        why: why.into(),
    }
}
