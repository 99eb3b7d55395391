//! The model test on PostgreSQL: the same random operations applied to a
//! [`PgJournal`] on a database of its own per case ([`PgDb`]) and to the
//! memory model, every answer compared after every step.
//!
//! Each case costs a `CREATE DATABASE`, the migrations and a `DROP DATABASE`
//! besides its operations, so it runs fewer cases than redb's:
//! `PROPTEST_CASES_POSTGRES` sets how many (16 by default). It needs
//! `LOGBOOK_TEST_POSTGRES`, as every PostgreSQL test does, and skips with
//! `LOGBOOK_SKIP_POSTGRES=1`.

use logbook::journal::{PgConfig, PgJournal};
use proptest::prelude::*;

use super::{Pair, op, run, runtime};
use crate::postgres::PgDb;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES_POSTGRES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(16)
}

impl Pair {
    /// A new database and a worker on it, beside the model; `None` when the
    /// PostgreSQL tests are skipped.
    fn postgres() -> Option<Pair> {
        let (db, journal) = runtime().block_on(async {
            let db = PgDb::create().await?;
            let journal = PgJournal::connect(&db.url, PgConfig::default())
                .await
                .expect("connect the journal");
            Some((db, journal))
        })?;
        Some(Pair::new(journal, "postgres", Box::new(db)))
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn postgres_answers_as_the_memory_model_does(ops in proptest::collection::vec(op(), 1..40)) {
        run(Pair::postgres, &ops)?;
    }
}
