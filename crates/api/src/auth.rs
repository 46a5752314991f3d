//! Authentication and roles (DESIGN §9).
//!
//! With `[auth]`: `Authorization: Bearer <JWT>`, HS256 with a secret, or
//! RS256/ES256 with a public key — one algorithm, pinned: a token signed any
//! other way (`none`, HS256 with the public key as secret) is refused;
//! `exp` and `sub` required, issuer and audience checked when configured, and
//! the `role` claim one of viewer, ingest, operator, admin. Without `[auth]`
//! the API listens on loopback only, reads are open, and a state-changing
//! request must carry `X-Switchyard-CSRF: 1` and a `Host` header naming the
//! listen address (the DNS-rebinding guard).

use crate::{ApiError, AppState};
use axum::http::{HeaderMap, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

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

/// Token verification settings.
#[derive(Clone)]
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth({:?}, key redacted)", self.validation.algorithms)
    }
}

impl Auth {
    /// HS256 with `secret` (already resolved from its `${env:…}`/`${file:…}` reference).
    pub fn hs256(secret: &[u8], issuer: Option<&str>, audience: Option<&str>) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        if let Some(i) = issuer {
            validation.set_issuer(&[i]);
        }
        validation.validate_aud = audience.is_some();
        if let Some(a) = audience {
            validation.set_audience(&[a]);
        }
        Auth {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }
}

impl Auth {
    /// RS256 or ES256 (P-256) with a PEM public key: the key's kind picks the
    /// one algorithm accepted; tokens signed any other way (HS256 with the
    /// public key as a secret included) are refused.
    pub fn public_key(
        pem: &[u8],
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Auth, String> {
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
        let mut auth = Auth::hs256(b"unused", issuer, audience);
        auth.validation.algorithms = vec![alg];
        auth.key = key;
        Ok(auth)
    }

    /// The one algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.validation.algorithms[0]
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
struct Claims {
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

/// Check the request against the API's auth mode; `needed` is the role the
/// endpoint requires.
pub fn authorize(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Caller, ApiError> {
    let Some(auth) = &state.auth else {
        return open_mode(state, method, headers);
    };
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("a bearer token is required (Authorization: Bearer <JWT>)"))?;
    let data = decode::<Claims>(token, &auth.key, &auth.validation).map_err(|e| {
        tracing::info!(error = %e, "refused a token");
        unauthorized("the token is not valid for this server")
    })?;
    let caller = Caller {
        subject: data.claims.sub,
        role: data.claims.role,
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

/// No auth configured: reads are open; state changes need the CSRF header and
/// a `Host` naming the listen address.
fn open_mode(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = Caller {
        subject: "anonymous (loopback, no auth)".into(),
        role: Role::Admin,
    };
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(caller);
    }
    let forbidden = |m: &str| ApiError::new(StatusCode::FORBIDDEN, "auth.csrf", m);
    if headers
        .get("x-switchyard-csrf")
        .and_then(|v| v.to_str().ok())
        != Some("1")
    {
        return Err(forbidden(
            "without auth, a state-changing request needs the header X-Switchyard-CSRF: 1",
        ));
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let port = state.listen.port();
    let ok = host == state.listen.to_string()
        || host == format!("localhost:{port}")
        || host == format!("127.0.0.1:{port}")
        || host == format!("[::1]:{port}");
    if !ok {
        return Err(forbidden(
            "the Host header does not name this server's listen address",
        ));
    }
    Ok(caller)
}
