//! Authentication and roles (DESIGN §9, docs/SECURITY.md).
//!
//! With `[auth]`: a JWT from `Authorization: Bearer <JWT>` or from the
//! `switchyard_session` cookie. Keys: one key for tokens without `kid`
//! (HS256 secret, or an RS256/ES256 public key) and any number of keys
//! selected by `kid` from a JWKS file that is re-read when it changes, so
//! keys rotate with no downtime. Each key pins its one algorithm: a token
//! signed any other way (`none`, HS256 with a public key as secret) is
//! refused. `exp` and `sub` are required, `nbf` is honoured, `iss` and `aud`
//! are required and checked when configured, all within a small leeway; the
//! `role` claim is one of viewer, ingest, operator, admin.
//!
//! A state-changing request authenticated by the cookie must carry
//! `X-Switchyard-CSRF: 1`, and its `Origin`, when present, must name the
//! server it was sent to. Without `[auth]` the API listens on loopback only:
//! every request (reads included) must name the listen address in `Host` and
//! `Origin` (the DNS-rebinding guard, [`loopback_guard`]), and state changes
//! need the CSRF header.

use crate::{ApiError, AppState};
use axum::http::{HeaderMap, Method, StatusCode};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// The cookie a browser session carries its token in.
pub const SESSION_COOKIE: &str = "switchyard_session";

/// The header a cookie-authenticated or unauthenticated state change must carry.
pub const CSRF_HEADER: &str = "x-switchyard-csrf";

/// A role, from least to most allowed (ingest stands apart: it may only ingest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Ingest,
    Operator,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "ingest" => Ok(Role::Ingest),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "`{other}` is not a role; one of viewer, ingest, operator, admin"
            )),
        }
    }
}

impl Role {
    /// Whether a caller with `self` may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Admin, _) => true,
            (Role::Ingest, n) => n == Role::Ingest,
            (Role::Operator, n) => matches!(n, Role::Viewer | Role::Operator),
            (Role::Viewer, n) => n == Role::Viewer,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Ingest => "ingest",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Shortest HS256 secret accepted, in bytes.
pub const MIN_HS256_SECRET: usize = 32;

/// Largest leeway accepted for `exp`/`nbf`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// One verification key with its pinned algorithm.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl Key {
    /// An HS256 secret (already resolved from its `${env:…}`/`${file:…}` reference).
    pub fn hs256(secret: &[u8], kid: Option<&str>) -> Result<Key, String> {
        if secret.len() < MIN_HS256_SECRET {
            return Err(format!(
                "an HS256 secret must be at least {MIN_HS256_SECRET} bytes"
            ));
        }
        Ok(Key {
            kid: kid.map(str::to_owned),
            alg: Algorithm::HS256,
            key: DecodingKey::from_secret(secret),
        })
    }

    /// An RS256 or ES256 (P-256) public key in PEM form: its kind picks the algorithm.
    pub fn public_pem(pem: &[u8], kid: Option<&str>) -> Result<Key, String> {
        let (key, alg) = match DecodingKey::from_rsa_pem(pem) {
            Ok(k) => (k, Algorithm::RS256),
            Err(_) => match DecodingKey::from_ec_pem(pem) {
                Ok(k) => (k, Algorithm::ES256),
                Err(e) => {
                    return Err(format!(
                        "not an RSA or EC (P-256) public key in PEM form: {e}"
                    ));
                }
            },
        };
        Ok(Key {
            kid: kid.map(str::to_owned),
            alg,
            key,
        })
    }

    /// The algorithm tokens checked with this key must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, kid {:?}, redacted)", self.alg, self.kid)
    }
}

/// Read the keys of a JWKS document (RFC 7517). Every key needs a `kid`;
/// its algorithm is its `alg` member or follows from its type (RSA: RS256,
/// EC P-256: ES256, oct: HS256). Only RS256, ES256 and HS256 are accepted.
pub fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| format!("keys[{i}] has no `kid`"))?;
        let by_type = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
            _ => {
                return Err(format!(
                    "keys[{i}] (`{kid}`): only RSA, EC P-256 and oct keys are accepted"
                ));
            }
        };
        let alg = match jwk.common.key_algorithm {
            None => by_type,
            Some(a) => {
                let named = a.to_string();
                if named != format!("{by_type:?}") {
                    return Err(format!(
                        "keys[{i}] (`{kid}`): `alg` {named} does not fit the key; it takes {by_type:?}"
                    ));
                }
                by_type
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("keys[{i}] (`{kid}`): {e}"))?;
        if alg == Algorithm::HS256
            && key.try_get_as_bytes().map_or(0, <[u8]>::len) < MIN_HS256_SECRET
        {
            return Err(format!(
                "keys[{i}] (`{kid}`): an HS256 key must be at least {MIN_HS256_SECRET} bytes"
            ));
        }
        if keys
            .iter()
            .any(|k: &Key| k.kid.as_deref() == Some(kid.as_str()))
        {
            return Err(format!("`kid` {kid} appears twice"));
        }
        keys.push(Key {
            kid: Some(kid),
            alg,
            key,
        });
    }
    Ok(keys)
}

