//! `kill -9` of a process writing to SQLite leaves an intact database
//! holding everything whose commit had returned, on either connection (the
//! writer's own for decisions, the pool for the rest).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use switchyard_store::Store;

#[tokio::test]
async fn kill_9_during_writes_loses_no_committed_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-crash-writer"))
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut committed = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while committed.len() < 300 {
        committed.push(lines.next().expect("the writer reports commits").unwrap());
    }
    child.kill().unwrap(); // SIGKILL, mid-stream
    child.wait().unwrap();
    // Commits reported before the kill but not yet read are durable too.
    for line in lines.map_while(Result::ok) {
        committed.push(line);
    }

    let store = Store::open(&url).await.unwrap();
    assert_eq!(
        store.integrity_check().await.unwrap().as_deref(),
        Some("ok")
    );
    assert!(committed.len() >= 300);
    let audited: std::collections::HashSet<uuid::Uuid> = store
        .audit_events(u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    for line in &committed {
        let (kind, id) = line.split_once(' ').expect("`d <id>` or `a <id>`");
        let id = uuid::Uuid::parse_str(id).unwrap();
        match kind {
            "d" => assert!(
                store.decision_exists(id).await.unwrap(),
                "committed decision {id} is missing"
            ),
            _ => assert!(
                audited.contains(&id),
                "committed audit event {id} is missing"
            ),
        }
    }
}
