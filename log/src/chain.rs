//! The hash chain that makes a log tamper-evident.
//!
//! `hash(seq) = SHA-256(prev_hash || seq as u64 BE || at as u64 BE || canonical body JSON)`,
//! where `prev_hash` is the hash of event `seq - 1`, or 32 zero bytes for seq 0.
//! The log's id is not hashed: an export re-imported under a new id hashes the same.
//! Everything here is pure; the journal and import both use it. So is
//! [`digest_of`], the content address of guest components and model requests.

use std::borrow::Borrow;

use sha2::{Digest, Sha256};

use crate::event::{EventBody, StoredEvent};

/// The `prev_hash` of seq 0.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The hash of the event at `seq`, written at `at`, with this canonical body,
/// following the event whose hash is `prev`.
pub fn event_hash(prev: &[u8; 32], seq: u64, at: u64, canonical_body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at.to_be_bytes());
    h.update(canonical_body);
    h.finalize().into()
}

/// The content address of some bytes: `sha256:` and the hex SHA-256.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The result of recomputing a log's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// How many events were examined (all of the log's events).
    pub events: u64,
    /// The first event that does not hold, and why; `None` when the chain holds.
    pub first_bad: Option<(u64, String)>,
}

impl Verified {
    /// Whether every event holds.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Where a checked read stands in a log's chain: the seq it reads next and
/// the hash of the event before it. One `ChainPos`, threaded through the
/// pages of a checked read (the `logbook` journal's `read_checked`), checks
/// each event against its predecessor as it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainPos {
    /// The seq of the next event.
    pub next_seq: u64,
    /// The hash of the event before it ([`GENESIS_HASH`] before seq 0).
    pub prev_hash: [u8; 32],
}

impl ChainPos {
    /// The start of every log: seq 0, after the genesis hash.
    pub const START: ChainPos = ChainPos {
        next_seq: 0,
        prev_hash: GENESIS_HASH,
    };

    /// Right after `event`, taking its stored hash on trust: a read from here
    /// checks the events after it, not `event` itself.
    pub fn after(event: &StoredEvent) -> ChainPos {
        ChainPos {
            next_seq: event.event.seq.saturating_add(1),
            prev_hash: event.hash,
        }
    }
}

/// What the chain's rules need of a body besides its bytes.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `created`: at seq 0, or for a fork at `parent.seq + 1`, right after
    /// the last event it shares with its parent.
    Created {
        /// The parent's seq, for a fork.
        fork_of: Option<u64>,
    },
    /// Any other kind, by name.
    Other(&'static str),
}

impl Kind {
    /// The kind of `body`.
    pub fn of(body: &EventBody) -> Kind {
        match body {
            EventBody::Created(c) => Kind::Created {
                fork_of: c.parent.as_ref().map(|p| p.seq),
            },
            other => Kind::Other(other.kind()),
        }
    }
}

/// Checks events one at a time, in stored order.
///
/// After a bad event it carries on from that event's *stored* hash and seq, so
/// one damaged event is reported once rather than making every later one bad.
#[derive(Debug)]
pub struct ChainCheck {
    prev: [u8; 32],
    next_seq: u64,
    events: u64,
    first_bad: Option<(u64, String)>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck::new()
    }
}

impl ChainCheck {
    /// A check from the start of a log.
    pub fn new() -> Self {
        ChainCheck::resume(ChainPos::START)
    }

    /// Checks from `pos` on, as if every event before it had held.
    pub fn resume(pos: ChainPos) -> Self {
        ChainCheck {
            prev: pos.prev_hash,
            next_seq: pos.next_seq,
            events: 0,
            first_bad: None,
        }
    }

    /// Checks one event given its canonical body bytes and its kind, or why the
    /// body is not a valid body.
    pub fn check(
        &mut self,
        seq: u64,
        at: u64,
        canonical_body: &[u8],
        kind: Result<Kind, String>,
        stored_hash: &[u8; 32],
    ) {
        self.events += 1;
        let why = if seq != self.next_seq {
            Some(format!("seq gap: expected {}, found {seq}", self.next_seq))
        } else {
            let computed = event_hash(&self.prev, seq, at, canonical_body);
            if &computed != stored_hash {
                Some(format!(
                    "hash mismatch: stored {}, computed {}",
                    hex::encode(stored_hash),
                    hex::encode(computed)
                ))
            } else {
                match kind {
                    Err(why) => Some(why),
                    Ok(Kind::Created { fork_of: None }) if seq != 0 => {
                        Some("`created` after seq 0".to_owned())
                    }
                    Ok(Kind::Created { fork_of: Some(p) }) if p.checked_add(1) != Some(seq) => {
                        Some(format!(
                            "a fork's `created` at seq {seq} names parent seq {p}"
                        ))
                    }
                    Ok(Kind::Other(k)) if seq == 0 => {
                        Some(format!("seq 0 is `{k}`, not `created`"))
                    }
                    Ok(_) => None,
                }
            }
        };
        if let Some(why) = why
            && self.first_bad.is_none()
        {
            self.first_bad = Some((seq, why));
        }
        self.prev = *stored_hash;
        self.next_seq = seq.saturating_add(1);
    }

    /// The first bad event so far.
    pub fn first_bad(&self) -> Option<&(u64, String)> {
        self.first_bad.as_ref()
    }

    /// What the check found.
    pub fn finish(self) -> Verified {
        Verified {
            events: self.events,
            first_bad: self.first_bad,
        }
    }
}

