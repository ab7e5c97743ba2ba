//! The harness: guests built once, a fresh directory and database per test,
//! and child processes that report everything when they fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    // Two levels below it, whichever package builds these tests.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// A binary of the workspace (`durable`, `durable-bench`): the one cargo
/// built beside this test binary (`target/<profile>/`). `cargo test` at the
/// workspace root builds both, because the CLI's and the bench's packages
/// have tests of their own (cargo builds a package's binaries for them);
/// `DURABLE_TEST_BIN_DIR` names another directory.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| match std::env::var_os("DURABLE_TEST_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("the test binary's path");
            // target/<profile>/deps/e2e-HASH -> target/<profile>
            exe.parent()
                .and_then(Path::parent)
                .expect("the test binary is in target/<profile>/deps")
                .to_path_buf()
        }
    });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the tests from the workspace root (scripts/test.sh, or \
         cargo test --workspace), which builds the durable and durable-bench binaries",
        path.display()
    );
    path
}

fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// Builds the guests once per test process (in their own target directory,
/// so the outer cargo's lock is not in the way) and returns the path of
/// guest `name`'s component.
pub fn guest(name: &str) -> PathBuf {
    guest_path(name)
}

/// [`guest`] as a `String`, for argument lists.
pub fn wasm(name: &str) -> String {
    guest(name).to_str().expect("utf-8 path").to_string()
}

fn guest_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let target = scratch().join("guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(root())
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .args([
                "-p",
                "onboarding",
                "-p",
                "approval",
                "-p",
                "testbed",
                "-p",
                "family",
                "-p",
                "diverge",
                "-p",
                "raw",
                "-p",
                "hello",
                "-p",
                "bench",
                "-p",
                "upgrade-v1",
                "-p",
                "upgrade-append",
                "-p",
                "upgrade-rename",
                "-p",
                "upgrade-input",
                "-p",
                "upgrade-body",
                "-p",
                "upgrade-trap",
            ])
            .arg("--target-dir")
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building the guests failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("wasm32-wasip2").join("release")
    });
    dir.join(format!("{name}.wasm"))
}

