//! The README's tour, run as written: every ```sh block of its "A short
//! tour" section in order, in one bash session (so `cd` and `&` act as in a
//! terminal), and every `$ ` line of its ```console blocks. Only the ports
//! are the test's own: 4222 and 8080 in the commands become free ones, and
//! the environment points NATS and the API at them
//! (`SWITCHYARD_NATS__URL`, `SWITCHYARD_API__LISTEN`), which every command
//! honours over the file. A command the README shows that fails, or a flag
//! it names that the binary does not know, fails this test.

use std::path::Path;
use std::process::Command;
use switchyard_system_tests::{bin, repo};
use switchyard_test_support::free_port;

/// The fenced blocks of one language in the README's tour section.
fn tour_blocks(readme: &str, lang: &str) -> Vec<String> {
    let start = readme
        .find("\n## A short tour")
        .expect("the README has a tour");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let section = &rest[..end];
    let fence = format!("```{lang}\n");
    let mut blocks = Vec::new();
    let mut at = 0;
    while let Some(i) = section[at..].find(&fence) {
        let body_start = at + i + fence.len();
        let len = section[body_start..].find("```").expect("a closed fence");
        blocks.push(section[body_start..body_start + len].to_owned());
        at = body_start + len + 3;
    }
    blocks
}

#[test]
fn the_readme_tour_runs_as_written() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let sh = tour_blocks(&readme, "sh");
    let console: Vec<String> = tour_blocks(&readme, "console")
        .iter()
        .flat_map(|b| {
            b.lines()
                .filter_map(|l| l.strip_prefix("$ "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(sh.len() >= 3, "the tour's sh blocks: {sh:?}");
    assert!(!console.is_empty(), "the tour's console commands");

    let nats = free_port();
    let api = free_port();
    let ports = |s: &str| {
        s.replace("4222", &nats.to_string())
            .replace("8080", &api.to_string())
    };
    // Where the tour is taken: a fresh folder, with the repository's examples
    // where the README's paths expect them.
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo("examples"), work.path().join("examples")).unwrap();
    let bin_dir = bin("switchyard").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // `$ ` lines show output: they may find blockers (exit 1), never misuse (exit 2).
    for cmd in &console {
        let out = Command::new("bash")
            .args(["-c", &ports(cmd)])
            .current_dir(work.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 1)),
            "`{cmd}` exited {code:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "`{cmd}` printed nothing");
    }

    // The sh blocks as one session. After a line that starts serve in the
    // background, wait for it to be ready, as a reader would.
    let mut script = String::from(
        "set -euo pipefail\n\
         trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n\
         ready() { for _ in $(seq 300); do curl -sf http://127.0.0.1:$1/readyz >/dev/null && return 0; sleep 0.2; done; echo 'serve never became ready' >&2; return 1; }\n",
    );
    for block in &sh {
        for line in block.lines() {
            let line = ports(line);
            script.push_str(&format!(
                "echo \"+ {}\" >&2\n",
                line.replace(['"', '$', '`', '\\'], "'")
            ));
            script.push_str(&line);
            script.push('\n');
            let command = line.split('#').next().unwrap_or("").trim();
            if command.starts_with("switchyard serve") && command.ends_with('&') {
                script.push_str(&format!("ready {api}\n"));
            }
        }
    }
    // The tour's event, as the ledger records it.
    script.push_str(&format!(
        "for _ in $(seq 150); do\n\
           curl -sf 'http://127.0.0.1:{api}/api/runs?policy=hello&status=succeeded' | grep -q '\"output\":\"--- stdout ---\\\\nhello, me' && exit 0\n\
           sleep 0.2\n\
         done\n\
         echo 'the tour event never became a succeeded run' >&2; curl -s 'http://127.0.0.1:{api}/api/runs' >&2; exit 1\n"
    ));
    let script_path = work.path().join("tour.sh");
    std::fs::write(&script_path, &script).unwrap();
    let out = Command::new("bash")
        .arg(&script_path)
        .current_dir(work.path())
        .env("PATH", &path)
        .env("SWITCHYARD_NATS__URL", format!("nats://127.0.0.1:{nats}"))
        .env("SWITCHYARD_API__LISTEN", format!("127.0.0.1:{api}"))
        .env("SWITCHYARD_LOG", "warn")
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_SERVER")
        .env_remove("SWITCHYARD_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the tour failed:\n{script}\n--- stdout\n{}\n--- stderr\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    let site = work.path().join("my-site");
    assert!(Path::new(&site.join("switchyard.db")).is_file(), "{stderr}");
    println!(
        "README tour: {} sh block(s), {} console command(s), passed",
        sh.len(),
        console.len()
    );
}
