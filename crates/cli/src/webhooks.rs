//! Policy notifications posted to configured webhooks (`[[policies.webhooks]]`):
//! JSON, one notification per `POST`, in order per webhook, retried with
//! exponential backoff on connection errors, timeouts, 429 and 5xx answers.
//! Each webhook has its own queue, so a slow one never holds up another or
//! the change that caused the notification.

use crate::config::{Config, WebhookSection};
use anyhow::{Result, anyhow};
use std::time::Duration;
use switchyard_api::PolicyNotice;
use switchyard_spec::metric_names as m;
use tokio::sync::{broadcast, mpsc};

/// Notifications waiting per webhook; beyond it the oldest are not queued
/// (logged and counted as `dropped`).
const QUEUE: usize = 1024;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One configured webhook, its secret resolved.
#[derive(Clone)]
pub struct Webhook {
    url: reqwest::Url,
    /// The URL as logs show it: no credentials, no query string.
    shown: String,
    events: Vec<String>,
    bearer: Option<String>,
    timeout: Duration,
    max_attempts: u32,
    /// The wait before the second attempt; doubled after each further one.
    first_backoff: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bearer token.
        f.debug_struct("Webhook")
            .field("url", &self.shown)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// From configuration: the URL checked, the token resolved from its
    /// `${env:…}` / `${file:…}` reference.
    pub fn from_config(w: &WebhookSection) -> Result<Webhook> {
        let shown = switchyard_plugin::secrets::redact_url(&w.url);
        let url = reqwest::Url::parse(&w.url).map_err(|e| anyhow!("webhook {shown}: {e}"))?;
        let bearer = match &w.bearer_token {
            None => None,
            Some(r) => {
                let resolved =
                    switchyard_plugin::secrets::resolve(&serde_json::Value::String(r.clone()))
                        .map_err(|e| anyhow!("webhook {shown} bearer_token: {e}"))?;
                Some(resolved.value.as_str().unwrap_or_default().to_owned())
            }
        };
        Ok(Webhook {
            url,
            shown,
            events: w.events.clone(),
            bearer,
            timeout: Config::duration(&w.timeout).max(Duration::from_millis(100)),
            max_attempts: w.max_attempts.max(1),
            first_backoff: Duration::from_millis(500),
        })
    }

    /// The same webhook with a shorter first backoff (tests).
    #[cfg(test)]
    #[must_use]
    pub fn with_first_backoff(mut self, d: Duration) -> Webhook {
        self.first_backoff = d;
        self
    }

    fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }

    /// Post one notification, retrying as configured; true once delivered.
    async fn deliver(&self, http: &reqwest::Client, body: &serde_json::Value) -> bool {
        let mut backoff = self.first_backoff;
        for attempt in 1..=self.max_attempts {
            let mut req = http.post(self.url.clone()).timeout(self.timeout).json(body);
            if let Some(token) = &self.bearer {
                req = req.bearer_auth(token);
            }
            let retry = match req.send().await {
                Ok(resp) if resp.status().is_success() => return true,
                Ok(resp) => {
                    let status = resp.status();
                    let retry = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                    tracing::warn!(url = %self.shown, attempt, %status, "a webhook refused a policy notification");
                    retry
                }
                Err(e) => {
                    tracing::warn!(url = %self.shown, attempt, error = %e.without_url(), "posting a policy notification failed");
                    true
                }
            };
            if !retry {
                return false;
            }
            if attempt < self.max_attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        false
    }
}

