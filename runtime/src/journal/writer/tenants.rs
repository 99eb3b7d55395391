//! A new log against its tenant's counts, as the writer admits it: whether
//! it is a session of its own, and whether the tenant's session limit lets
//! it in. Checked against the counts as the batch has left them plus the new
//! logs planned earlier in the same commit, so no interleaving of concurrent
//! creates can take a tenant past its limit.

use super::{Plan, WriteTables};
use crate::journal::tenants::{compacted_from, continues_into, counts, stored_continued};
use crate::journal::{Commit, JournalError, NewLog};

/// A new log's entry in its tenant's index and counts.
pub(super) struct TenantLog {
    pub(super) log: u128,
    pub(super) tenant: String,
    pub(super) session: bool,
}

/// Whether `nl` is a session of its own (`Ok(Ok(true))`), a compaction's
/// continuation (`Ok(Ok(false))`), or refused because its tenant's limit is
/// reached.
pub(super) fn admit(
    t: &WriteTables<'_>,
    commit: &Commit,
    nl: &NewLog,
    plan: &Plan,
) -> Result<Result<bool, JournalError>, JournalError> {
    let session = !continuation(t, commit, nl)?;
    if let Some(limit) = nl.session_limit.filter(|_| session) {
        let planned = plan
            .tenants
            .iter()
            .filter(|p| p.session && p.tenant == nl.tenant)
            .count() as u64;
        let (_, held) = counts(&t.tenant_counts, &nl.tenant)?;
        if held + planned >= limit {
            return Ok(Err(JournalError::LimitReached {
                tenant: nl.tenant.clone(),
                limit,
            }));
        }
    }
    Ok(Ok(session))
}

