//! Real components for tests, started on free loopback ports in temporary
//! directories and stopped when dropped. Nothing here is a mock: a test that
//! needs sshd gets the Debian `sshd` binary, configured for one test; one that
//! needs NATS gets Debian's `nats-server` with JetStream.

mod nats;
mod postgres;
mod sshd;

pub use nats::NatsServer;
pub use postgres::Postgres;
pub use sshd::Sshd;
/// Re-exported for [`backend_suite!`].
pub use tempfile;

/// Generate, for every listed `async fn(store)` test, one `#[tokio::test]` on
/// a fresh SQLite file and one on a fresh PostgreSQL cluster, in modules
/// `sqlite` and `postgres`. `open` is the async constructor taking a URL.
#[macro_export]
macro_rules! backend_suite {
    (open = $open:path; $($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let dir = $crate::tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}?mode=rwc", dir.path().join("switchyard.db").display());
                    super::$test($open(&url).await.unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let pg = $crate::Postgres::start();
                    super::$test($open(&pg.url()).await.unwrap()).await;
                }
            )*
        }
    };
}

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Wait until something accepts TCP connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, limit: Duration) -> Result<(), String> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "nothing listened on 127.0.0.1:{port} within {limit:?}"
    ))
}

/// Run a program to completion, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
