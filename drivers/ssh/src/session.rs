//! One SSH connection: connect, check the pinned host key, authenticate with a
//! key, run commands on exec channels.

use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, client};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_plugin::protocol::Host;
use switchyard_plugin::sdk::{AdapterError, Context};

/// A host's SSH settings (secrets already resolved by switchyard).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub user: String,
    #[serde(default)]
    pub port: Option<u16>,
    pub private_key: String,
    #[serde(default)]
    pub private_key_passphrase: Option<String>,
    pub host_key: String,
    #[serde(default)]
    pub sudo: Option<bool>,
    #[serde(default)]
    pub systemctl: Option<String>,
}

impl HostConfig {
    pub fn from_host(host: &Host) -> Result<HostConfig, AdapterError> {
        serde_json::from_value(host.config.clone()).map_err(|e| {
            AdapterError::invalid_params(format!("host `{}` ssh config: {e}", host.id))
        })
    }
}

enum Pin {
    Fingerprint(String),
    Key(Box<PublicKey>),
}

impl Pin {
    fn parse(text: &str) -> Result<Pin, AdapterError> {
        let text = text.trim();
        if text.starts_with("SHA256:") {
            return Ok(Pin::Fingerprint(text.to_owned()));
        }
        let b64 = text.split_whitespace().nth(1).unwrap_or(text);
        russh::keys::parse_public_key_base64(b64)
            .map(|k| Pin::Key(Box::new(k)))
            .map_err(|e| {
                AdapterError::invalid_params(format!(
                    "host_key is neither SHA256:… nor a public key line: {e}"
                ))
            })
    }

    fn matches(&self, key: &PublicKey) -> bool {
        match self {
            Pin::Fingerprint(fp) => key.fingerprint(HashAlg::Sha256).to_string() == *fp,
            Pin::Key(k) => k.key_data() == key.key_data(),
        }
    }
}

struct Pinned {
    pin: Pin,
    /// The fingerprint the server offered, for the error message.
    offered: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            *self
                .offered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some("a certificate".into());
            return Ok(false);
        };
        *self
            .offered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(key.fingerprint(HashAlg::Sha256).to_string());
        Ok(self.pin.matches(key))
    }
}

/// What a command produced.
#[derive(Debug, Default)]
pub struct RunOutput {
    pub exit: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub timed_out: bool,
    /// The command's remote process group was killed: at its timeout, on
    /// cancel, or because something it left running held its output open.
    pub group_killed: bool,
}

impl RunOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// Both streams for the run's output.
    pub fn render(&self) -> String {
        let mut s = format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout_text(),
            self.stderr_text()
        );
        if self.truncated {
            s.push_str("\n[truncated]");
        }
        if self.group_killed && self.exit.is_some() {
            s.push_str(
                "\n[a process the command left running held its output open; its process group was killed]",
            );
        }
        s
    }
}

/// An authenticated SSH connection.
pub struct Conn {
    handle: client::Handle<Pinned>,
    /// Commands run through `sudo -n`: so does the kill of their group.
    sudo: bool,
}

/// The first stderr line of every command: the remote shell's pid, which
/// is the id of the command's process group (sshd starts each session's
/// command as a session leader, and the shell `exec`s the command).
const PGID_MARK: &str = "switchyard-pgid=";

/// How long output is still read after the command exits: a background
/// process that keeps its output open does not keep the run going past this.
const DRAIN: Duration = Duration::from_millis(500);

/// The process group id from the marker line at the start of `stderr`,
/// which is removed; `None` until the whole line has arrived.
fn take_mark(stderr: &mut Vec<u8>) -> Option<u32> {
    let end = stderr.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&stderr[..end]).ok()?;
    let pgid = line.strip_prefix(PGID_MARK)?.trim().parse().ok()?;
    stderr.drain(..=end);
    Some(pgid)
}

fn push_bounded(buf: &mut Vec<u8>, data: &[u8], max: usize, truncated: &mut bool) {
    let room = max.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
    *truncated |= data.len() > room;
}

