//! Waiting for logs to grow, across workers: one `LISTEN logbook_heads`
//! connection per [`PgJournal`](super::PgJournal), whose notifications (sent
//! by every worker's writer in the transaction of its commit, so delivered
//! at commit) move the heads callers wait on.
//!
//! Invariants:
//! - A waiter registers ([`Heads::wait`]) before it reads the stored head,
//!   so a commit that lands between the two is seen either way.
//! - After the listener (re)connects and listens again, it reads the stored
//!   heads of every waited log, so a commit notified while it was not
//!   listening still wakes its waiters.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::{Tls, back};
use crate::journal::lease::Heads;
use crate::journal::{JournalError, LogId};

/// The channel the writers notify on; a payload is one or more
/// `<log>:<next seq>`, separated by spaces.
pub(super) const CHANNEL: &str = "logbook_heads";

/// The longest payload a writer sends: PostgreSQL refuses 8000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;

/// The `application_name` of the listener's connection.
pub(super) const APPLICATION: &str = "logbook-listener";

/// The longest pause between two attempts to reconnect the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Parses one head of a notification's payload.
fn head(p: &str) -> Option<(LogId, u64)> {
    let (log, next) = p.split_once(':')?;
    Some((LogId::parse_str(log).ok()?, next.parse().ok()?))
}

/// The payloads that notify `heads`: as few as fit, so a batch that moved
/// hundreds of heads costs one notification per ~180 of them, not one each.
pub(super) fn payloads(heads: impl IntoIterator<Item = (LogId, u64)>) -> Vec<String> {
    let mut out = Vec::new();
    let mut payload = String::new();
    for (log, next) in heads {
        let entry = format!("{log}:{next}");
        if !payload.is_empty() && payload.len() + 1 + entry.len() > MAX_PAYLOAD {
            out.push(std::mem::take(&mut payload));
        }
        if !payload.is_empty() {
            payload.push(' ');
        }
        payload.push_str(&entry);
    }
    if !payload.is_empty() {
        out.push(payload);
    }
    out
}

/// Listens for as long as the journal lives, reconnecting with a growing
/// pause. `ready` is answered once the first session listens.
pub(super) async fn run(
    config: tokio_postgres::Config,
    tls: Tls,
    heads: Arc<Heads>,
    mut ready: Option<tokio::sync::oneshot::Sender<Result<(), JournalError>>>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let ended = session(&config, &tls, &heads, &mut ready).await;
        if let Some(ready) = ready.take() {
            // The journal's connect reports the first failure itself.
            let _ = ready.send(ended);
            return;
        }
        match ended {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => tracing::warn!(error = %e, "postgres journal listener lost; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: listen, catch up, then dispatch until it ends.
async fn session(
    config: &tokio_postgres::Config,
    tls: &Tls,
    heads: &Heads,
    ready: &mut Option<tokio::sync::oneshot::Sender<Result<(), JournalError>>>,
) -> Result<(), JournalError> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let caught_up = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        let waited = heads.waited();
        if !waited.is_empty() {
            let rows = client
                .query(
                    "SELECT id, next_seq FROM logs WHERE id = ANY($1)",
                    &[&waited],
                )
                .await?;
            for row in rows {
                heads.advanced(row.try_get(0)?, back(row.try_get(1)?));
            }
        }
        Ok::<(), JournalError>(())
    }
    .await;
    if let Err(e) = caught_up {
        driver.abort();
        return Err(e);
    }
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    while let Some(n) = rx.recv().await {
        for entry in n.payload().split(' ') {
            match head(entry) {
                Some((log, next)) => heads.advanced(log, next),
                None => tracing::warn!(entry, "unreadable head in a heads notification"),
            }
        }
    }
    drop(client);
    match driver.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(JournalError::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        let log = LogId::now_v7();
        assert_eq!(head(&format!("{log}:12")), Some((log, 12)));
        assert_eq!(head("nope"), None);
        assert_eq!(head(&format!("{log}:x")), None);
    }

    #[test]
    fn payloads_carry_every_head_within_the_limit() {
        assert!(payloads([]).is_empty());
        let heads: Vec<(LogId, u64)> = (0..1000u64).map(|i| (LogId::now_v7(), i)).collect();
        let sent = payloads(heads.iter().copied());
        assert!(sent.len() > 1, "1000 heads do not fit in one payload");
        assert!(sent.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let read: Vec<_> = sent
            .iter()
            .flat_map(|p| p.split(' ').map(head))
            .collect::<Option<_>>()
            .expect("every head reads back");
        assert_eq!(read, heads);
    }
}
