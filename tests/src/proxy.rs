//! A TCP proxy between serve and nats-server that a test can cut. A cut is
//! a one-sided partition: for its length, what serve sends (acks, pulls,
//! pings) is lost while what the server already sent still arrives; then the
//! connection drops, and new ones are refused until the cut ends. Messages
//! serve decided during the cut have lost their acks and come again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy on a free loopback port to `127.0.0.1:<to>`.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    /// Bumped by every cut; connections made before it are dropped.
    cuts: watch::Sender<u64>,
    /// Until when (micros since the proxy started) new connections are refused.
    closed_until: Arc<AtomicU64>,
    started: Instant,
}

impl Proxy {
    /// Start it on a thread of its own.
    pub fn start(to: u16) -> Proxy {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().unwrap().port();
        let (cuts, cut_rx) = watch::channel(0u64);
        let closed_until = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let closed = Arc::clone(&closed_until);
        std::thread::Builder::new()
            .name("nats-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("listener");
                    loop {
                        let Ok((inbound, _)) = listener.accept().await else {
                            continue;
                        };
                        let now = started.elapsed().as_micros() as u64;
                        if now < closed.load(Ordering::SeqCst) {
                            drop(inbound);
                            continue;
                        }
                        let mut cut = cut_rx.clone();
                        cut.mark_unchanged();
                        let closed = Arc::clone(&closed);
                        tokio::spawn(async move {
                            let Ok(outbound) = TcpStream::connect(("127.0.0.1", to)).await
                            else {
                                return;
                            };
                            let (mut in_r, mut in_w) = inbound.into_split();
                            let (mut out_r, mut out_w) = outbound.into_split();
                            // Server → serve: always forwarded (until the connection drops).
                            let down = tokio::spawn(async move {
                                let _ = tokio::io::copy(&mut out_r, &mut in_w).await;
                            });
                            // Serve → server: lost during a cut, then the connection drops.
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                                tokio::select! {
                                    n = in_r.read(&mut buf) => {
                                        let Ok(n) = n else { break };
                                        if n == 0 {
                                            break;
                                        }
                                        if out_w.write_all(&buf[..n]).await.is_err() {
                                            break;
                                        }
                                    }
                                    _ = cut.changed() => {
                                        // Partitioned: drop what serve sends until the
                                        // cut ends, then drop the connection.
                                        let until = closed.load(Ordering::SeqCst);
                                        let left = until.saturating_sub(started.elapsed().as_micros() as u64);
                                        let sink = async {
                                            while let Ok(n) = in_r.read(&mut buf).await {
                                                if n == 0 {
                                                    break;
                                                }
                                            }
                                        };
                                        let _ = tokio::time::timeout(Duration::from_micros(left), sink).await;
                                        break;
                                    }
                                }
                            }
                            down.abort();
                        });
                    }
                });
            })
            .expect("proxy thread");
        Proxy {
            port,
            cuts,
            closed_until,
            started,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Partition serve from the server for `for_` (see the module doc).
    pub fn cut(&self, for_: Duration) {
        let until = (self.started.elapsed() + for_).as_micros() as u64;
        self.closed_until.store(until, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }
}
