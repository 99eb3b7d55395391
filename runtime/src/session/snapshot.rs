//! Snapshots: a cache of a session's state at a seq, so that activation
//! replays only the tail of its log (DESIGN §5).
//!
//! A record is keyed by (log, seq, guest digest) and holds two halves:
//! the guest's own `snapshot()` bytes, and the host's ledger of the log's
//! keys ([`Keys`]: the open keys, and the closed ones that the journal's key
//! index did not hold yet, with the index's mark it counts on).
//! Invariant: restoring a record at `seq` and folding `seq + 1..` gives the
//! same guest state and the same keys as a full replay; the ledger and the
//! key index together are what make this hold for the host, whatever keys
//! the guest asks for later (a closed key the guest wants again is known to
//! be closed, as after a full replay). A record whose mark the journal's
//! index has not reached (it was lost, or the log copied without it) is not
//! restored. A record is written only when the session is idle and neither
//! parked nor finished. A missing, corrupt or foreign-guest record, or one
//! the guest fails to restore, is never an error: the replayer
//! (session::replay) falls back to a full replay and says so in the trace.
//! Nor is a guest that fails to take one: its instance is dropped and the
//! session carries on (session::actor::snapshot). Snapshots cost or save
//! only speed.
//!
//! Record bytes: `SHA-256(rest) ‖ rest`, with
//! `rest = u32 BE ledger length ‖ ledger JSON ‖ guest snapshot bytes`.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::actor::off_runtime;
use super::keys::Keys;
use super::replay::Replayer;
use super::{Host, SessionError, Shared};
use crate::journal::{LogId, LogInfo, blocking};

/// Encode a record from the host's keys and the guest's snapshot bytes.
pub(crate) fn encode(keys: &Keys, guest: &[u8]) -> Result<Vec<u8>, SessionError> {
    let ledger =
        serde_json::to_vec(keys).map_err(|e| SessionError::SnapshotEncode(e.to_string()))?;
    let len = u32::try_from(ledger.len())
        .map_err(|_| SessionError::SnapshotEncode("its key ledger is over 4 GiB".into()))?;
    let mut rest = Vec::with_capacity(4 + ledger.len() + guest.len());
    rest.extend_from_slice(&len.to_be_bytes());
    rest.extend_from_slice(&ledger);
    rest.extend_from_slice(guest);
    let mut out = Vec::with_capacity(32 + rest.len());
    out.extend_from_slice(&Sha256::digest(&rest));
    out.extend_from_slice(&rest);
    Ok(out)
}

/// Why a stored record cannot be decoded. Never an error of a request: the
/// replayer falls back to a full replay, and `verify --snapshots` reports it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadRecord {
    /// Fewer bytes than the checksum takes.
    #[error("the record is shorter than its checksum")]
    Short,
    /// The checksum does not cover the bytes after it.
    #[error("the record's checksum does not match")]
    Checksum,
    /// No room for the ledger's length.
    #[error("the record has no ledger length")]
    NoLength,
    /// Fewer bytes than the ledger's length says.
    #[error("the record's ledger is cut short")]
    CutShort,
    /// The ledger is not a key ledger's JSON.
    #[error("the ledger: {0}")]
    Ledger(#[source] serde_json::Error),
}

/// Decode a record: the keys and the guest's snapshot bytes, or why not.
pub(crate) fn decode(record: &[u8]) -> Result<(Keys, &[u8]), BadRecord> {
    let (sum, rest) = record.split_first_chunk::<32>().ok_or(BadRecord::Short)?;
    if Sha256::digest(rest).as_slice() != sum {
        return Err(BadRecord::Checksum);
    }
    let (len, rest) = rest.split_first_chunk::<4>().ok_or(BadRecord::NoLength)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(BadRecord::CutShort);
    }
    let (ledger, guest) = rest.split_at(len);
    let keys = serde_json::from_slice(ledger).map_err(BadRecord::Ledger)?;
    Ok((keys, guest))
}

/// What `verify --snapshots` found of one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotCheck {
    /// The seq it was taken at.
    pub seq: u64,
    /// The guest that took it.
    pub digest: String,
    /// Why it does not equal a full replay's state at its seq; `None` when it does.
    pub problem: Option<String>,
}

impl Host {
    /// Store a snapshot of a dormant or live session's state at its last
    /// event, computed off the actor (from the newest snapshot and the tail).
    /// Answers the seq, or `None` when the session is parked, finished or
    /// stopped, or its guest keeps no snapshots.
    pub async fn snapshot_now(&self, log: LogId) -> Result<Option<u64>, SessionError> {
        let shared: Arc<Shared> = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let info = blocking(info(&shared, log))?;
            let replayed = Replayer::new(&shared, &info).use_snapshots(true).run()?;
            if let Some(fault) = replayed.fault {
                return Err(fault.into());
            }
            let (Some(mut guest), Some(seq), None) = (
                replayed.guest,
                replayed.ledger.next_seq.checked_sub(1),
                &replayed.ledger.stopped,
            ) else {
                return Ok(None);
            };
            let Some(bytes) = guest.snapshot()? else {
                return Ok(None);
            };
            let record = encode(&replayed.ledger.keys, &bytes)?;
            blocking(
                shared
                    .journal
                    .put_snapshot(log, seq, &info.guest.digest, &record),
            )?;
            Ok(Some(seq))
        })
        .await
        .map_err(|e| SessionError::TaskFailed {
            task: "snapshot task",
            why: e.to_string(),
        })?
    }

    /// Check every snapshot of a log against a full replay to its seq: the
    /// guest's bytes and the host's keys must be equal.
    pub async fn verify_snapshots(&self, log: LogId) -> Result<Vec<SnapshotCheck>, SessionError> {
        let info = info(&self.shared, log).await?;
        let mut out = Vec::new();
        for (seq, digest, record) in self.shared.journal.snapshots(log).await? {
            let problem = match decode(&record) {
                Err(why) => Some(why.to_string()),
                Ok((keys, bytes)) => {
                    let full = off_runtime(|| {
                        Replayer::new(&self.shared, &info)
                            .guest(&digest)
                            .upto(seq + 1)
                            .run()
                    })?;
                    match (full.fault, full.guest) {
                        _ if full.ledger.next_seq != seq + 1 => {
                            Some(format!("the log has no seq {seq}"))
                        }
                        (Some(fault), _) => Some(format!("a full replay fails: {fault}")),
                        (None, None) => Some(format!("the log has ended by seq {seq}")),
                        (None, Some(mut guest)) => match guest.snapshot()? {
                            Some(state) if state != bytes => Some(format!(
                                "the guest's state differs from a full replay's ({} bytes stored, {} replayed)",
                                bytes.len(),
                                state.len()
                            )),
                            None => Some("the guest keeps no snapshots".into()),
                            Some(_) if !keys.agrees_with(&full.ledger.keys) => {
                                Some("the key ledger differs from a full replay's".into())
                            }
                            Some(_) => None,
                        },
                    }
                }
            };
            out.push(SnapshotCheck {
                seq,
                digest,
                problem,
            });
        }
        Ok(out)
    }
}

async fn info(shared: &Shared, log: LogId) -> Result<LogInfo, SessionError> {
    shared
        .journal
        .info(log)
        .await?
        .ok_or_else(|| SessionError::UnknownSession(log.to_string()))
}