impl Conn {
    /// Connect, verify the pinned host key, authenticate.
    pub async fn open(
        host: &Host,
        hc: &HostConfig,
        connect_timeout: Duration,
        auth_timeout: Duration,
    ) -> Result<Conn, AdapterError> {
        let address = host.address.as_deref().ok_or_else(|| {
            AdapterError::precondition_failed(format!("host `{}` has no address", host.id))
        })?;
        let port = hc.port.unwrap_or(22);
        let pin = Pin::parse(&hc.host_key)?;
        let key =
            russh::keys::decode_secret_key(&hc.private_key, hc.private_key_passphrase.as_deref())
                .map_err(|e| {
                AdapterError::invalid_params(format!("host `{}` private_key: {e}", host.id))
            })?;
        let offered = Arc::new(Mutex::new(None));
        let handler = Pinned {
            pin,
            offered: Arc::clone(&offered),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(300)),
            ..client::Config::default()
        });
        let connect = client::connect(config, (address, port), handler);
        let mut handle = match tokio::time::timeout(connect_timeout, connect).await {
            Err(_) => {
                return Err(AdapterError::transient(format!(
                    "{address}:{port}: no SSH handshake within {} s",
                    connect_timeout.as_secs()
                )));
            }
            Ok(Err(e)) => {
                let seen = offered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                return Err(match seen {
                    Some(fp) if matches!(e, russh::Error::UnknownKey) => {
                        AdapterError::precondition_failed(format!(
                            "{address}:{port}: host key mismatch: the server offered {fp}, which is not the pinned host_key; refusing to connect"
                        ))
                    }
                    _ => AdapterError::transient(format!("{address}:{port}: {e}")),
                });
            }
            Ok(Ok(h)) => h,
        };
        // A server that accepts the connection and then stalls authentication
        // must not hold the action (and the host's queue) until its timeout.
        let authenticate = async {
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| AdapterError::transient(format!("{address}:{port}: {e}")))?
                .flatten();
            handle
                .authenticate_publickey(&hc.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(|e| {
                    AdapterError::transient(format!("{address}:{port}: authentication: {e}"))
                })
        };
        let auth = tokio::time::timeout(auth_timeout, authenticate)
            .await
            .map_err(|_| {
                AdapterError::transient(format!(
                    "{address}:{port}: authentication did not finish within {} s",
                    auth_timeout.as_secs()
                ))
            })??;
        if !auth.success() {
            return Err(AdapterError::precondition_failed(format!(
                "{address}:{port}: the server refused key authentication for `{}`",
                hc.user
            )));
        }
        Ok(Conn {
            handle,
            sudo: hc.sudo.unwrap_or(false),
        })
    }

    /// Run `command` (already quoted for a POSIX shell) and collect its
    /// output, within `limit`; with a context, switchyard's cancel stops it.
    /// The command's remote process group is killed at the limit, on
    /// cancel, and when something it started still holds its output open
    /// [`DRAIN`] after it exits.
    pub async fn run(
        &self,
        command: &str,
        limit: Duration,
        max_output: usize,
        ctx: Option<&Context>,
    ) -> Result<RunOutput, AdapterError> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| AdapterError::transient(format!("opening a channel: {e}")))?;
        channel
            .exec(true, format!("echo {PGID_MARK}$$ >&2; exec {command}"))
            .await
            .map_err(|e| AdapterError::transient(format!("starting the command: {e}")))?;
        let mut out = RunOutput::default();
        let mut pgid: Option<u32> = None;
        let mut lingering = false;
        let collect = async {
            let mut drain_until: Option<tokio::time::Instant> = None;
            loop {
                let msg = match drain_until {
                    None => channel.wait().await,
                    Some(t) => match tokio::time::timeout_at(t, channel.wait()).await {
                        Ok(m) => m,
                        Err(_) => {
                            lingering = true;
                            return;
                        }
                    },
                };
                let Some(msg) = msg else { return };
                match msg {
                    ChannelMsg::Data { data } => {
                        push_bounded(&mut out.stdout, &data, max_output, &mut out.truncated)
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        push_bounded(&mut out.stderr, &data, max_output, &mut out.truncated);
                        if pgid.is_none() {
                            pgid = take_mark(&mut out.stderr);
                        }
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        out.exit = Some(exit_status);
                        drain_until = Some(tokio::time::Instant::now() + DRAIN);
                    }
                    _ => {}
                }
            }
        };
        let cancelled = async {
            match ctx {
                Some(c) => c.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            () = collect => Ok(()),
            () = tokio::time::sleep(limit) => {
                out.timed_out = true;
                Ok(())
            }
            () = cancelled => Err(AdapterError::transient("cancelled by switchyard")),
        };
        if (out.timed_out || ended.is_err() || lingering)
            && let Some(pgid) = pgid
        {
            self.kill_group(pgid).await;
            out.group_killed = true;
        }
        ended.map(|()| out)
    }

    /// Kill a remote process group, over a channel of its own.
    async fn kill_group(&self, pgid: u32) {
        let sudo = if self.sudo { "sudo -n " } else { "" };
        let kill = async {
            let mut channel = self.handle.channel_open_session().await.ok()?;
            channel
                .exec(
                    true,
                    format!("{sudo}kill -KILL -- -{pgid} 2>/dev/null; true"),
                )
                .await
                .ok()?;
            while channel.wait().await.is_some() {}
            Some(())
        };
        if tokio::time::timeout(Duration::from_secs(5), kill)
            .await
            .is_err()
        {
            eprintln!("killing the remote process group {pgid} timed out");
        }
    }

    /// Say goodbye politely.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}