/// One test's world: a temporary directory with its own database (a
/// SQLite file in it, or a new database on the PostgreSQL test server).
pub struct Env {
    pub dir: tempfile::TempDir,
    postgres: Option<String>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("durable-e2e-")
            .tempdir_in(scratch())
            .expect("temp dir");
        Env {
            dir,
            postgres: None,
        }
    }

    /// An [`Env`] whose database is a new, empty one on the PostgreSQL
    /// server of `DURABLE_TEST_POSTGRES` (`scripts/with-postgres.sh`).
    pub fn postgres() -> Env {
        let mut env = Env::new();
        env.postgres = Some(postgres_database());
        env
    }

    /// The database: a file, or a `postgres://` URL.
    pub fn db(&self) -> PathBuf {
        match &self.postgres {
            Some(url) => PathBuf::from(url),
            None => self.dir.path().join("durable.db"),
        }
    }

    /// `durable ARGS` in this test's directory and database.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("durable"));
        c.current_dir(self.dir.path())
            .args(args)
            .env("DURABLE_DB", self.db())
            // Compiled components are shared by all tests.
            .env("DURABLE_CACHE_DIR", scratch().join("compile-cache"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut c = self.cmd(args);
        let out = c.output().expect("durable starts");
        Run::new(format!("{c:?}"), out, self.db())
    }

    /// `durable run WASM --input INPUT --id ID --crash-after KEY`, which
    /// must end killed.
    pub fn crash_after(&self, wasm: &str, input: &str, id: &str, key: &str) -> Run {
        let run = self.run(&[
            "run",
            wasm,
            "--input",
            input,
            "--id",
            id,
            "--crash-after",
            key,
        ]);
        run.expect_code(None);
        run
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("durable starts")
    }

    /// Keys of the committed steps of `run`, read straight from the file.
    pub fn committed(&self, run: &str) -> BTreeSet<String> {
        if let Some(url) = &self.postgres {
            return postgres_rows(
                url,
                &format!("SELECT key FROM steps WHERE run_id = '{run}' AND key NOT LIKE '$%'"),
            )
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect();
        }
        if !self.has_table("steps") {
            return BTreeSet::new();
        }
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        let mut stmt = conn
            .prepare("SELECT key FROM steps WHERE run_id = ?1 AND key NOT LIKE '$%'")
            .expect("prepare");
        stmt.query_map([run], |r| r.get::<_, String>(0))
            .expect("query")
            .map(|k| k.expect("row"))
            .collect()
    }

    /// Whether the database exists and has `table` (a drive that was just
    /// started may not have created the schema yet).
    pub fn has_table(&self, table: &str) -> bool {
        self.db().exists()
            && self.query(&format!(
                "SELECT count(*) FROM sqlite_schema WHERE name = '{table}'"
            )) == [["1"]]
    }

    /// The rows `sql` selects, each column as text.
    /// `sql`'s rows as text, on whichever database this test uses.
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        match &self.postgres {
            Some(url) => postgres_rows(url, sql),
            None => self.query(sql),
        }
    }

    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        // Never create the file: the tests look at what durable wrote.
        let conn = rusqlite::Connection::open_with_flags(
            self.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .expect("open db");
        let mut stmt = conn.prepare(sql).expect("prepare");
        let n = stmt.column_count();
        let mut q = stmt.query([]).expect("query");
        let mut rows = Vec::new();
        while let Some(r) = q.next().expect("row") {
            rows.push(
                (0..n)
                    .map(|i| match r.get_ref(i).expect("column") {
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect(),
            );
        }
        rows
    }

    /// Every row of the run, step and component tables, as text: to show
    /// that nothing changed. The run's owner and lease are left out: taking
    /// a run over to try a replay is ownership, not history.
    pub fn dump(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        let queries = [
            "SELECT id, workflow, component_digest, input, status, output, error, seed,
                    created_at_ms, finished_at_ms FROM runs ORDER BY id",
            "SELECT * FROM steps ORDER BY run_id, key",
            "SELECT digest, length(bytes) FROM components ORDER BY digest",
        ];
        let mut rows = Vec::new();
        for sql in queries {
            let mut stmt = conn.prepare(sql).expect("prepare");
            let n = stmt.column_count();
            let mut q = stmt.query([]).expect("query");
            while let Some(r) = q.next().expect("row") {
                let cols: Vec<String> = (0..n)
                    .map(|i| match r.get_ref(i).expect("column") {
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        other => format!("{other:?}"),
                    })
                    .collect();
                rows.push(cols.join(" | "));
            }
        }
        rows
    }
}

/// A finished child process.
pub struct Run {
    pub cmd: String,
    pub out: Output,
    pub db: PathBuf,
}

impl Run {
    pub fn new(cmd: String, out: Output, db: PathBuf) -> Run {
        Run { cmd, out, db }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Panics with everything we know unless the exit code is `code`
    /// (`None`: killed by a signal).
    #[track_caller]
    pub fn expect_code(&self, code: Option<i32>) -> &Run {
        if self.out.status.code() != code {
            panic!(
                "expected exit code {code:?}, got {:?}\ncommand: {}\ndb: {}\n--- stdout\n{}\n--- stderr\n{}",
                self.out.status,
                self.cmd,
                self.db.display(),
                self.stdout(),
                self.stderr()
            );
        }
        self
    }

    #[track_caller]
    pub fn success(&self) -> serde_json::Value {
        self.expect_code(Some(0));
        serde_json::from_str(self.stdout().trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// The idempotency keys of the step bodies that ran (their `EXEC` lines).
    pub fn executed(&self) -> Vec<String> {
        executed_in(&self.stderr())
    }
}

pub fn executed_in(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("EXEC ").map(|(_, k)| k))
        .map(|k| k.split_once('/').map_or(k, |(_, key)| key).to_string())
        .collect()
}

/// Waits for a spawned child and collects its output.
pub fn finish(child: Child, what: &str, db: &Path) -> Run {
    let out = child.wait_with_output().expect("wait");
    Run::new(what.to_string(), out, db.to_path_buf())
}

/// A runtime for the few async calls of the harness.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The URL of a new, empty database on the PostgreSQL test server.
pub fn postgres_database() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::var("DURABLE_TEST_POSTGRES").expect(
        "the PostgreSQL tests need a server: run them under scripts/with-postgres.sh \
         (scripts/test.sh does), or leave them out with `cargo test -- --skip postgres`",
    );
    let name = format!(
        "e{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("the test server answers");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("a new database");
    });
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    format!("{server}/{name}")
}

/// The rows `sql` selects on the PostgreSQL database `url`, as text.
pub fn postgres_rows(url: &str, sql: &str) -> Vec<Vec<String>> {
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("the test server answers");
        tokio::spawn(connection);
        // The simple protocol answers every column as text.
        client
            .simple_query(sql)
            .await
            .expect("the query")
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("").to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
}
