//! Test harness: run the real `carrierhub` binary against a fresh data directory, and a real
//! server on a free port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_carrierhub");

pub struct Env {
    pub dir: tempfile::TempDir,
    /// `--database-url`: the store in PostgreSQL instead of SQLite in the data directory.
    pub database_url: Option<String>,
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: None,
        }
    }

    /// A fresh data directory for documents, with the store in the PostgreSQL database at
    /// `url`.
    pub fn with_database(url: &str) -> Self {
        Self {
            database_url: Some(url.to_owned()),
            ..Self::new()
        }
    }

    /// The binary with `--data-dir` (and `--database-url`, when set) for this environment.
    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .env("CARRIERHUB_LOG", "warn")
            .env_remove("CARRIERHUB_DATABASE_URL")
            .env_remove("CARRIERHUB_BROKER_URL");
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        command
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("write test file");
        p
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run carrierhub")
    }

    /// Runs `ingest --json` and returns the submission it printed.
    pub fn ingest(&self, carrier: &str, mapping: &Path, file: &Path) -> serde_json::Value {
        let out = self.run(&[
            "ingest",
            "--carrier",
            carrier,
            "--mapping",
            mapping.to_str().unwrap(),
            "--json",
            file.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "ingest failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ingest --json prints JSON")
    }

    pub fn serve(&self) -> Server {
        self.serve_with(&[])
    }

    /// `serve` on a free port, with more options.
    pub fn serve_with(&self, options: &[&str]) -> Server {
        let mut command = self.command();
        command
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--admin-bind",
                "127.0.0.1:0",
            ])
            .args(options);
        Server::start(command)
    }
}

impl Server {
    /// Starts a `serve` command and waits for the address it prints.
    pub fn start(command: Command) -> Self {
        Self::start_logging_to(command, Stdio::inherit())
    }

    /// As [`Server::start`], with the process's standard error (its log) sent to `stderr`.
    pub fn start_logging_to(mut command: Command, stderr: Stdio) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start carrierhub serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read banner");
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected banner: {line}"))
            .to_owned();
        Server { child, base }
    }
}

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Polls a submission until its worker has finished it.
    #[allow(dead_code)] // not every test file uploads
    pub async fn wait_for_submission(
        &self,
        client: &reqwest::Client,
        id: i64,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, _, s) = get(client, self, &format!("/v1/submissions/{id}")).await;
            if s["status"] == "completed" || s["status"] == "failed" {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "submission {id} not processed: {s}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Server {
    /// Sends SIGTERM: the process begins its graceful shutdown.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `limit` for the process to exit; its status and how long it took.
    pub fn wait_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<(std::process::ExitStatus, std::time::Duration)> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies at once, mid-write or not.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `path` from `server`: status, content type and JSON body.
pub async fn get(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
) -> (reqwest::StatusCode, String, serde_json::Value) {
    response(client.get(server.url(path)).send().await.expect("GET")).await
}

/// Status, content type and JSON body of a response.
pub async fn response(r: reqwest::Response) -> (reqwest::StatusCode, String, serde_json::Value) {
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, r.json().await.expect("a JSON body"))
}

pub fn counts(submission: &serde_json::Value) -> [u64; 5] {
    let c = &submission["counts"];
    ["received", "inserted", "updated", "unchanged", "rejected"].map(|k| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("counts.{k} in {submission}"))
    })
}

/// A small German carrier's mapping, used with [`ACME_FEED`].
pub const ACME_MAPPING: &str = r#"
[mapping]
name = "acme-policies"
record = "policy"

[source]
delimiter = ";"
encoding = "iso-8859-1"

[conventions]
date_format = "%d.%m.%Y"
decimal_separator = ","
thousands_separator = "."
currency = "EUR"

[fields]
number = "Nr"
line_of_business = { column = "Sparte", codes = "lob" }
status = { column = "Status", codes = "status" }
effective_date = "Beginn"
expiration_date = "Ende"
premium = "Beitrag"

[fields.insured]
name = "Name"

[codes.lob]
KFZ = "personal_auto"
WG = "homeowners"

[codes.status]
A = "active"
S = "cancelled"
"#;

/// ISO-8859-1 bytes: `\xfc` is ü, `\xdf` is ß.
pub const ACME_FEED: &[u8] = b"Nr;Sparte;Status;Beginn;Ende;Beitrag;Name\n\
P1;KFZ;A;01.01.2025;01.01.2026;1.234,50;J\xfcrgen M\xfcller\n\
P2;WG;A;15.03.2025;15.03.2026;99,99;Anna Gro\xdf\n\
P3,KFZ,A,01.01.2025,01.01.2026,10,X\n\
P4;KFZ;A;31.02.2025;01.01.2026;10,00;Y\n\
P5;KFZ;A;01.01.2025;01.01.2026;-5,00;Z\n\
P6;LEBEN;A;01.01.2025;01.01.2026;5,00;W\n\
P7;WG;S;01.01.2025;01.01.2026;0,00;V\n\
P8;WG;A;01.01.2025;01.0";
