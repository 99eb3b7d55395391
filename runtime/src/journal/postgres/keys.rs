//! Each log's key index on PostgreSQL (`key_index`, `key_marks`): see
//! [`Journal::indexed_keys`](crate::journal::Journal::indexed_keys).
//!
//! Invariants: a mark only grows, and rows and mark move in one statement,
//! so a reader never sees a mark its rows have not reached. Any worker may
//! write a log's index, even one whose lease was taken over: what it writes
//! are facts of committed events (a key closed below the mark), so no
//! fencing is needed.

use super::{PgJournal, back, bits};
use crate::journal::{IndexedKey, IndexedKeys, JournalError, LogId};

impl PgJournal {
    /// The log's key index: its mark, and which of `keys` it holds.
    pub async fn indexed_keys(
        &self,
        log: LogId,
        keys: &[&str],
    ) -> Result<IndexedKeys, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT m.mark, i.key, i.decided FROM key_marks m \
                 LEFT JOIN key_index i ON i.log = m.log AND i.key = ANY($2) \
                 WHERE m.log = $1",
            )
            .await?;
        let rows = c.query(&st, &[&log, &keys]).await?;
        let mut out = IndexedKeys::default();
        for row in rows {
            out.mark = back(row.try_get(0)?);
            if let Some(key) = row.try_get::<_, Option<String>>(1)? {
                out.found.push(IndexedKey {
                    key,
                    decided: row.try_get(2)?,
                });
            }
        }
        Ok(out)
    }

    /// Adds `keys` to the log's key index and moves its mark to `mark`,
    /// never back.
    pub async fn index_keys(
        &self,
        log: LogId,
        mark: u64,
        keys: &[IndexedKey],
    ) -> Result<(), JournalError> {
        let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
        let decided: Vec<bool> = keys.iter().map(|k| k.decided).collect();
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "WITH i AS (INSERT INTO key_index (log, key, decided) \
                   SELECT $1, k, d FROM unnest($2::text[], $3::bool[]) AS u(k, d) \
                   ON CONFLICT (log, key) DO UPDATE \
                   SET decided = key_index.decided OR EXCLUDED.decided) \
                 INSERT INTO key_marks (log, mark) VALUES ($1, $4) \
                 ON CONFLICT (log) DO UPDATE SET mark = GREATEST(key_marks.mark, EXCLUDED.mark)",
            )
            .await?;
        c.execute(&st, &[&log, &names, &decided, &bits(mark)])
            .await?;
        Ok(())
    }
}
