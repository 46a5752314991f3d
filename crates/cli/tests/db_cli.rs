//! `switchyard db migrate` on SQLite and PostgreSQL.

use std::process::Command;

fn migrate(url: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["db", "migrate", "--database-url", url])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn migrate_creates_then_reports_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    assert_eq!(migrate(&url).1.trim(), "applied 8 migration(s)");
    assert!(dir.path().join("s.db").exists());
    assert_eq!(migrate(&url).1.trim(), "database is up to date");

    let pg = switchyard_test_support::Postgres::start();
    let (code, out, err) = migrate(&pg.url());
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "applied 8 migration(s)");

    let (code, _, err) = migrate("mysql://nope");
    assert_eq!(code, Some(1));
    assert!(err.contains("unsupported database URL"), "{err}");
}
