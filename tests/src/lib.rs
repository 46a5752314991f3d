//! What the system tests share: a [`Rig`] — nats-server, a database
//! (SQLite or a throwaway PostgreSQL), a configuration with recording-driver
//! hosts, and the real `switchyard serve` binary that a test starts, kills
//! and restarts — and the readers that turn what happened into numbers: the
//! recording driver's [`Effects`] (overlaps, peak concurrency, duplicates)
//! and the [`Ledger`] as the database holds it.
//!
//! The binaries are the workspace's own (`target/<profile>/switchyard` and
//! the drivers beside it); `cargo nextest run --workspace` builds them.

pub mod effects;
pub mod ledger;
pub mod nats;
pub mod proxy;

pub use effects::{Effect, Effects};
pub use ledger::Ledger;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_test_support::{NatsServer, Postgres, free_port};

/// The full fault matrix (`make faults`, `SWITCHYARD_FAULTS_FULL=1`) rather
/// than the shorter variants `make test` runs.
pub fn full() -> bool {
    std::env::var("SWITCHYARD_FAULTS_FULL").is_ok_and(|v| v == "1")
}

/// A path in the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

/// A binary of the workspace, from the folder the test binary was built in.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lies in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the tests with `cargo nextest run --workspace` (make test), \
         or build it first with `cargo build -p switchyard-cli -p switchyard-system-tests`",
        path.display()
    );
    path
}

/// Which database the rig's serve uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to build a [`Rig`].
#[derive(Debug, Clone)]
pub struct RigOptions {
    pub backend: Backend,
    /// Hosts `h-00`, `h-01`, … on the recording driver.
    pub hosts: usize,
    /// Extra hosts: (id, driver).
    pub extra_hosts: Vec<(String, String)>,
    /// Lines under `[engine]`.
    pub engine: Vec<String>,
    /// Lines under `[nats]`, besides the URL.
    pub nats: Vec<String>,
    /// Lines under `[ledger]`.
    pub ledger: Vec<String>,
    /// serve reaches NATS through a [`proxy::Proxy`] the test can cut.
    pub proxy: bool,
    /// Environment variables serve is started with.
    pub env: Vec<(String, String)>,
    /// TOML appended to the configuration as it is (hosts with config, …).
    pub raw: Vec<String>,
    /// Lines under `[drivers.config.recorder]`, besides its log and locks.
    pub recorder: Vec<String>,
}

impl RigOptions {
    pub fn new(backend: Backend, hosts: usize) -> RigOptions {
        RigOptions {
            backend,
            hosts,
            extra_hosts: Vec::new(),
            engine: Vec::new(),
            nats: Vec::new(),
            ledger: Vec::new(),
            proxy: false,
            env: Vec::new(),
            raw: Vec::new(),
            recorder: Vec::new(),
        }
    }

    /// Add a line under `[drivers.config.recorder]`.
    pub fn recorder(mut self, line: &str) -> Self {
        self.recorder.push(line.to_owned());
        self
    }

    /// Append TOML to the configuration as it is (after every section the rig writes).
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_owned());
        self
    }

    /// Start serve with this environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// serve reaches NATS through a proxy (`Rig::proxy`) the test can cut.
    pub fn through_proxy(mut self) -> Self {
        self.proxy = true;
        self
    }

    /// Add a line under `[engine]`.
    pub fn engine(mut self, line: &str) -> Self {
        self.engine.push(line.to_owned());
        self
    }

    /// Add a line under `[nats]`.
    pub fn nats(mut self, line: &str) -> Self {
        self.nats.push(line.to_owned());
        self
    }

    /// Add a line under `[ledger]`.
    pub fn ledger(mut self, line: &str) -> Self {
        self.ledger.push(line.to_owned());
        self
    }

    /// Add a host on the exec driver.
    pub fn exec_host(self, id: &str) -> Self {
        self.host(id, "exec")
    }

    /// Add a host on `driver` (`exec`, `recorder`, or `stubborn`: the
    /// recorder's effect in an adapter that does not stop with its engine).
    pub fn host(mut self, id: &str, driver: &str) -> Self {
        self.extra_hosts.push((id.to_owned(), driver.to_owned()));
        self
    }
}