/// Whether `nl` continues a compacted log of its tenant: that log's
/// `continued` at the seq `nl` names points back at it, in this commit (as
/// a compaction writes them) or already stored. If that `continued` is in
/// this commit and refused, so is the whole commit.
fn continuation(t: &WriteTables<'_>, commit: &Commit, nl: &NewLog) -> Result<bool, JournalError> {
    let Some((from, seq)) = compacted_from(&nl.created) else {
        return Ok(false);
    };
    let in_commit = commit.appends.iter().any(|a| {
        a.log.as_u128() == from
            && seq
                .checked_sub(a.expected_seq)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| a.events.get(i))
                .is_some_and(|(_, body)| continues_into(body, nl.id))
    });
    if !in_commit && !stored_continued(&t.events, from, seq, nl.id)? {
        return Ok(false);
    }
    Ok(t.meta(from)?.is_some_and(|m| m.tenant == nl.tenant))
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::super::tests::{cancel, new_log, request, writer};
    use crate::journal::event::LogPos;
    use crate::journal::tables::TENANT_COUNTS;
    use crate::journal::{Append, Commit, EventBody, JournalError, LogId, NewLog};

    fn limited(tenant: &str, limit: Option<u64>) -> NewLog {
        NewLog {
            tenant: tenant.into(),
            session_limit: limit,
            ..new_log()
        }
    }

    /// `(logs, sessions)` of a tenant, as stored.
    fn stored_counts(w: &super::super::Writer, tenant: &str) -> (u64, u64) {
        let txn = w.file.get().expect("the file").begin_read().expect("read");
        let table = txn.open_table(TENANT_COUNTS).expect("counts");
        table
            .get(tenant)
            .expect("get")
            .map(|v| v.value())
            .unwrap_or((0, 0))
    }

    #[test]
    fn the_limit_refuses_one_commit_and_not_its_batch() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let (mut w, _) = writer(&dir);
        let first = limited("t", Some(2));
        let first_id = first.id;
        let (reqs, mut answers): (Vec<_>, Vec<_>) = [
            Commit::new_log(first),
            Commit::new_log(limited("t", Some(2))),
            Commit::new_log(limited("t", Some(2))),
            Commit::new_log(limited("u", Some(2))),
            Commit::new_log(limited("t", None)),
            cancel(first_id, 1, "a"),
        ]
        .into_iter()
        .map(request)
        .unzip();
        w.run_batch(reqs);
        let mut answer = |i: usize| answers[i].try_recv().expect("answered");
        assert!(answer(0).is_ok());
        assert!(answer(1).is_ok());
        assert!(matches!(
            answer(2),
            Err(JournalError::LimitReached { ref tenant, limit: 2 }) if tenant == "t"
        ));
        assert!(answer(3).is_ok(), "another tenant has its own count");
        assert!(answer(4).is_ok(), "no limit given, none applied");
        assert!(answer(5).is_ok(), "the rest of the batch goes on");
        assert_eq!(stored_counts(&w, "t"), (3, 3));
        assert_eq!(stored_counts(&w, "u"), (1, 1));

        // Two new logs in one commit count against the limit together: the
        // second takes `t` past 4, so neither is written.
        let (a, b) = (limited("t", Some(4)), limited("t", Some(4)));
        let ids = [a.id, b.id];
        let results = w
            .write_batch(vec![Commit {
                new_logs: vec![a, b],
                ..Commit::default()
            }])
            .expect("batch");
        assert!(matches!(
            results[0],
            Err(JournalError::LimitReached { limit: 4, .. })
        ));
        assert_eq!(stored_counts(&w, "t"), (3, 3));
        let results = w
            .write_batch(vec![Commit::new_log(limited("t", Some(4)))])
            .expect("batch");
        assert!(results[0].is_ok());
        assert_eq!(stored_counts(&w, "t"), (4, 4));
        let txn = w.file.get().expect("the file").begin_read().expect("read");
        let logs = txn.open_table(crate::journal::tables::LOGS).expect("logs");
        for id in ids {
            assert!(logs.get(id.as_u128()).expect("get").is_none());
        }
    }

    /// A new log that says it continues `from` at `seq`.
    fn continuation(from: LogId, seq: u64, limit: Option<u64>) -> NewLog {
        let mut nl = limited("t", limit);
        nl.created.compacted_from = Some(LogPos {
            log: from.to_string(),
            seq,
        });
        nl.created.summary = Some("so far".into());
        nl
    }

    #[test]
    fn a_compaction_goes_on_its_session_and_a_claim_alone_does_not() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let (mut w, _) = writer(&dir);
        let old = limited("t", Some(1));
        let old_id = old.id;
        assert!(w.write_batch(vec![Commit::new_log(old)]).expect("batch")[0].is_ok());

        // As a compaction writes it: the old log's `continued` names the new
        // log, in the same commit. At the limit, and still admitted.
        let next = continuation(old_id, 1, Some(1));
        let next_id = next.id;
        let compaction = Commit {
            new_logs: vec![next],
            appends: vec![Append {
                log: old_id,
                expected_seq: 1,
                at_head: false,
                events: vec![(
                    2,
                    EventBody::Continued {
                        log: next_id.to_string(),
                    },
                )],
                lease: None,
            }],
            ..Commit::default()
        };
        assert!(w.write_batch(vec![compaction]).expect("batch")[0].is_ok());
        assert_eq!(stored_counts(&w, "t"), (2, 1), "one session, two logs");

        // Claiming to continue a log, with no `continued` naming it, makes a
        // session like any other: refused at the limit.
        let claim = continuation(old_id, 1, Some(1));
        let results = w.write_batch(vec![Commit::new_log(claim)]).expect("batch");
        assert!(matches!(
            results[0],
            Err(JournalError::LimitReached { limit: 1, .. })
        ));
        // And counted as one without a limit.
        let claim = continuation(old_id, 1, None);
        assert!(w.write_batch(vec![Commit::new_log(claim)]).expect("batch")[0].is_ok());
        assert_eq!(stored_counts(&w, "t"), (3, 2));
    }
}
