//! Test support: a `nats-server` of the test's own, on a free port with JetStream in a
//! temporary directory that outlives restarts, so a test can stop and restart the server
//! without disturbing anything else.
//!
//! The binary is `CARRIERHUB_TEST_NATS_SERVER`, else `nats-server` on the `PATH`, else
//! `/usr/sbin/nats-server`. Without one, [`NatsServer::start_or_skip`] fails the test under
//! `CI=true` and otherwise prints a notice and lets it skip.

use carrierhub_store::testing::running_in_ci;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

fn binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CARRIERHUB_TEST_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.exists())
    });
    on_path.or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/nats-server");
        sbin.exists().then_some(sbin)
    })
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("its address")
        .port()
}

impl NatsServer {
    /// Starts a server, or returns `None` (skip) when there is no binary outside CI.
    pub fn start_or_skip() -> Option<Self> {
        let Some(binary) = binary() else {
            assert!(!running_in_ci(), "nats-server is required under CI=true");
            eprintln!("skipping: nats-server not found");
            return None;
        };
        let mut server = Self {
            binary,
            port: free_port(),
            store: tempfile::tempdir().expect("a temporary directory"),
            child: None,
        };
        server.start();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, after [`NatsServer::kill`]) and waits until it listens.
    pub fn start(&mut self) {
        let child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL; the JetStream directory is kept for the next start.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
