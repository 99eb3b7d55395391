//! TLS to a real PostgreSQL through the journal URL's `sslmode`.
//!
//! Debian's cluster has `ssl = on` with the snakeoil certificate (self-signed,
//! for `localhost`); these tests skip, saying why, on a server without TLS
//! or whose certificate file cannot be read here. What each connection
//! really is comes from the server: `pg_stat_ssl` of every connection a
//! journal opened (found by its `application_name`).

use logbook::journal::*;

use super::PgDb;
use crate::journal::new_log;

/// A password no error may show.
const SECRET: &str = "s3cret-never-shown";

/// The server's TLS: `None` (and why) when these tests cannot run.
async fn server_tls(db: &PgDb) -> Result<String, String> {
    let sql = db.sql().await;
    let ssl: String = sql
        .query_one("SHOW ssl", &[])
        .await
        .expect("SHOW ssl")
        .get(0);
    if ssl != "on" {
        return Err(format!("the server has ssl = {ssl}: no TLS to test"));
    }
    let file: String = sql
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .expect("SHOW ssl_cert_file")
        .get(0);
    if std::fs::File::open(&file).is_err() {
        return Err(format!(
            "the server's certificate {file} cannot be read here"
        ));
    }
    Ok(file)
}

/// The test database's URL on `host`, with `password` and `query`.
fn url(db: &PgDb, host: &str, password: &str, query: &str) -> String {
    let pg: tokio_postgres::Config = db.url.parse().expect("the test URL");
    let user = pg.get_user().expect("a user in LOGBOOK_TEST_POSTGRES");
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let dbname = pg.get_dbname().expect("a database");
    format!("postgres://{user}:{password}@{host}:{port}/{dbname}?{query}")
}

/// The password of the test URL.
fn password(db: &PgDb) -> String {
    let pg: tokio_postgres::Config = db.url.parse().expect("the test URL");
    String::from_utf8(pg.get_password().unwrap_or_default().to_vec()).expect("a UTF-8 password")
}

/// Connects a journal with `application_name=app`, makes its writer connect
/// (one commit), and answers whether each of its connections is TLS.
async fn connections(db: &PgDb, url: &str, app: &str) -> Vec<bool> {
    let journal = PgJournal::connect(
        &format!("{url}&application_name={app}"),
        PgConfig::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect with {app}: {e}"));
    journal
        .commit(Commit::new_log(new_log(DEFAULT_TENANT, None)))
        .await
        .expect("a commit, through the writer's connection");
    let rows = db
        .sql()
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .expect("pg_stat_ssl");
    drop(journal);
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn sslmode_require_and_prefer_are_tls_and_disable_is_plain() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    if let Err(why) = server_tls(&db).await {
        eprintln!("skipped: {why}");
        return;
    }
    let pw = password(&db);
    // The migration connection, the read pool, the listener, the writer:
    // at least the last three are open once a commit is answered.
    let require = connections(
        &db,
        &url(&db, "127.0.0.1", &pw, "sslmode=require"),
        "lb_require",
    )
    .await;
    assert!(require.len() >= 3, "{require:?}");
    assert!(
        require.iter().all(|tls| *tls),
        "sslmode=require: {require:?}"
    );
    // No sslmode: libpq's default, prefer, which takes TLS when offered.
    let prefer = connections(&db, &url(&db, "127.0.0.1", &pw, ""), "lb_prefer").await;
    assert!(
        prefer.len() >= 3 && prefer.iter().all(|tls| *tls),
        "{prefer:?}"
    );
    let plain = connections(
        &db,
        &url(&db, "127.0.0.1", &pw, "sslmode=disable"),
        "lb_plain",
    )
    .await;
    assert!(plain.len() >= 3, "{plain:?}");
    assert!(plain.iter().all(|tls| !*tls), "sslmode=disable: {plain:?}");
}

#[tokio::test]
async fn verify_full_checks_the_ca_and_the_host_name() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let cert = match server_tls(&db).await {
        Ok(cert) => cert,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let refused = |url: String| async move {
        let e = PgJournal::connect(&url, PgConfig::default())
            .await
            .map(drop)
            .expect_err("refused");
        let shown = e.to_string();
        assert!(!shown.contains(SECRET), "the password in {shown}");
        assert!(!format!("{e:?}").contains(SECRET), "the password in {e:?}");
        e
    };

    // No CA given (and no ~/.postgresql/root.crt here): nothing to check against.
    let home_ca = std::env::var_os("HOME").is_some_and(|h| {
        std::path::Path::new(&h)
            .join(".postgresql/root.crt")
            .exists()
    });
    if !home_ca {
        let e = refused(url(&db, "localhost", SECRET, "sslmode=verify-full")).await;
        assert!(matches!(e, JournalError::BadUrl(_)), "{e:?}");
        assert!(e.to_string().contains("sslrootcert"), "{e}");
    }
    // The public CAs did not sign the snakeoil certificate. (Not
    // `sslrootcert=system`: on Debian that reads /etc/ssl/certs, where the
    // snakeoil certificate itself is.)
    let public = "/etc/ssl/certs/ca-certificates.crt";
    let other_ca = std::path::Path::new(public).exists();
    if other_ca {
        let query = format!("sslmode=verify-full&sslrootcert={public}");
        let e = refused(url(&db, "localhost", SECRET, &query)).await;
        assert!(matches!(e, JournalError::Tls(_)), "{e:?}");
        assert!(e.to_string().contains("not signed by a CA"), "{e}");
    } else {
        eprintln!("not checked: a CA that did not sign the certificate ({public} is missing)");
    }
    // Its CA, but a host the certificate does not name.
    let e = refused(url(
        &db,
        "127.0.0.1",
        SECRET,
        &format!("sslmode=verify-full&sslrootcert={cert}"),
    ))
    .await;
    assert!(matches!(e, JournalError::Tls(_)), "{e:?}");
    assert!(e.to_string().contains("does not name the host"), "{e}");

    // Its CA and its host: verify-full connects, and so does verify-ca on
    // the address (the names are not checked there).
    let pw = password(&db);
    let full = url(
        &db,
        "localhost",
        &pw,
        &format!("sslmode=verify-full&sslrootcert={cert}"),
    );
    let full = connections(&db, &full, "lb_verify_full").await;
    assert!(!full.is_empty() && full.iter().all(|tls| *tls), "{full:?}");
    let ca = url(
        &db,
        "127.0.0.1",
        &pw,
        &format!("sslmode=verify-ca&sslrootcert={cert}"),
    );
    let ca = connections(&db, &ca, "lb_verify_ca").await;
    assert!(!ca.is_empty() && ca.iter().all(|tls| *tls), "{ca:?}");
    // verify-ca with a CA that did not sign it.
    if other_ca {
        let query = format!("sslmode=verify-ca&sslrootcert={public}");
        let e = refused(url(&db, "127.0.0.1", SECRET, &query)).await;
        assert!(e.to_string().contains("not signed by a CA"), "{e}");
    }
}