/// The HTTP client webhooks are posted with.
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Forward every notice from `notices` to each webhook that wants its
/// event, until the sender is dropped.
pub fn spawn(
    hooks: Vec<Webhook>,
    mut notices: broadcast::Receiver<PolicyNotice>,
) -> tokio::task::JoinHandle<()> {
    let http = http_client();
    let queues: Vec<(Webhook, mpsc::Sender<serde_json::Value>)> = hooks
        .into_iter()
        .map(|hook| {
            let (tx, mut rx) = mpsc::channel::<serde_json::Value>(QUEUE);
            let (h, http) = (hook.clone(), http.clone());
            tokio::spawn(async move {
                while let Some(body) = rx.recv().await {
                    let result = if h.deliver(&http, &body).await {
                        "delivered"
                    } else {
                        tracing::error!(url = %h.shown, event = %body["event"], "a policy notification was not delivered to a webhook");
                        "failed"
                    };
                    metrics::counter!(m::WEBHOOK_DELIVERIES, "result" => result).increment(1);
                }
            });
            (hook, tx)
        })
        .collect();
    tokio::spawn(async move {
        loop {
            let notice = match notices.recv().await {
                Ok(n) => n,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "webhooks fell behind the policy notifications");
                    metrics::counter!(m::WEBHOOK_DELIVERIES, "result" => "dropped").increment(n);
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let body = serde_json::to_value(&notice).unwrap_or_default();
            for (hook, tx) in &queues {
                if hook.wants(notice.event) && tx.try_send(body.clone()).is_err() {
                    tracing::warn!(url = %hook.shown, "a webhook's queue is full; a policy notification is dropped");
                    metrics::counter!(m::WEBHOOK_DELIVERIES, "result" => "dropped").increment(1);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A webhook receiver on loopback that answers each request with the
    /// next status of `statuses` (then 200) and keeps the bodies.
    async fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let (head, body) = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            break (text[..i].to_owned(), text[i + 4..i + 4 + len].to_owned());
                        }
                    }
                };
                let auth = head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .unwrap_or("")
                    .to_owned();
                log.lock().unwrap().push((auth, body));
                let status = statuses.next().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                sock.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (url, seen)
    }

    fn hook(url: &str, events: &[&str], attempts: u32, token: &std::path::Path) -> Webhook {
        Webhook::from_config(&WebhookSection {
            url: url.into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            bearer_token: Some(format!("${{file:{}}}", token.display())),
            timeout: "2s".into(),
            max_attempts: attempts,
        })
        .unwrap()
        .with_first_backoff(Duration::from_millis(10))
    }

    fn notice(event: &'static str, name: &str) -> PolicyNotice {
        PolicyNotice {
            event,
            policy_id: None,
            name: Some(name.into()),
            version: Some(2),
            enabled: Some(true),
            by: "dir".into(),
            at: chrono::Utc::now(),
            detail: None,
        }
    }

    async fn wait_for(seen: &Arc<Mutex<Vec<(String, String)>>>, n: usize) {
        for _ in 0..500 {
            if seen.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} requests, expected {n}", seen.lock().unwrap().len());
    }

    #[tokio::test]
    async fn notifications_are_retried_until_delivered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "hook-token\n").unwrap();
        let (url, seen) = receiver(vec![503, 500]).await;
        let (filtered_url, filtered) = receiver(vec![]).await;
        let (refusing_url, refusing) = receiver(vec![400, 400]).await;
        let (tx, _) = broadcast::channel(16);
        let task = spawn(
            vec![
                hook(&url, &[], 5, &token),
                hook(&filtered_url, &["rolled_back"], 5, &token),
                hook(&refusing_url, &[], 5, &token),
            ],
            tx.subscribe(),
        );
        tx.send(notice("version_created", "a")).unwrap();
        tx.send(notice("rolled_back", "b")).unwrap();
        // Two failures, then the first notice, then the second.
        wait_for(&seen, 4).await;
        let bodies: Vec<serde_json::Value> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(auth, body)| {
                assert_eq!(
                    auth.to_ascii_lowercase(),
                    "authorization: bearer hook-token"
                );
                serde_json::from_str(body).unwrap()
            })
            .collect();
        let names: Vec<&str> = bodies.iter().map(|b| b["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "a", "a", "b"]);
        assert_eq!(bodies[3]["event"], "rolled_back");
        // The filter: only rolled_back.
        wait_for(&filtered, 1).await;
        assert_eq!(filtered.lock().unwrap().len(), 1);
        // A 400 is not retried: one request per notice.
        wait_for(&refusing, 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(refusing.lock().unwrap().len(), 2);
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_webhook_gives_up_after_max_attempts() {
        // A port with nothing listening: every attempt fails to connect.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let h = Webhook::from_config(&WebhookSection {
            url: format!("http://127.0.0.1:{port}/"),
            events: vec![],
            bearer_token: None,
            timeout: "1s".into(),
            max_attempts: 3,
        })
        .unwrap()
        .with_first_backoff(Duration::from_millis(5));
        let http = http_client();
        assert!(
            !h.deliver(&http, &serde_json::json!({"event": "updated"}))
                .await
        );
        assert!(!format!("{h:?}").contains("token"));
    }
}
