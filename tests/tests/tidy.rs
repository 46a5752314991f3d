//! Tidy: the rules ARCHITECTURE.md states about the code, checked on the
//! code. Crate edges come from `cargo metadata` and are held against the
//! *Dependency rules* table; file sizes and `unwrap`/`expect` come from the
//! sources themselves. A rule broken here is either a change to undo or a
//! change to ARCHITECTURE.md, made on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard_system_tests::repo;

/// Most lines in a source file, and in a test file.
const MAX_SOURCE_LINES: usize = 800;
const MAX_TEST_LINES: usize = 1000;

/// One row of the table: crate name (a trailing `*` matches a prefix),
/// the workspace crates it may depend on, the external crates it must not.
struct Rule {
    name: String,
    may: BTreeSet<String>,
    never: BTreeSet<String>,
}

impl Rule {
    fn matches(&self, krate: &str) -> bool {
        match self.name.strip_suffix('*') {
            Some(prefix) => krate.starts_with(prefix),
            None => krate == self.name,
        }
    }
}

fn names(cell: &str) -> BTreeSet<String> {
    cell.split(',')
        .map(|n| n.trim().trim_matches('`').to_owned())
        .filter(|n| !n.is_empty() && n != "—")
        .collect()
}

fn rules() -> Vec<Rule> {
    let doc = std::fs::read_to_string(repo("ARCHITECTURE.md")).unwrap();
    let table = doc
        .split("### Dependency rules")
        .nth(1)
        .expect("ARCHITECTURE.md has a Dependency rules section");
    let rules: Vec<Rule> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 3, "a rule row has three cells: {l}");
            Rule {
                name: cells[0].trim().trim_matches('`').to_owned(),
                may: names(cells[1]),
                never: names(cells[2]),
            }
        })
        .collect();
    assert!(
        rules.len() >= 5,
        "the rules table was read: {} rows",
        rules.len()
    );
    rules
}

/// Workspace crates: name → (normal dependencies, manifest folder).
fn workspace() -> BTreeMap<String, (BTreeSet<String>, PathBuf)> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo(""))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            let dir = Path::new(p["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf();
            (p["name"].as_str().unwrap().to_owned(), (deps, dir))
        })
        .collect()
}

#[test]
fn crate_edges_follow_the_architecture() {
    let rules = rules();
    let crates = workspace();
    let ours: BTreeSet<&String> = crates.keys().collect();
    let mut broken = Vec::new();
    for (name, (deps, _)) in &crates {
        let Some(rule) = rules.iter().find(|r| r.matches(name)) else {
            broken.push(format!(
                "{name}: no row in ARCHITECTURE.md's Dependency rules"
            ));
            continue;
        };
        for d in deps {
            if ours.contains(d) && !rule.may.contains(d) {
                broken.push(format!(
                    "{name} depends on {d}, which its rule does not allow"
                ));
            }
            if rule.never.contains(d) {
                broken.push(format!("{name} depends on {d}, which its rule forbids"));
            }
        }
    }
    assert!(broken.is_empty(), "\n{}", broken.join("\n"));
}

/// Every `.rs` file of the workspace's crates, with whether it is test code
/// (under `tests/` or `benches/`, a `tests.rs` module, or a crate that only
/// serves tests).
fn rust_files() -> Vec<(PathBuf, bool)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for (name, (_, dir)) in workspace() {
        let mut found = Vec::new();
        walk(&dir, &mut found);
        let test_crate = name == "switchyard-test-support" || name == "switchyard-system-tests";
        for f in found {
            let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
            let test = test_crate
                || rel.starts_with("tests/")
                || rel.starts_with("benches/")
                || rel.ends_with("/tests.rs")
                || rel.contains("/tests/");
            files.push((f, test));
        }
    }
    files.sort();
    files.dedup();
    let engine = repo("crates/engine/src/lib.rs").canonicalize().unwrap();
    assert!(
        files.len() > 100 && files.iter().any(|(f, _)| f == &engine),
        "the workspace's sources were found: {} files",
        files.len()
    );
    files
}

#[test]
fn files_stay_small_enough_to_read() {
    let mut broken = Vec::new();
    for (f, test) in rust_files() {
        let lines = std::fs::read_to_string(&f).unwrap().lines().count();
        let max = if test {
            MAX_TEST_LINES
        } else {
            MAX_SOURCE_LINES
        };
        if lines > max {
            broken.push(format!(
                "{}: {lines} lines (at most {max} in a {} file)",
                f.display(),
                if test { "test" } else { "source" }
            ));
        }
    }
    assert!(broken.is_empty(), "\n{}", broken.join("\n"));
}

/// `unwrap`/`expect` calls in `text` before its test module (an unindented
/// `#[cfg(test)]` followed by `mod`), comment lines left out: (line
/// number, line).
fn panicking_calls(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0] == "#[cfg(test)]" && w[1].starts_with("mod "))
        .unwrap_or(lines.len());
    lines[..end]
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| l.contains(".unwrap()") || l.contains(".expect("))
        .map(|(i, l)| (i + 1, l.trim().to_owned()))
        .collect()
}

#[test]
fn no_unwrap_or_expect_outside_tests_and_main() {
    let mut broken = Vec::new();
    for (f, test) in rust_files() {
        let entry =
            f.ends_with("src/main.rs") || f.parent().is_some_and(|p| p.ends_with("src/bin"));
        if test || entry {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (line, code) in panicking_calls(&text) {
            broken.push(format!("{}:{line}: {code}", f.display()));
        }
    }
    assert!(
        broken.is_empty(),
        "return an error, or handle the case, instead:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checks_can_fail() {
    assert_eq!(
        panicking_calls(
            "fn f() {\n    // x.unwrap()\n    let a = b.unwrap();\n}\n#[cfg(test)]\nmod tests { fn g() { c.unwrap(); } }\n"
        ),
        vec![(3, "let a = b.unwrap();".to_owned())]
    );
    // An item marked for tests is not the test module: what follows counts.
    assert_eq!(
        panicking_calls(
            "impl X {\n    #[cfg(test)]\n    fn t() {}\n    fn f() { a.unwrap(); }\n}\n"
        ),
        vec![(4, "fn f() { a.unwrap(); }".to_owned())]
    );
    let rule = Rule {
        name: "switchyard-driver-*".into(),
        may: names("`switchyard-plugin`"),
        never: names("—"),
    };
    assert!(rule.matches("switchyard-driver-ssh") && !rule.matches("switchyard-cli"));
    assert!(rule.never.is_empty() && rule.may.len() == 1);
}
