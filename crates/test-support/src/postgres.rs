//! A throwaway PostgreSQL 15 cluster for one test: `initdb` into a temp dir
//! (as the `postgres` user when running as root: initdb refuses root), then
//! `pg_ctl start` on a free loopback port.

use crate::{free_port, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A running PostgreSQL cluster with an empty database `switchyard`.
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    let candidates = [
        "/usr/lib/postgresql/15/bin",
        "/usr/lib/postgresql/16/bin",
        "/usr/lib/postgresql/17/bin",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("initdb").is_file())
        .expect("PostgreSQL server binaries are missing: apt-get install -y postgresql-15 (.ci/run does)")
}

impl Postgres {
    /// Start a cluster. Panics with the server's log if it does not come up.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = crate::run("id", &["-u"])
            .map(|u| u.trim() == "0")
            .unwrap_or(false);
        if as_postgres {
            // Let the postgres user into the temp dir.
            crate::run(
                "chown",
                &["-R", "postgres:postgres", dir.path().to_str().unwrap()],
            )
            .expect("chown");
            crate::run("chmod", &["755", dir.path().to_str().unwrap()]).expect("chmod");
        }
        let data = dir.path().join("data");
        let port = free_port();
        let pg = Postgres {
            port,
            data,
            bin,
            as_postgres,
            _dir: dir,
        };
        pg.cmd(
            "initdb",
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.launch();
        pg.cmd(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "switchyard",
            ],
        );
        pg
    }

    /// `pg_ctl start` on the cluster's port; waits until it accepts connections.
    fn launch(&self) {
        let log = self.data.parent().unwrap().join("postgres.log");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.parent().unwrap().display()
        );
        self.cmd(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        if let Err(e) = wait_for_port(self.port, Duration::from_secs(30)) {
            panic!(
                "postgres did not start: {e}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }

    /// Stop the server at once (`pg_ctl stop -m immediate`: connections
    /// are cut, as in a crash or a network outage). The data stays.
    pub fn stop(&self) {
        self.cmd(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Start it again after [`Postgres::stop`], on the same port.
    pub fn start_again(&self) {
        self.launch();
    }

    fn cmd(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let out = if self.as_postgres {
            let mut full = vec!["-u", "postgres", "--", path.to_str().unwrap()];
            full.extend_from_slice(args);
            Command::new("runuser").args(&full).output()
        } else {
            Command::new(&path).args(args).output()
        }
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `postgres://postgres@127.0.0.1:<port>/switchyard`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/switchyard", self.port)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let args = ["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            let mut full = vec!["-u", "postgres", "--", path.to_str().unwrap()];
            full.extend_from_slice(&args);
            Command::new("runuser").args(&full).output()
        } else {
            Command::new(&path).args(args).output()
        };
    }
}
