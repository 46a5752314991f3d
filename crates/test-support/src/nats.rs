//! A real nats-server with JetStream for one test.

use crate::{free_port, wait_for_port};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `nats-server -js` on 127.0.0.1 with its own store directory.
#[derive(Debug)]
pub struct NatsServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Start nats-server. Needs Debian's `nats-server` (.ci/run installs it).
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = NatsServer {
            port: free_port(),
            child: None,
            dir,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let binary = which("nats-server")
            .expect("nats-server is not installed: apt-get install -y nats-server (.ci/run does)");
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats.log");
        let child = Command::new(binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("jetstream"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        if let Err(e) = wait_for_port(self.port, Duration::from_secs(15)) {
            let log = std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default();
            panic!("nats-server did not start: {e}; its log:\n{log}");
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stop the server (its JetStream store stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The server's process id while it runs (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's store directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}
