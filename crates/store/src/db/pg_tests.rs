//! The store's tests that only PostgreSQL has: TLS as `sslmode` asks
//! (against the throwaway server of `scripts/with-postgres.sh`, whose
//! certificate a throwaway CA issued for `localhost` only), and a job that
//! loses a deadlock being tried again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::tests::{new_run, postgres_database};
use super::*;
use crate::Store;

/// Whether the connection named `app` (its `application_name`) is
/// encrypted, as the server sees it.
async fn encrypted(app: &str) -> Option<bool> {
    let base = std::env::var("DURABLE_TEST_POSTGRES").expect("a test server");
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("the test server answers");
    tokio::spawn(connection);
    client
        .query_opt(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1 LIMIT 1",
            &[&app],
        )
        .await
        .expect("pg_stat_ssl")
        .map(|r| r.get(0))
}

/// `sslmode` and `sslrootcert` against the test server, whose certificate
/// a throwaway CA issued for `localhost` only (`scripts/with-postgres.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_is_used_and_checked_as_sslmode_says() {
    let url = postgres_database().await;
    let ca = std::env::var("DURABLE_TEST_POSTGRES_CA").expect("the test server's CA");
    let other = std::env::var("DURABLE_TEST_POSTGRES_OTHER_CA").expect("another CA");
    let (rest, db) = url.rsplit_once('/').expect("a URL");
    let port = rest.rsplit_once(':').expect("a port").1;
    let at = |host: &str, params: &str| format!("postgres://durable@{host}:{port}/{db}?{params}");
    let mut n = 0;
    let mut open = |host: &str, params: &str| {
        n += 1;
        let app = format!("tls{}x{n}", std::process::id());
        (at(host, &format!("{params}&application_name={app}")), app)
    };
    // Encrypted and checked, as asked; the writer's connection shows it.
    for (host, params, tls) in [
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            true,
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            true,
        ),
        ("127.0.0.1", "sslmode=require".to_string(), true),
        (
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={ca}"),
            true,
        ),
        ("127.0.0.1", "sslmode=prefer".to_string(), true),
        ("127.0.0.1", String::new(), true),
        ("127.0.0.1", "sslmode=disable".to_string(), false),
    ] {
        let (url, app) = open(host, &params);
        let store = Store::open(crate::Location::Postgres(url.clone()))
            .await
            .unwrap_or_else(|e| panic!("{params}: {e}"));
        store
            .claim_run(new_run(&app), &Owner::current())
            .await
            .expect("a write");
        assert_eq!(encrypted(&app).await, Some(tls), "{host} {params}");
        store.close().await;
    }
    // A Unix socket takes no TLS, whatever sslmode says (as libpq).
    let log = std::env::var("DURABLE_TEST_POSTGRES_LOG").expect("the server's log");
    let socket_dir = std::path::Path::new(&log).parent().expect("its directory");
    let dir = socket_dir.to_string_lossy().replace('/', "%2F");
    let app = format!("tls{}xsocket", std::process::id());
    let url = format!("postgres://durable@{dir}:{port}/{db}?application_name={app}");
    let store = Store::open(crate::Location::Postgres(url.clone()))
        .await
        .unwrap_or_else(|e| panic!("over the socket: {e}"));
    store
        .claim_run(new_run(&app), &Owner::current())
        .await
        .expect("a write");
    assert_eq!(encrypted(&app).await, Some(false));
    store.close().await;
    // Refused: a name the certificate lacks, a CA that did not sign it, a
    // root file that is not there. Nothing is sent in clear instead.
    for (host, params, says) in [
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            "certificate",
        ),
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={other}"),
            "certificate",
        ),
        (
            "localhost",
            format!("sslmode=verify-ca&sslrootcert={other}"),
            "certificate",
        ),
        (
            "localhost",
            format!("sslmode=require&sslrootcert={other}"),
            "certificate",
        ),
        (
            "localhost",
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem".to_string(),
            "/nonexistent/ca.pem",
        ),
    ] {
        let (url, app) = open(host, &params);
        let err = match Store::open(crate::Location::Postgres(url.clone())).await {
            Ok(_) => panic!("{host} {params}: connected"),
            Err(e) => {
                let mut chain = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    chain.push_str(&format!(": {s}"));
                    source = s.source();
                }
                chain
            }
        };
        assert!(err.contains(says), "{host} {params}: {err}");
        assert_eq!(encrypted(&app).await, None, "{params}: a connection stayed");
    }
}

/// A job that loses a race with another transaction (PostgreSQL's
/// deadlock detector picks it) is rolled back alone and tried again in a
/// later transaction; one that keeps losing reports a transient error
/// (which a server answers with 503 and Retry-After).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_job_that_loses_a_deadlock_is_tried_again_in_a_new_transaction() {
    let url = postgres_database().await;
    let store = Store::open_with(std::path::Path::new(&url), Durability::PowerLoss)
        .await
        .expect("open");
    store
        .claim_run(new_run("r"), &Owner::current())
        .await
        .expect("a run");
    let lose =
        "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected (a test)' USING ERRCODE = '40P01'; END $$";
    let tries = Arc::new(AtomicU32::new(0));
    let counted = tries.clone();
    let won = store
        .writer_for("r")
        .transact(move |tx| {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            // What this try did, to see that a lost try leaves nothing.
            tx.exec(
                "a test's write",
                "INSERT INTO drive_starts (run_id, drive, started_at_ms) VALUES ('r', ?1, 0)",
                args![100 + n],
            )?;
            if n < 3 {
                tx.batch("losing a race", lose)?;
            }
            Ok(n)
        })
        .await
        .expect("won on the third try");
    assert_eq!(won, 3);
    let kept = store
        .read(|tx| {
            tx.all(
                "reading",
                "SELECT drive FROM drive_starts WHERE run_id = 'r' AND drive >= 100",
                args![],
                |r| r.get::<i64>(0),
            )
        })
        .await
        .expect("read");
    assert_eq!(kept, [103], "a lost try left its writes");
    let always = store
        .writer_for("r")
        .transact(move |tx| tx.batch("losing a race", lose))
        .await;
    match always {
        Err(e) => assert!(e.is_transient(), "{e}"),
        Ok(()) => panic!("a job that always loses succeeded"),
    }
}
