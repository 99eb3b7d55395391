//! The benches on a PostgreSQL journal (`logbook bench --journal postgres://…`).
//!
//! Invariants:
//! - Every bench that makes a host makes it on a database of its own,
//!   `logbook_bench_<uuid>`, created through the server the given URL names
//!   and dropped when its [`BenchDb`] is, whether the bench ended well or not
//!   (`DROP … WITH (FORCE)` also ends connections a failed bench left open).
//! - The URL's password is never printed: errors name the server through
//!   [`redacted_url`](crate::journal::redacted_url).

use serde_json::json;

use super::BenchResult;
use crate::journal::redacted_url;

/// Why each bench that does not run on PostgreSQL is skipped there.
pub(super) fn skipped(bench: &str) -> Option<&'static str> {
    match bench {
        "memory" => Some(
            "measures the memory of live guest instances, which does not depend on the journal \
             (see the redb run)",
        ),
        _ => None,
    }
}

/// The line a skipped bench prints.
pub(super) fn skipped_line(bench: &str, reason: &str) -> serde_json::Value {
    json!({ "bench": bench, "skipped": reason })
}

/// A database made for one bench, dropped with this.
#[derive(Debug)]
pub(super) struct BenchDb {
    admin: String,
    name: String,
    /// The URL of the new database: the admin URL with its database replaced.
    pub(super) url: String,
}

impl BenchDb {
    /// `CREATE DATABASE logbook_bench_<uuid>` on the server of `admin` (a
    /// role that may create databases).
    pub(super) async fn create(admin: &str) -> BenchResult<BenchDb> {
        let name = format!("logbook_bench_{}", uuid::Uuid::now_v7().simple());
        let url = with_database(admin, &name);
        let client = connect(admin).await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the bench database {name} on {} (the role must be allowed \
                     to create databases): {e}",
                    redacted_url(admin)
                )
            })?;
        tracing::info!("bench database {name} created");
        Ok(BenchDb {
            admin: admin.to_string(),
            name,
            url,
        })
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A thread and a runtime of its own: a drop cannot await, and this
        // may run while a bench unwinds from an error.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = connect(&admin).await.map_err(|e| e.to_string())?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => tracing::info!("bench database {} dropped", self.name),
            Ok(Err(e)) => eprintln!("warning: cannot drop the bench database {}: {e}", self.name),
            Err(_) => eprintln!(
                "warning: dropping the bench database {} panicked",
                self.name
            ),
        }
    }
}

async fn connect(url: &str) -> BenchResult<tokio_postgres::Client> {
    crate::journal::pg_connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", redacted_url(url)))
}

/// `url` naming database `name` instead of its own (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "b"),
            "postgres://u:p@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgresql://u@h:1/db?sslmode=disable", "b"),
            "postgresql://u@h:1/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "b"), "postgres://h/b");
        assert_eq!(with_database("postgres://h/", "b"), "postgres://h/b");
    }
}
