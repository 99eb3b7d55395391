//! Forks, as the writer creates them: the parent pointer is checked and the
//! fork's `created` chained from the parent's event at the fork point,
//! wherever in the parent's ancestry that event is stored.

use redb::ReadableTable;

use super::{LogMeta, Plan, WriteTables, Writer};
use crate::journal::event::LogPos;
use crate::journal::info::OpenRecord;
use crate::journal::tables;
use crate::journal::{JournalError, LogId, NewLog};

impl Writer {
    /// Checks a fork's parent pointer and answers the hash its `created`
    /// chains from: the parent's event at `parent.seq`, wherever in the
    /// parent's ancestry it is stored. A fork at the parent's head takes over
    /// its flags and open effects (the state at that seq); an earlier fork
    /// starts with none, and its actor learns the prefix's open keys by replay.
    /// No event is read beyond the one at `parent.seq`: a fork costs the same
    /// whatever the length of the history.
    pub(super) fn fork_point(
        &mut self,
        t: &WriteTables<'_>,
        nl: &NewLog,
        parent: &LogPos,
        meta: &mut LogMeta,
        plan: &mut Plan,
    ) -> Result<Result<[u8; 32], JournalError>, JournalError> {
        let Ok(parent_id) = LogId::parse_str(&parent.log) else {
            return Ok(Err(JournalError::BadParent {
                parent: parent.log.clone(),
            }));
        };
        let pid = parent_id.as_u128();
        let Some(parent_meta) = t.meta(pid)?.filter(|m| m.tenant == nl.tenant) else {
            return Ok(Err(JournalError::UnknownLog(parent_id)));
        };
        let Some(head) = self.head(t, pid)? else {
            return Ok(Err(JournalError::UnknownLog(parent_id)));
        };
        if parent.seq >= head.next_seq {
            return Ok(Err(JournalError::NoSeq {
                log: parent_id,
                seq: parent.seq,
                next: head.next_seq,
            }));
        }
        // Walk up to the ancestor that stores the row at `parent.seq`.
        let (mut log, mut log_meta) = (pid, parent_meta.clone());
        let mut depth = 0usize;
        while let Some(up) = log_meta.parent.as_ref().filter(|p| parent.seq <= p.seq) {
            let up_id = LogId::parse_str(&up.log)
                .map_err(|_| JournalError::Corrupt(format!("bad parent id {:?}", up.log)))?
                .as_u128();
            depth += 1;
            log_meta = match t.meta(up_id)? {
                Some(m) if depth < 10_000 => m,
                _ => {
                    return Err(JournalError::Corrupt(format!(
                        "the ancestry of log {parent_id} is broken at {}",
                        up.log
                    )));
                }
            };
            log = up_id;
        }
        let prev = match t.events.get((log, parent.seq))? {
            Some(v) => tables::split_event(v.value())?.1,
            None => {
                return Err(JournalError::Corrupt(format!(
                    "log {} has no row for seq {}",
                    LogId::from_u128(log),
                    parent.seq
                )));
            }
        };
        meta.parent = Some(parent.clone());
        if parent.seq + 1 == head.next_seq {
            meta.finished = parent_meta.finished;
            // A fork onto another guest is how a failed session is retried.
            meta.failed = parent_meta.failed && parent_meta.guest == nl.created.guest;
            let id = nl.id.as_u128();
            for entry in t.open.range((pid, "")..)? {
                let (k, v) = entry?;
                let (log, key) = k.value();
                if log != pid {
                    break;
                }
                // The parent's holder may run an approved tool it has not
                // claimed yet: the fork must assume it may have run.
                let record = OpenRecord {
                    unstarted: false,
                    ..super::decode_open(v.value())?
                };
                plan.opens
                    .push((id, key.to_owned(), super::encode_open(&record)?));
            }
        }
        Ok(Ok(prev))
    }
}
