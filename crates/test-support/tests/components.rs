//! The components start, answer and stop.

#[test]
fn postgres_starts_and_accepts_connections() {
    let pg = switchyard_test_support::Postgres::start();
    let out = std::process::Command::new("psql")
        .args([pg.url().as_str(), "-tAc", "select 40 + 2"])
        .output()
        .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
