//! The ssh driver through the supervisor against a real sshd on loopback.
//!
//! systemd cannot run in the test sandbox, so `systemctl` on the "remote" side
//! is a script that keeps unit states in files and answers as systemctl does
//! (`is-active` exit 3 when inactive, `LoadState=not-found` for unknown units).

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_plugin::protocol::{DiscoverMode, ExecuteResult, Severity, Target};
use switchyard_plugin::supervisor::{
    AdapterSpec, HostSpec, Outcome, Supervisor, SupervisorOptions,
};
use switchyard_test_support::Sshd;

const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
units="$(dirname "$0")/units"
echo "$*" >> "$(dirname "$0")/systemctl.log"
verb="$1"; shift
case "$verb" in
  is-active) u="${1%.service}"; if [ -f "$units/$u" ]; then s=$(cat "$units/$u"); echo "$s"; [ "$s" = active ]; exit $?; fi; echo inactive; exit 3 ;;
  show) u="${4%.service}"; if [ -f "$units/$u" ]; then echo loaded; else echo not-found; fi ;;
  start|restart) u="${1%.service}"; [ -f "$units/$u" ] || { echo "Failed to $verb $u.service: Unit $u.service not found." >&2; exit 5; }; echo active > "$units/$u" ;;
  stop) u="${1%.service}"; [ -f "$units/$u" ] || { echo "Failed to stop $u.service: Unit $u.service not loaded." >&2; exit 5; }; echo inactive > "$units/$u" ;;
  list-units) for f in "$units"/*; do s=$(cat "$f"); sub=dead; [ "$s" = active ] && sub=running; echo "$(basename "$f").service loaded $s $sub fake unit"; done ;;
  *) echo "unknown verb $verb" >&2; exit 1 ;;
esac
"#;

struct Fixture {
    sshd: Sshd,
    sup: Supervisor,
    systemctl: PathBuf,
}

fn fixture() -> Fixture {
    let sshd = Sshd::start();
    let systemctl = sshd.dir().join("systemctl");
    std::fs::write(&systemctl, FAKE_SYSTEMCTL).unwrap();
    std::process::Command::new("chmod")
        .args(["+x", systemctl.to_str().unwrap()])
        .status()
        .unwrap();
    std::fs::create_dir(sshd.dir().join("units")).unwrap();
    std::fs::write(sshd.dir().join("units/nginx"), "inactive\n").unwrap();
    std::fs::write(sshd.dir().join("units/postgresql"), "active\n").unwrap();
    let sup = Supervisor::new(
        SupervisorOptions {
            cancel_grace: Duration::from_secs(2),
            ..SupervisorOptions::default()
        },
        vec![AdapterSpec {
            driver: "ssh".into(),
            argv: vec![env!("CARGO_BIN_EXE_switchyard-driver-ssh").into()],
            cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            instances: 1,
            driver_config: json!({"connect_timeout_s": 5}),
        }],
    );
    Fixture {
        sshd,
        sup,
        systemctl,
    }
}

impl Fixture {
    fn host_with(&self, host_key: &str, key_path: &Path) -> HostSpec {
        HostSpec {
            id: "web-01".into(),
            address: Some("127.0.0.1".into()),
            config: json!({
                "user": self.sshd.user,
                "port": self.sshd.port,
                "private_key": format!("${{file:{}}}", key_path.display()),
                "host_key": host_key,
                "systemctl": self.systemctl,
            }),
            ..HostSpec::default()
        }
    }

    fn host(&self) -> HostSpec {
        self.host_with(&self.sshd.host_fingerprint, &self.sshd.client_key_path)
    }

    async fn exec(
        &self,
        h: &HostSpec,
        capability: &str,
        verb: &str,
        target: Target,
        params: Value,
    ) -> Outcome<ExecuteResult> {
        self.sup
            .execute(
                "ssh",
                h,
                "run-1",
                target,
                capability,
                verb,
                params,
                "k",
                Duration::from_secs(30),
                &[],
            )
            .await
    }
}

fn host_target() -> Target {
    Target {
        target_type: "host".into(),
        id: "web-01".into(),
    }
}

fn service(id: &str) -> Target {
    Target {
        target_type: "service".into(),
        id: id.into(),
    }
}

#[tokio::test]
async fn health_with_a_pinned_fingerprint_or_key_line() {
    let f = fixture();
    let h = f
        .sup
        .health("ssh", &f.host(), Duration::from_secs(20))
        .await
        .result
        .unwrap();
    assert!(h.ok, "{h:?}");
    let by_line = f.host_with(&f.sshd.host_public_key, &f.sshd.client_key_path);
    assert!(
        f.sup
            .health("ssh", &by_line, Duration::from_secs(20))
            .await
            .result
            .unwrap()
            .ok
    );
    f.sup.shutdown().await;
}

#[tokio::test]
async fn a_different_host_key_is_refused() {
    let f = fixture();
    let wrong = f.host_with(
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &f.sshd.client_key_path,
    );
    let h = f
        .sup
        .health("ssh", &wrong, Duration::from_secs(20))
        .await
        .result
        .unwrap();
    assert!(!h.ok);
    let detail = h.detail.unwrap();
    assert!(
        detail.contains("host key mismatch") && detail.contains(&f.sshd.host_fingerprint),
        "{detail}"
    );
    let e = f
        .exec(
            &wrong,
            "command.run",
            "run",
            host_target(),
            json!({"argv": ["true"]}),
        )
        .await
        .result
        .unwrap_err();
    assert_eq!(e.reason(), "precondition_failed", "{e}");
    f.sup.shutdown().await;
}

#[tokio::test]
async fn an_unauthorized_key_is_refused() {
    let f = fixture();
    let other = f.sshd.dir().join("other_key");
    switchyard_test_support::run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            other.to_str().unwrap(),
        ],
    )
    .unwrap();
    let h = f.host_with(&f.sshd.host_fingerprint, &other);
    let e = f
        .exec(
            &h,
            "command.run",
            "run",
            host_target(),
            json!({"argv": ["true"]}),
        )
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("refused key authentication"), "{e}");
    f.sup.shutdown().await;
}

#[tokio::test]
async fn commands_run_with_arguments_quoted() {
    let f = fixture();
    let h = f.host();
    let marker = f.sshd.dir().join("pwned");
    let evil = format!("$(touch {})", marker.display());
    let r = f
        .exec(
            &h,
            "command.run",
            "run",
            host_target(),
            json!({"argv": ["echo", evil, "; touch", marker, "`id`"]}),
        )
        .await
        .result
        .unwrap();
    assert!(r.ok, "{r:?}");
    let out = r.output.unwrap();
    assert!(
        out.contains(&format!(
            "$(touch {}) ; touch {} `id`",
            marker.display(),
            marker.display()
        )),
        "{out}"
    );
    assert!(
        !marker.exists(),
        "nothing was interpolated by the remote shell"
    );

    let r = f
        .exec(
            &h,
            "command.run",
            "run",
            host_target(),
            json!({"argv": ["sh", "-c", "echo oops >&2; exit 4"]}),
        )
        .await
        .result
        .unwrap();
    assert!(!r.ok);
    assert_eq!(
        r.reason.as_deref(),
        Some("exited with status 4 (expected [0])")
    );
    assert!(r.output.unwrap().contains("--- stderr ---\noops"));

    let r = f
        .exec(
            &h,
            "command.run",
            "run",
            host_target(),
            json!({"argv": ["sleep", "30"], "timeout_s": 1}),
        )
        .await
        .result
        .unwrap();
    assert!(!r.ok);
    assert_eq!(
        r.reason.as_deref(),
        Some("timed out after 1 s; the command's process group was killed")
    );
    f.sup.shutdown().await;
}

/// Processes on this machine (the sshd of the test runs here) whose command
/// line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

/// The remote command's whole process group goes at its timeout, and when
/// something it left running holds its output open after it exits: the run
/// ends, nothing it started stays behind on the host.
#[tokio::test]
async fn a_remote_command_leaves_nothing_running() {
    let f = fixture();
    let h = f.host();
    let r = f
        .exec(
            &h,
            "command.run",
            "run",
            host_target(),
            json!({"argv": ["sh", "-c", "sleep 3031 & echo started"]}),
        )
        .await
        .result
        .unwrap();
    assert!(r.ok, "{r:?}");
    let out = r.output.unwrap();
    assert!(out.contains("started"), "{out}");
    assert!(out.contains("its process group was killed"), "{out}");
    assert!(
        !out.contains("switchyard-pgid"),
        "the marker is not output: {out}"
    );
    let r = f
        .exec(
            &h,
            "command.run",
            "run",
            host_target(),
            json!({"argv": ["sh", "-c", "sleep 3032 & sleep 3033"], "timeout_s": 1}),
        )
        .await
        .result
        .unwrap();
    assert!(!r.ok);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = processes_with("sleep 303");
    assert!(left.is_empty(), "left running on the host: {left:?}");
    f.sup.shutdown().await;
}

#[tokio::test]
async fn services_start_stop_restart_with_dry_runs() {
    let f = fixture();
    let h = f.host();
    let dry = |target: Target, verb: &'static str| {
        let sup = f.sup.clone();
        let h = h.clone();
        async move {
            sup.dry_run(
                "ssh",
                &h,
                "run-1",
                target,
                "service",
                verb,
                json!({}),
                Duration::from_secs(30),
                &[],
            )
            .await
            .result
            .unwrap()
        }
    };
    let d = dry(service("nginx"), "start").await;
    assert!(d.ok && d.severity == Severity::Info);
    assert_eq!(d.effects.len(), 1);
    assert_eq!(
        (d.effects[0].from.clone(), d.effects[0].to.clone()),
        (json!("inactive"), json!("active"))
    );
    assert!(
        std::fs::read_to_string(f.sshd.dir().join("units/nginx"))
            .unwrap()
            .starts_with("inactive"),
        "a dry-run changes nothing"
    );

    let r = f
        .exec(&h, "service", "start", service("nginx"), json!({}))
        .await
        .result
        .unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.effects[0].to, json!("active"));
    let again = dry(service("nginx"), "start").await;
    assert!(
        again.ok && again.effects.is_empty(),
        "already in the desired state: {again:?}"
    );
    assert!(again.plan[0].starts_with("nothing to do"));

    let r = f
        .exec(&h, "service", "stop", service("nginx.service"), json!({}))
        .await
        .result
        .unwrap();
    assert!(r.ok);
    assert_eq!(r.effects[0].to, json!("inactive"));
    let r = f
        .exec(&h, "service", "restart", service("postgresql"), json!({}))
        .await
        .result
        .unwrap();
    assert!(r.ok && r.effects.len() == 1);

    let missing = dry(service("nope"), "start").await;
    assert!(!missing.ok && missing.severity == Severity::Error);
    let r = f
        .exec(&h, "service", "start", service("nope"), json!({}))
        .await
        .result
        .unwrap();
    assert!(!r.ok);
    assert!(r.reason.unwrap().contains("not found"));

    let e = f
        .exec(&h, "service", "start", service("nginx; reboot"), json!({}))
        .await
        .result
        .unwrap_err();
    assert_eq!(e.reason(), "target_not_found");
    let log = std::fs::read_to_string(f.sshd.dir().join("systemctl.log")).unwrap();
    assert!(!log.contains("reboot"), "{log}");
    f.sup.shutdown().await;
}

#[tokio::test]
async fn discovery_lists_services() {
    let f = fixture();
    let d = f
        .sup
        .discover(
            "ssh",
            &f.host(),
            DiscoverMode::Full,
            Duration::from_secs(30),
        )
        .await
        .result
        .unwrap();
    let ids: Vec<&str> = d.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["nginx", "postgresql"]);
    assert_eq!(d.items[1].state.as_ref().unwrap()["active"], "active");
    f.sup.shutdown().await;
}