/// A JWKS file, re-read when its modification time or size changes (looked
/// at most once a second). A change that does not parse keeps the last good keys.
struct JwksFile {
    path: PathBuf,
    state: RwLock<JwksState>,
}

/// A file's modification time and size: when either changes, it is re-read.
type Stamp = (SystemTime, u64);

struct JwksState {
    keys: Vec<Key>,
    stamp: Option<Stamp>,
    looked: Instant,
}

const JWKS_LOOK_EVERY: Duration = Duration::from_secs(1);

impl JwksFile {
    fn open(path: &Path) -> Result<JwksFile, String> {
        let (keys, stamp) = read_jwks(path)?;
        Ok(JwksFile {
            path: path.to_owned(),
            state: RwLock::new(JwksState {
                keys,
                stamp,
                looked: Instant::now(),
            }),
        })
    }

    fn find(&self, kid: &str) -> Option<Key> {
        self.refresh();
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .cloned()
    }

    fn refresh(&self) {
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if state.looked.elapsed() < JWKS_LOOK_EVERY {
                return;
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.looked.elapsed() < JWKS_LOOK_EVERY {
            return;
        }
        state.looked = Instant::now();
        let now = stamp_of(&self.path);
        if now == state.stamp {
            return;
        }
        match read_jwks(&self.path) {
            Ok((keys, stamp)) => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS file re-read");
                state.keys = keys;
                state.stamp = stamp;
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "the changed JWKS file is not usable; the previous keys stay");
                state.stamp = now;
            }
        }
    }
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn read_jwks(path: &Path) -> Result<(Vec<Key>, Option<Stamp>), String> {
    let stamp = stamp_of(path);
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let keys = parse_jwks(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((keys, stamp))
}

/// What tokens must say besides their signature.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// `iss` must be this (and present).
    pub issuer: Option<String>,
    /// `aud` must hold this (and be present).
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (at most [`MAX_LEEWAY`]).
    pub leeway: Duration,
}

/// Token verification settings.
#[derive(Clone)]
pub struct Auth {
    /// The key for tokens without `kid`, and keys named in config.
    keys: Vec<Key>,
    jwks: Option<Arc<JwksFile>>,
    validation: Validation,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Auth({:?}, jwks {:?}, keys redacted)",
            self.keys.iter().map(|k| k.alg).collect::<Vec<_>>(),
            self.jwks.as_ref().map(|j| j.path.display().to_string())
        )
    }
}

impl Auth {
    /// Verification with `keys` (at most one without `kid`) and, when
    /// given, the keys of a JWKS file.
    pub fn new(keys: Vec<Key>, jwks_file: Option<&Path>, claims: &Claims) -> Result<Auth, String> {
        if keys.iter().filter(|k| k.kid.is_none()).count() > 1 {
            return Err("more than one key without a `kid`".into());
        }
        if claims.leeway > MAX_LEEWAY {
            return Err(format!(
                "a leeway of {}s is more than the {}s allowed",
                claims.leeway.as_secs(),
                MAX_LEEWAY.as_secs()
            ));
        }
        let jwks = jwks_file
            .map(|p| JwksFile::open(p).map(Arc::new))
            .transpose()?;
        if keys.is_empty() && jwks.is_none() {
            return Err("no verification key".into());
        }
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        validation.leeway = claims.leeway.as_secs();
        validation.validate_nbf = true;
        if let Some(i) = &claims.issuer {
            validation.set_issuer(&[i]);
            required.push("iss");
        }
        validation.validate_aud = claims.audience.is_some();
        if let Some(a) = &claims.audience {
            validation.set_audience(&[a]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Auth {
            keys,
            jwks,
            validation,
        })
    }

    /// HS256 with one secret, 30 s leeway.
    pub fn hs256(
        secret: &[u8],
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Auth, String> {
        Auth::new(
            vec![Key {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            }],
            None,
            &Claims {
                issuer: issuer.map(str::to_owned),
                audience: audience.map(str::to_owned),
                leeway: Duration::from_secs(30),
            },
        )
    }

    /// RS256 or ES256 with one PEM public key, 30 s leeway.
    pub fn public_key(
        pem: &[u8],
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Auth, String> {
        Auth::new(
            vec![Key::public_pem(pem, None)?],
            None,
            &Claims {
                issuer: issuer.map(str::to_owned),
                audience: audience.map(str::to_owned),
                leeway: Duration::from_secs(30),
            },
        )
    }

    /// The algorithms of the keys configured inline (not the JWKS file's).
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.keys.iter().map(|k| k.alg).collect()
    }

    /// Check `token`: the key its `kid` names (or the one without `kid`),
    /// that key's algorithm, the signature and the claims. The error says
    /// why, for the log; callers answer a plain 401.
    fn verify(&self, token: &str) -> Result<TokenClaims, String> {
        let header = decode_header(token).map_err(|e| format!("unreadable header: {e}"))?;
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .cloned()
                .or_else(|| self.jwks.as_ref().and_then(|j| j.find(kid)))
                .ok_or_else(|| format!("unknown kid `{kid}`"))?,
            None => self
                .keys
                .iter()
                .find(|k| k.kid.is_none())
                .cloned()
                .ok_or("the token names no key (kid) and no key without kid is configured")?,
        };
        if header.alg != key.alg {
            return Err(format!(
                "signed with {:?}; the key takes {:?}",
                header.alg, key.alg
            ));
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.alg];
        decode::<TokenClaims>(token, &key.key, &validation)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }
}

/// Sign an HS256 token for `subject` with `role`, valid for `ttl`
/// (`switchyard token issue`).
pub fn issue_hs256(
    secret: &[u8],
    subject: &str,
    role: Role,
    ttl: std::time::Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({
        "sub": subject,
        "role": role.as_str(),
        "iat": now,
        "nbf": now,
        "exp": now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
    });
    if let Some(i) = issuer {
        claims["iss"] = i.into();
    }
    if let Some(a) = audience {
        claims["aud"] = a.into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
}

#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: String,
    role: Role,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "auth.unauthorized", message)
}

