//! The redb tables of the journal and the byte layout of their values.
//!
//! Public (but hidden from the docs) so that tests and tools can open a journal
//! file with plain redb. `docs/log-format.md` describes the same layout.
//!
//! | table         | key                               | value |
//! |---------------|-----------------------------------|-------|
//! | `events`      | `(u128 log, u64 seq)`             | `at` (u64 BE, 8 bytes) ‖ `hash` (32 bytes) ‖ canonical body JSON |
//! | `logs`        | `u128 log`                        | JSON `{"tenant","name","guest":{"name","digest"},"created_at","finished","failed"}` |
//! | `names`       | `(&str tenant, &str name)`        | `u128 log` |
//! | `guests`      | `&str digest` (`sha256:<hex>`)    | the component's bytes |
//! | `guest_names` | `(&str tenant, &str name)`        | `&str digest` |
//! | `open`        | `(u128 log, &str key)`            | JSON `{"effect":{…requested effect…},"awaiting_approval":bool}` |
//! | `snapshots`   | `(u128 log, u64 seq, &str digest)` | SHA-256 of the rest ‖ u32 BE length ‖ host ledger JSON ‖ guest snapshot |
//! | `tenant_logs` | `(&str tenant, u128 log)`         | `()` |
//! | `tenant_counts` | `&str tenant`                   | `(u64 logs, u64 sessions)` |
//! | `key_index`   | `(u128 log, &str key)`            | `bool` decided |
//! | `key_marks`   | `u128 log`                        | `u64` mark: `key_index` holds every key closed below it |
//!
//! A log id is its UUID as a `u128` (big-endian UUID order), so UUIDv7 ids
//! sort in creation order. Invariants: rows of `events` are only ever inserted,
//! never updated or deleted; seqs of a log are dense from 0; `logs`, `open`,
//! `tenant_logs`, `tenant_counts` and the name tables are projections kept in
//! the transaction that writes the events. `tenant_logs` has one row per row of
//! `logs`; `tenant_counts` holds, per tenant, its number of logs and of those
//! that are sessions of their own (every log but a compaction's continuation).

use redb::TableDefinition;

use super::JournalError;

/// `(log, seq) -> at ‖ hash ‖ body`.
pub const EVENTS: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("events");
/// `log -> LogMeta` JSON.
pub const LOGS: TableDefinition<u128, &[u8]> = TableDefinition::new("logs");
/// `(tenant, name) -> log`.
pub const NAMES: TableDefinition<(&str, &str), u128> = TableDefinition::new("names");
/// `digest -> component bytes`.
pub const GUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("guests");
/// `(tenant, digest) -> bytes`: large tool parts, by digest.
pub const BLOBS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("blobs");
/// `(tenant, name) -> digest`.
pub const GUEST_NAMES: TableDefinition<(&str, &str), &str> = TableDefinition::new("guest_names");
/// `(log, key) -> OpenRecord` JSON.
pub const OPEN: TableDefinition<(u128, &str), &[u8]> = TableDefinition::new("open");

/// `(log, seq, guest digest) -> snapshot record`: a cache of a guest's state
/// after folding the log through `seq` (the session module owns the record's
/// bytes). Deleting any row changes nothing but the speed of activation.
pub const SNAPSHOTS: TableDefinition<(u128, u64, &str), &[u8]> = TableDefinition::new("snapshots");

/// `(tenant, log) -> ()`: each tenant's logs in id (creation) order, so a page
/// of a tenant's list costs the page, not every log of every tenant.
pub const TENANT_LOGS: TableDefinition<(&str, u128), ()> = TableDefinition::new("tenant_logs");

/// `tenant -> (logs, sessions)`: how many logs the tenant holds, and how many
/// of them are sessions of their own rather than a compaction's continuation.
/// The writer checks a tenant's session limit against it.
pub const TENANT_COUNTS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("tenant_counts");

/// `(log, key) -> decided`: the effect keys a log has closed, a cache that
/// spares a resident session holding them all (session::keys). Written
/// aside from the events, by the session, in batches; never by the writer.
pub const KEY_INDEX: TableDefinition<(u128, &str), bool> = TableDefinition::new("key_index");

/// `log -> mark`: `key_index` holds every key of the log closed at a seq
/// below the mark. A log without a row has mark 0.
pub const KEY_MARKS: TableDefinition<u128, u64> = TableDefinition::new("key_marks");

/// Bytes before the body in an `events` value.
pub const EVENT_HEADER_LEN: usize = 8 + 32;

/// The `events` value of one event.
pub fn encode_event(at: u64, hash: &[u8; 32], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(EVENT_HEADER_LEN + body.len());
    v.extend_from_slice(&at.to_be_bytes());
    v.extend_from_slice(hash);
    v.extend_from_slice(body);
    v
}

/// Splits an `events` value into `(at, hash, body)` without copying the body.
pub fn split_event(value: &[u8]) -> Result<(u64, [u8; 32], &[u8]), JournalError> {
    match value.split_first_chunk::<8>() {
        Some((at, rest)) => match rest.split_first_chunk::<32>() {
            Some((hash, body)) => Ok((u64::from_be_bytes(*at), *hash, body)),
            None => Err(short(value)),
        },
        None => Err(short(value)),
    }
}

fn short(value: &[u8]) -> JournalError {
    JournalError::Corrupt(format!(
        "event value of {} bytes is shorter than its {EVENT_HEADER_LEN}-byte header",
        value.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_values_round_trip() {
        let v = encode_event(0x0102_0304_0506_0708, &[9; 32], b"{}");
        assert_eq!(&v[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let (at, hash, body) = split_event(&v).expect("well formed");
        assert_eq!(
            (at, hash, body),
            (0x0102_0304_0506_0708, [9; 32], &b"{}"[..])
        );
        assert!(matches!(
            split_event(&v[..39]),
            Err(JournalError::Corrupt(_))
        ));
    }
}