/// Recomputes the chain over events in order, starting at seq 0: the first
/// event whose seq is not the next one or whose hash does not match.
pub fn verify_events<E: Borrow<StoredEvent>>(events: impl IntoIterator<Item = E>) -> Verified {
    let mut check = ChainCheck::new();
    for e in events {
        let e = e.borrow();
        check.check(
            e.event.seq,
            e.event.at,
            &e.event.body.to_canonical(),
            Ok(Kind::of(&e.event.body)),
            &e.hash,
        );
    }
    check.finish()
}

/// Chains bodies into stored events from seq `next_seq` after `prev`: what an
/// append computes, for callers (import, tests) that build logs outside a journal.
pub fn chain_events(
    mut prev: [u8; 32],
    next_seq: u64,
    bodies: impl IntoIterator<Item = (u64, EventBody)>,
) -> Vec<StoredEvent> {
    bodies
        .into_iter()
        .zip(next_seq..)
        .map(|((at, body), seq)| {
            let hash = event_hash(&prev, seq, at, &body.to_canonical());
            prev = hash;
            StoredEvent {
                event: crate::event::Event { seq, at, body },
                hash,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Created, GuestRef};

    fn created() -> EventBody {
        EventBody::Created(Created {
            guest: GuestRef {
                name: "counter".into(),
                digest: "sha256:00".into(),
            },
            config: serde_json::json!({}),
            seed: 7,
            parent: None,
            compacted_from: None,
            summary: None,
            tools: vec![],
        })
    }

    #[test]
    fn hash_is_sha256_of_the_documented_bytes() {
        let body = br#"{"kind":"guest-failed","message":"x"}"#;
        let mut bytes = vec![0u8; 32];
        bytes.extend_from_slice(&0u64.to_be_bytes());
        bytes.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        bytes.extend_from_slice(body);
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(
            event_hash(&GENESIS_HASH, 0, 1_700_000_000_000, body),
            expected
        );
    }

    #[test]
    fn digests_are_prefixed_hex_sha256() {
        assert_eq!(
            digest_of(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn canonical_objects_have_sorted_keys() {
        // Hashes depend on it: a dependency turning on serde_json's
        // `preserve_order` would change the canonical form of `config`.
        let body = EventBody::Created(Created {
            config: serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).expect("json"),
            ..match created() {
                EventBody::Created(c) => c,
                _ => unreachable!(),
            }
        });
        let text = String::from_utf8(body.to_canonical()).expect("utf-8");
        assert!(
            text.contains(r#""config":{"a":{"c":3,"d":2},"b":1}"#),
            "{text}"
        );
    }

    #[test]
    fn every_input_changes_the_hash() {
        let base = event_hash(&GENESIS_HASH, 1, 2, b"{}");
        assert_ne!(base, event_hash(&[1; 32], 1, 2, b"{}"));
        assert_ne!(base, event_hash(&GENESIS_HASH, 2, 2, b"{}"));
        assert_ne!(base, event_hash(&GENESIS_HASH, 1, 3, b"{}"));
        assert_ne!(base, event_hash(&GENESIS_HASH, 1, 2, b"{ }"));
        // Seq and at are fixed-width: moving a byte between them changes the hash.
        assert_ne!(
            event_hash(&GENESIS_HASH, 0x100, 0, b""),
            event_hash(&GENESIS_HASH, 0, 0x100, b"")
        );
    }

    #[test]
    fn chained_events_verify() {
        let events = chain_events(
            GENESIS_HASH,
            0,
            [
                (10, created()),
                (
                    11,
                    EventBody::GuestFailed {
                        message: "a".into(),
                    },
                ),
                (12, EventBody::Cancelled { key: "k".into() }),
            ],
        );
        assert_eq!(events[2].event.seq, 2);
        let v = verify_events(&events);
        assert_eq!(
            v,
            Verified {
                events: 3,
                first_bad: None
            }
        );
    }

    #[test]
    fn tampering_names_the_first_bad_seq() {
        let mut events = chain_events(
            GENESIS_HASH,
            0,
            (0..5).map(|i| {
                let body = if i == 0 {
                    created()
                } else {
                    EventBody::GuestFailed {
                        message: format!("m{i}"),
                    }
                };
                (i, body)
            }),
        );
        events[3].event.at += 1;
        let v = verify_events(&events);
        assert_eq!(v.events, 5);
        let (seq, why) = v.first_bad.expect("tampered");
        assert_eq!(seq, 3);
        assert!(why.starts_with("hash mismatch"), "{why}");
    }

    #[test]
    fn a_missing_event_is_a_seq_gap() {
        let mut events = chain_events(
            GENESIS_HASH,
            0,
            [
                (0, created()),
                (1, EventBody::Cancelled { key: "a".into() }),
                (2, EventBody::Cancelled { key: "b".into() }),
            ],
        );
        events.remove(1);
        let (seq, why) = verify_events(&events).first_bad.expect("gap");
        assert_eq!(seq, 2);
        assert_eq!(why, "seq gap: expected 1, found 2");
    }

    #[test]
    fn a_log_must_start_with_created() {
        let events = chain_events(
            GENESIS_HASH,
            0,
            [(0, EventBody::Cancelled { key: "a".into() })],
        );
        let (seq, why) = verify_events(&events).first_bad.expect("not created");
        assert_eq!(seq, 0);
        assert!(why.contains("not `created`"), "{why}");
    }
}