/// A running `switchyard serve`.
#[derive(Debug)]
struct Serve {
    child: Child,
}

/// nats-server, a database, a configuration and `switchyard serve`.
#[derive(Debug)]
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub nats: NatsServer,
    pub pg: Option<Postgres>,
    /// Between serve and nats-server, when asked for.
    pub proxy: Option<proxy::Proxy>,
    pub api: u16,
    pub hosts: Vec<String>,
    serve: Option<Serve>,
    starts: usize,
    env: Vec<(String, String)>,
}

impl Rig {
    /// Start nats-server (and PostgreSQL) and write the configuration; serve
    /// is not started yet (write policies first, then [`Rig::start`]).
    pub fn new(opts: RigOptions) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let nats = NatsServer::start();
        let pg = (opts.backend == Backend::Postgres).then(Postgres::start);
        let api = free_port();
        let hosts: Vec<String> = (0..opts.hosts).map(|i| format!("h-{i:02}")).collect();
        let proxy = opts.proxy.then(|| proxy::Proxy::start(nats.port));
        let rig = Rig {
            dir,
            nats,
            pg,
            proxy,
            api,
            hosts,
            serve: None,
            starts: 0,
            env: opts.env.clone(),
        };
        std::fs::create_dir_all(rig.path("policies")).expect("policies dir");
        let mut toml = format!(
            "[database]\nurl = \"{}\"\n\
             [nats]\nurl = \"{}\"\n{}\n\
             [api]\nlisten = \"127.0.0.1:{api}\"\n\
             [engine]\n{}\n\
             [ledger]\n{}\n\
             [drivers]\npaths = [\"{}\", \"{}\"]\n\
             [drivers.config.recorder]\nlog = \"{log}\"\nlocks = \"{locks}\"\n{recorder}\n\
             [drivers.config.stubborn]\nlog = \"{log}\"\nlocks = \"{locks}\"\n\
             [policies]\ndir = \"policies\"\n",
            rig.db_url(),
            rig.proxy
                .as_ref()
                .map_or_else(|| rig.nats.url(), proxy::Proxy::url),
            opts.nats.join("\n"),
            opts.engine.join("\n"),
            opts.ledger.join("\n"),
            repo("tests/drivers").display(),
            repo("drivers").display(),
            log = rig.path("effects.jsonl").display(),
            locks = rig.path("locks").display(),
            recorder = opts.recorder.join("\n"),
        );
        for h in &rig.hosts {
            toml.push_str(&format!("[[hosts]]\nid = \"{h}\"\ndriver = \"recorder\"\n"));
        }
        for (h, driver) in &opts.extra_hosts {
            toml.push_str(&format!("[[hosts]]\nid = \"{h}\"\ndriver = \"{driver}\"\n"));
        }
        for r in &opts.raw {
            toml.push_str(r);
            toml.push('\n');
        }
        std::fs::write(rig.path("switchyard.toml"), toml).expect("switchyard.toml");
        rig
    }

    /// Start serve with this environment variable from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// A path in the rig's folder.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The database URL serve uses.
    pub fn db_url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.dir.path().join("ledger.db").display()
            ),
        }
    }

    /// Write a policy file into the watched policy folder.
    pub fn policy(&self, name: &str, yaml: &str) {
        std::fs::write(self.path(&format!("policies/{name}.yaml")), yaml).expect("policy file");
    }

    /// Start serve and wait until it is ready (`/readyz` answers 200).
    pub async fn start(&mut self) {
        assert!(self.serve.is_none(), "serve is already running");
        let log = self.path(&format!("serve-{}.log", self.starts));
        self.starts += 1;
        let child = Command::new(bin("switchyard"))
            .args(["serve", "--config"])
            .arg(self.path("switchyard.toml"))
            .env("SWITCHYARD_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("serve log"))
            .spawn()
            .expect("start switchyard serve");
        self.serve = Some(Serve { child });
        self.wait_ready(Duration::from_secs(90)).await;
    }

    /// Wait until `/readyz` answers 200; panics with the log if serve exits.
    pub async fn wait_ready(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.ready() {
                return;
            }
            if let Some(s) = self.serve.as_mut()
                && let Ok(Some(status)) = s.child.try_wait()
            {
                panic!(
                    "serve exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve was not ready within {limit:?}:\n{}", self.log());
    }

    /// Does `/readyz` answer 200 now?
    pub fn ready(&self) -> bool {
        http_get(self.api, "/readyz").is_some_and(|(status, _)| status == 200)
    }

    /// serve's process id while it runs.
    pub fn serve_pid(&self) -> Option<u32> {
        self.serve.as_ref().map(|s| s.child.id())
    }

    /// `kill -9` serve, as a crash or an OOM kill would.
    pub fn kill9(&mut self) {
        if let Some(mut s) = self.serve.take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }

    /// SIGTERM serve and wait for it to exit.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let mut s = self.serve.take().expect("serve runs");
        let pid = nix::unistd::Pid::from_raw(s.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Ok(Some(status)) = s.child.try_wait() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = s.child.kill();
        panic!("serve did not stop on SIGTERM:\n{}", self.log());
    }

    /// Every log serve wrote, oldest start first.
    pub fn log(&self) -> String {
        (0..self.starts)
            .map(|i| {
                let p = self.path(&format!("serve-{i}.log"));
                format!(
                    "=== serve start {i} ===\n{}",
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The recording driver's log as it is now.
    pub fn effects(&self) -> Effects {
        Effects::load(&self.path("effects.jsonl"))
    }

    /// The ledger, read straight from the database.
    pub async fn ledger(&self) -> Ledger {
        Ledger::connect(&self.db_url()).await
    }

    /// A JetStream publisher on the rig's nats-server.
    pub async fn publisher(&self) -> nats::Js {
        nats::Js::connect(&self.nats.url()).await
    }

    /// Wait until every published event is decided and no run is `queued`
    /// or `running`, or `limit` passes; returns whether it settled.
    pub async fn settle(&self, events: usize, limit: Duration) -> bool {
        let ledger = self.ledger().await;
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if ledger.inbox().await >= events as i64 && ledger.open_runs().await == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One plain HTTP/1.1 GET on loopback: (status, body), or `None` when
/// nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(500),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status: u16 = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Some((status, body.to_owned()))
}

/// A policy on `kind` that runs `effect.<verb>` for `ms` milliseconds on the
/// event's host, tagged with the event's `data.n`, with a timeout 3 s longer;
/// `extra` is appended (windows, say).
pub fn effect_policy(name: &str, kind: &str, verb: &str, ms: u64, extra: &str) -> String {
    let timeout = ms / 1000 + 3;
    format!(
        "version: 1\nname: {name}\nenabled: true\n\
         trigger_group:\n  triggers:\n    - kind: {kind}\n\
         targets:\n  - selector: \"{{{{ $.host }}}}\"\n\
         actions:\n  - capability: effect\n    verb: {verb}\n    driver: recorder\n    timeout: {timeout}s\n\
         \x20   params: {{ ms: {ms}, tag: \"{{{{ $.data.n }}}}\" }}\n{extra}"
    )
}

/// Every process now: (pid, command line, environment), as `/proc` shows
/// them to this user.
pub fn processes() -> Vec<(u32, String, Vec<String>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let read = |f: &str| std::fs::read(entry.path().join(f)).unwrap_or_default();
        let split = |raw: Vec<u8>| -> Vec<String> {
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        };
        found.push((
            pid,
            split(read("cmdline")).join(" "),
            split(read("environ")),
        ));
    }
    found
}

/// Processes started by the serve whose process id is `serve_pid` (the
/// supervisor names itself to every adapter in `SWITCHYARD_PARENT_PID`).
pub fn adapters_of(serve_pid: u32) -> Vec<u32> {
    let var = format!("SWITCHYARD_PARENT_PID={serve_pid}");
    processes()
        .into_iter()
        .filter(|(_, _, env)| env.contains(&var))
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Microseconds since the epoch, as the recording driver stamps effects.
pub fn micros_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// A counter's value from serve's `/metrics` (0 when it was never counted).
pub fn metric(api: u16, name: &str) -> f64 {
    let (_, text) = http_get(api, "/metrics").expect("/metrics answers");
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
