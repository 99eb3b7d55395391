//! The hash chain that makes a log tamper-evident: its rules live in the
//! `logbook-log` crate ([`logbook_log::chain`]); this adds what a journal
//! needs of them, a checked page of a named log.

pub use logbook_log::chain::*;

use crate::journal::event::StoredEvent;

/// [`Journal::read_checked`](super::Journal::read_checked) over events that
/// were read plainly and are held decoded (a backend that keeps no stored
/// bytes re-encodes each body to check it): the events before the first that
/// does not hold, or the break when the first one does not.
pub(crate) fn check_page(
    log: super::LogId,
    pos: &mut ChainPos,
    page: Vec<StoredEvent>,
) -> Result<Vec<StoredEvent>, super::JournalError> {
    let mut check = ChainCheck::resume(*pos);
    let mut out = Vec::with_capacity(page.len());
    for stored in page {
        let event = &stored.event;
        check.check(
            event.seq,
            event.at,
            &event.body.to_canonical(),
            Ok(Kind::of(&event.body)),
            &stored.hash,
        );
        if check.first_bad().is_some() {
            break;
        }
        *pos = ChainPos::after(&stored);
        out.push(stored);
    }
    match check.finish().first_bad {
        Some((seq, why)) if out.is_empty() => {
            Err(super::JournalError::ChainBroken { log, seq, why })
        }
        _ => Ok(out),
    }
}