fn csrf_refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "auth.csrf", message)
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The session token from the `Cookie` header, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

fn has_csrf_header(headers: &HeaderMap) -> bool {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) == Some("1")
}

/// The host and port an `Origin` header names (`None`: absent; `Some(None)`:
/// present but opaque or unreadable, as `null` is).
fn origin_authority(headers: &HeaderMap) -> Option<Option<String>> {
    let origin = headers.get(axum::http::header::ORIGIN)?;
    Some(
        origin
            .to_str()
            .ok()
            .and_then(|o| url::Url::parse(o).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .and_then(|u| {
                let host = u.host_str()?.to_owned();
                Some(match u.port_or_known_default() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                })
            }),
    )
}

/// Check the request against the API's auth mode; `needed` is the role the
/// endpoint requires.
pub fn authorize(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Caller, ApiError> {
    let Some(auth) = &state.auth else {
        return open_mode(method, headers);
    };
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = match (bearer, session_cookie(headers)) {
        (Some(t), _) => t,
        (None, Some(t)) => {
            if changes_state(method) {
                cookie_guard(headers)?;
            }
            t
        }
        (None, None) => {
            return Err(unauthorized(
                "a bearer token is required (Authorization: Bearer <JWT>)",
            ));
        }
    };
    let claims = auth.verify(token).map_err(|reason| {
        tracing::info!(reason, "refused a token");
        unauthorized("the token is not valid for this server")
    })?;
    let caller = Caller {
        subject: claims.sub,
        role: claims.role,
    };
    if !caller.role.allows(needed) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "auth.forbidden",
            format!(
                "role `{}` may not do this; it needs `{}`",
                caller.role.as_str(),
                needed.as_str()
            ),
        ));
    }
    Ok(caller)
}

/// A state change authenticated by the session cookie: the CSRF header,
/// and an `Origin` (when the browser sends one) naming the `Host` it was sent to.
fn cookie_guard(headers: &HeaderMap) -> Result<(), ApiError> {
    if !has_csrf_header(headers) {
        return Err(csrf_refused(
            "a state-changing request authenticated by the session cookie needs the header X-Switchyard-CSRF: 1",
        ));
    }
    if let Some(origin) = origin_authority(headers) {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok());
        let same = match (origin.as_deref(), host) {
            (Some(o), Some(h)) => {
                o == h || o.strip_suffix(":443") == Some(h) || o.strip_suffix(":80") == Some(h)
            }
            _ => false,
        };
        if !same {
            return Err(csrf_refused(
                "the Origin header does not name the server the request was sent to",
            ));
        }
    }
    Ok(())
}

/// No auth configured: every caller is the local operator; state changes
/// need the CSRF header ([`loopback_guard`] has already checked `Host` and `Origin`).
fn open_mode(method: &Method, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if changes_state(method) && !has_csrf_header(headers) {
        return Err(csrf_refused(
            "without auth, a state-changing request needs the header X-Switchyard-CSRF: 1",
        ));
    }
    Ok(Caller {
        subject: "anonymous (loopback, no auth)".into(),
        role: Role::Admin,
    })
}

/// The names a loopback server answers to on `port`.
fn loopback_names(listen: std::net::SocketAddr) -> [String; 4] {
    let port = listen.port();
    [
        listen.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ]
}

/// Without auth, on every request (reads included): the `Host` header (or
/// the HTTP/2 authority) and the `Origin` header, when present, must name
/// the listen address. A page loaded from another name — a DNS-rebinding
/// domain pointed at 127.0.0.1 — can then neither read nor change anything.
pub async fn loopback_guard(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.auth.is_some() {
        return next.run(req).await;
    }
    let names = loopback_names(state.listen);
    let named = |h: &str| names.iter().any(|n| n.eq_ignore_ascii_case(h));
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if let Some(h) = &host
        && !named(h)
    {
        return csrf_refused("the Host header does not name this server's listen address")
            .into_response();
    }
    if let Some(origin) = origin_authority(req.headers())
        && !origin.as_deref().is_some_and(named)
    {
        return csrf_refused("the Origin header does not name this server's listen address")
            .into_response();
    }
    next.run(req).await
}
