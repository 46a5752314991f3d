//! A real OpenSSH server for one test.

use crate::{free_port, run, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `sshd -D` on 127.0.0.1 with a fresh host key and one authorized client key.
#[derive(Debug)]
pub struct Sshd {
    pub port: u16,
    /// The user the client key logs in as (the user running the tests).
    pub user: String,
    /// The server's public host key line (`ssh-ed25519 AAAA… comment`).
    pub host_public_key: String,
    /// The server's host key fingerprint (`SHA256:…`).
    pub host_fingerprint: String,
    /// The client's private key file (OpenSSH format, no passphrase).
    pub client_key_path: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Start sshd. Needs Debian's `openssh-server` (`/usr/sbin/sshd`) and `ssh-keygen`.
    pub fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "sshd is not installed: apt-get install -y openssh-server (.ci/run does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let keygen = |file: &str| {
            let path = d.join(file);
            run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    file,
                    "-f",
                    path.to_str().unwrap(),
                ],
            )
            .expect("ssh-keygen");
            path
        };
        let host_key = keygen("host_ed25519");
        let client_key = keygen("client_ed25519");
        std::fs::copy(client_key.with_extension("pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        let host_public_key = std::fs::read_to_string(host_key.with_extension("pub"))
            .expect("host pub")
            .trim()
            .to_owned();
        let fp = run(
            "ssh-keygen",
            &[
                "-l",
                "-E",
                "sha256",
                "-f",
                host_key.with_extension("pub").to_str().unwrap(),
            ],
        )
        .expect("fingerprint");
        let host_fingerprint = fp
            .split_whitespace()
            .nth(1)
            .expect("fingerprint field")
            .to_owned();
        let user = run("id", &["-un"]).expect("id -un").trim().to_owned();
        // Running as root, sshd wants its privilege-separation directory.
        if user == "root" {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let port = free_port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nAllowUsers {user}\nLogLevel ERROR\n",
                host_key.display(),
                d.join("authorized_keys").display(),
                d.join("sshd.pid").display(),
            ),
        )
        .expect("sshd_config");
        // sshd's own log (it notes every readiness probe) goes to a file, shown if it fails to start.
        let log = std::fs::File::create(d.join("sshd.log")).expect("sshd.log");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let mut server = Sshd {
            port,
            user,
            host_public_key,
            host_fingerprint,
            client_key_path: client_key,
            child,
            dir,
        };
        if let Err(e) = wait_for_port(port, Duration::from_secs(10)) {
            let status = server.child.try_wait();
            let log =
                std::fs::read_to_string(server.dir.path().join("sshd.log")).unwrap_or_default();
            panic!("sshd did not start: {e} (process: {status:?}); its log:\n{log}");
        }
        server
    }

    /// The temporary directory holding keys and config (tests may put files here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
