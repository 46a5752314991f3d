//! The API's guards against a real SQLite store: bearer tokens with pinned
//! algorithms, keys selected by `kid` and rotated, session cookies with the
//! CSRF rule, the loopback mode's Host and Origin checks, browser headers
//! and body limits.

mod common;
use common::*;

#[tokio::test]
async fn bearer_tokens_are_checked_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(
        store_with_runs(dir.path()).await,
        Some(Auth::hs256(SECRET, None, None).unwrap()),
        None,
    );
    let (st, body) = call(&s, get("/api/runs")).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("auth.unauthorized"))
    );
    let good = token("viewer", 600, SECRET);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &good)).await;
    assert_eq!(st, StatusCode::OK);
    // Wrong secret, expired, `alg: none`, garbage.
    let forged = token("admin", 600, b"another-secret-entirely-000000000");
    let expired = token("admin", -3600, SECRET);
    let payload = b64url(
        format!(
            r#"{{"sub":"mallory","role":"admin","exp":{}}}"#,
            chrono::Utc::now().timestamp() + 600
        )
        .as_bytes(),
    );
    let none = format!("{}.{payload}.", b64url(br#"{"alg":"none","typ":"JWT"}"#));
    let hs384 = encode(
        &Header::new(jsonwebtoken::Algorithm::HS384),
        &json!({"sub": "alice", "role": "admin", "exp": chrono::Utc::now().timestamp() + 600}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let no_sub = encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"role": "admin", "exp": chrono::Utc::now().timestamp() + 600}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    for (what, t) in [
        ("forged", forged),
        ("expired", expired),
        ("alg none", none),
        ("HS384", hs384),
        ("no sub", no_sub),
        ("garbage", "x.y.z".into()),
    ] {
        let (st, body) = call(&s, with_bearer("/api/runs", "GET", &t)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }
    // Roles: a viewer may not cancel; an operator may (here: no engine → 503).
    let id = call(&s, with_bearer("/api/runs?status=queued", "GET", &good))
        .await
        .1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, body) = call(
        &s,
        with_bearer(&format!("/api/runs/{id}/cancel"), "POST", &good),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("auth.forbidden"))
    );
    let ingest = token("ingest", 600, SECRET);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &ingest)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "ingest tokens only ingest");
    let operator = token("operator", 600, SECRET);
    let (st, body) = call(
        &s,
        with_bearer(&format!("/api/runs/{id}/cancel"), "POST", &operator),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("engine.standby"))
    );
}

#[tokio::test]
async fn without_auth_state_changes_need_the_csrf_header_and_our_host() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(store_with_runs(dir.path()).await, None, None);
    let id = call(&s, get("/api/runs?status=queued")).await.1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = |csrf: Option<&str>, host: &str| {
        let mut b = Request::post(format!("/api/runs/{id}/cancel")).header("host", host);
        if let Some(c) = csrf {
            b = b.header("x-switchyard-csrf", c);
        }
        b.body(Body::empty()).unwrap()
    };
    let (st, body) = call(&s, post(None, "127.0.0.1:8080")).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("auth.csrf"))
    );
    let (st, _) = call(&s, post(Some("1"), "evil.example:8080")).await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a foreign Host is refused (DNS rebinding)"
    );
    let (st, body) = call(&s, post(Some("1"), "localhost:8080")).await;
    assert_eq!(
        st,
        StatusCode::SERVICE_UNAVAILABLE,
        "passes the guards: {body}"
    );
}

#[tokio::test]
async fn public_keys_pin_rs256_or_es256() {
    use jsonwebtoken::Algorithm::{ES256, HS256, RS256};
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path()).await;
    let (rsa_private, rsa_public) = keypair(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ec_private, ec_public) = keypair(
        dir.path(),
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let rs = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
    let es = EncodingKey::from_ec_pem(&ec_private).unwrap();

    let auth = Auth::public_key(&rsa_public, None, None).unwrap();
    assert_eq!(auth.algorithms(), [RS256]);
    let s = state(store.clone(), Some(auth), None);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &signed(RS256, &rs))).await;
    assert_eq!(st, StatusCode::OK);
    for (what, token) in [
        (
            "HS256 with the public key as the secret",
            signed(HS256, &EncodingKey::from_secret(&rsa_public)),
        ),
        ("ES256 against an RSA key", signed(ES256, &es)),
    ] {
        let (st, _) = call(&s, with_bearer("/api/runs", "GET", &token)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what}");
    }

    let auth = Auth::public_key(&ec_public, None, None).unwrap();
    assert_eq!(auth.algorithms(), [ES256]);
    let s = state(store, Some(auth), None);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &signed(ES256, &es))).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &signed(RS256, &rs))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "RS256 against an EC key");
    assert!(Auth::public_key(b"-----BEGIN NONSENSE-----", None, None).is_err());
}

#[tokio::test]
async fn without_auth_every_request_must_name_this_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(store_with_runs(dir.path()).await, None, None);
    let with = |uri: &str, headers: &[(&str, &str)]| {
        let mut b = Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    };
    for uri in [
        "/api/runs",
        "/api/stream",
        "/metrics",
        "/api/policies/ups",
        "/healthz",
    ] {
        for (what, headers, allowed) in [
            (
                "a rebinding Host",
                vec![("host", "evil.example:8080")],
                false,
            ),
            ("another port", vec![("host", "127.0.0.1:9999")], false),
            (
                "a foreign Origin",
                vec![
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://evil.example"),
                ],
                false,
            ),
            (
                "an opaque Origin",
                vec![("host", "127.0.0.1:8080"), ("origin", "null")],
                false,
            ),
            ("our Host", vec![("host", "127.0.0.1:8080")], true),
            (
                "our Host and Origin",
                vec![
                    ("host", "localhost:8080"),
                    ("origin", "http://localhost:8080"),
                ],
                true,
            ),
            ("no Host (not a browser)", vec![], true),
        ] {
            let resp = router(s.clone())
                .oneshot(with(uri, &headers))
                .await
                .unwrap();
            let status = resp.status();
            if allowed {
                assert_ne!(status, StatusCode::FORBIDDEN, "GET {uri} with {what}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "GET {uri} with {what}");
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
                    .await
                    .unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(body["error"]["code"], "auth.csrf", "{uri} {what}");
            }
        }
    }
}

#[tokio::test]
async fn every_answer_carries_browser_headers_and_bodies_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(store_with_runs(dir.path()).await, None, None);
    for uri in ["/api/runs", "/api/nothing", "/metrics", "/healthz"] {
        let resp = router(s.clone()).oneshot(get(uri)).await.unwrap();
        for (name, value) in switchyard_api::SECURITY_HEADERS {
            assert_eq!(
                resp.headers().get(*name).and_then(|v| v.to_str().ok()),
                Some(*value),
                "{uri}: {name}"
            );
        }
        let csp = resp.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    // Every state-changing operation refuses a body over the limit: 413, and nothing changes.
    let big = vec![b' '; switchyard_api::MAX_BODY_BYTES + 1];
    let before = fingerprint(dir.path());
    let doc = switchyard_api::openapi::document();
    let mut refused = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys().filter(|m| *m != "get") {
            let uri = path.replace("{id}", "ups").replace("{v}", "1").replace(
                "/api/runs/ups",
                "/api/runs/01a20c00-0000-7000-8000-000000000000",
            );
            for chunked in [false, true] {
                let body = if chunked {
                    // No Content-Length: read up to the limit, then refused.
                    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
                    Body::from_stream(futures::stream::iter(chunks))
                } else {
                    Body::from(big.clone())
                };
                let mut b = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header("x-switchyard-csrf", "1")
                    .header("content-type", "application/json")
                    .header("if-match", "1");
                if !chunked {
                    b = b.header("content-length", big.len().to_string());
                }
                let (st, body) = call(&s, b.body(body).unwrap()).await;
                assert_eq!(
                    st,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "{method} {path} (chunked: {chunked}): {body}"
                );
                assert_eq!(body["error"]["code"], "body.too_large");
                refused += 1;
            }
        }
    }
    assert!(refused >= 30, "{refused} refusals");
    assert_eq!(fingerprint(dir.path()), before);
}

#[tokio::test]
async fn tokens_cookies_and_key_rotation_table() {
    use jsonwebtoken::Algorithm::{HS256, RS256};
    use switchyard_api::auth::{Claims, Key};
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path()).await;
    let (rsa_private, rsa_public) = keypair(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(
        &jwks_path,
        jwks(&[oct("k1", K1), rsa_jwk(dir.path(), "r1", &rsa_public)]),
    )
    .unwrap();
    let auth = Auth::new(
        vec![Key::hs256(SECRET, None).unwrap()],
        Some(&jwks_path),
        &Claims {
            issuer: Some("https://idp.example".into()),
            audience: Some("switchyard".into()),
            leeway: Duration::from_secs(5),
        },
    )
    .unwrap();
    let s = state(store, Some(auth), None);
    let now = chrono::Utc::now().timestamp();
    let claims = |extra: Value| {
        let mut c = json!({"sub": "alice", "role": "operator", "exp": now + 600,
                           "iss": "https://idp.example", "aud": "switchyard"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let hs = |kid: Option<&str>, key: &[u8], extra: Value| {
        jwt(HS256, kid, &EncodingKey::from_secret(key), claims(extra))
    };
    let good = hs(None, SECRET, json!({}));
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let payload = b64url(claims(json!({"role": "admin"})).to_string().as_bytes());
        format!(
            "{}.{}.{}",
            parts[0],
            payload.trim_end_matches('='),
            parts[2]
        )
    };
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#).trim_end_matches('='),
        b64url(claims(json!({})).to_string().as_bytes()).trim_end_matches('=')
    );
    let rs = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
    let run = call(&s, with_bearer("/api/runs?status=queued", "GET", &good))
        .await
        .1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancel = format!("/api/runs/{run}/cancel");
    // (what, method, uri, bearer token, cookie token, extra headers, status, code)
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<String>,
        Option<String>,
        Vec<(&'a str, &'a str)>,
        StatusCode,
    );
    let rows: Vec<Row> = vec![
        (
            "kid-less key",
            "GET",
            "/api/runs",
            Some(good.clone()),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "JWKS oct key by kid",
            "GET",
            "/api/runs",
            Some(hs(Some("k1"), K1, json!({}))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "JWKS RSA key by kid",
            "GET",
            "/api/runs",
            Some(jwt(RS256, Some("r1"), &rs, claims(json!({})))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "alg none",
            "GET",
            "/api/runs",
            Some(none),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "HS256 signed with the RSA public key (kid r1)",
            "GET",
            "/api/runs",
            Some(hs(Some("r1"), &rsa_public, json!({}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "RS256 without kid against the HS256 key",
            "GET",
            "/api/runs",
            Some(jwt(RS256, None, &rs, claims(json!({})))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired beyond the leeway",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"exp": now - 60}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired within the leeway",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"exp": now - 2}))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "not yet valid (nbf)",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"nbf": now + 120}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "valid since (nbf)",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"nbf": now - 1}))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "wrong iss",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"iss": "https://evil.example"}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no iss",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"iss": null}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong aud",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"aud": "grafana"}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no aud",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"aud": null}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "aud list holding ours",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"aud": ["grafana", "switchyard"]}))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "unknown kid",
            "GET",
            "/api/runs",
            Some(hs(Some("k9"), K1, json!({}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "right kid, wrong key",
            "GET",
            "/api/runs",
            Some(hs(Some("k1"), SECRET, json!({}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "tampered payload",
            "GET",
            "/api/runs",
            Some(tampered),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "session cookie read",
            "GET",
            "/api/runs",
            None,
            Some(good.clone()),
            vec![],
            StatusCode::OK,
        ),
        (
            "session cookie change without the CSRF header",
            "POST",
            &cancel,
            None,
            Some(good.clone()),
            vec![],
            StatusCode::FORBIDDEN,
        ),
        (
            "session cookie change from another Origin",
            "POST",
            &cancel,
            None,
            Some(good.clone()),
            vec![
                ("x-switchyard-csrf", "1"),
                ("host", "sy.example:8443"),
                ("origin", "https://evil.example"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            "session cookie change, CSRF header, same Origin",
            "POST",
            &cancel,
            None,
            Some(good.clone()),
            vec![
                ("x-switchyard-csrf", "1"),
                ("host", "sy.example:8443"),
                ("origin", "https://sy.example:8443"),
            ],
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "bearer change needs no CSRF header",
            "POST",
            &cancel,
            Some(good.clone()),
            None,
            vec![],
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "expired session cookie",
            "GET",
            "/api/runs",
            None,
            Some(hs(None, SECRET, json!({"exp": now - 60}))),
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
    ];
    let mut table = Vec::new();
    for (what, method, uri, bearer, cookie, headers, expected) in rows {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(t) = cookie {
            b = b.header(
                "cookie",
                format!("theme=dark; {}={t}", switchyard_api::auth::SESSION_COOKIE),
            );
        }
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let (st, body) = call(&s, b.body(Body::empty()).unwrap()).await;
        table.push(format!("{what}: {st}"));
        assert_eq!(st, expected, "{what}: {body}");
        if st == StatusCode::FORBIDDEN {
            assert_eq!(body["error"]["code"], "auth.csrf", "{what}");
        }
    }
    println!("{}", table.join("\n"));

    // Rotation with no restart: k2 replaces k1 in the file.
    let k2 = hs(Some("k2"), K2, json!({}));
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &k2)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "k2 is not published yet");
    std::fs::write(&jwks_path, jwks(&[oct("k2", K2)])).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &k2)).await;
    assert_eq!(st, StatusCode::OK, "k2 accepted once the file names it");
    let (st, _) = call(
        &s,
        with_bearer("/api/runs", "GET", &hs(Some("k1"), K1, json!({}))),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "k1 retired");
    // A broken file keeps the last good keys.
    std::fs::write(&jwks_path, "{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &k2)).await;
    assert_eq!(st, StatusCode::OK, "a broken JWKS file keeps k2");
    // Bad key material is refused when configured.
    for (what, text) in [
        ("short oct key", jwks(&[oct("s", b"short")])),
        (
            "no kid",
            json!({"keys": [{"kty": "oct", "k": b64url(K1)}]}).to_string(),
        ),
        (
            "alg that does not fit",
            jwks(&[json!({"kty": "oct", "kid": "x", "alg": "RS256", "k": b64url(K1)})]),
        ),
        ("kid twice", jwks(&[oct("a", K1), oct("a", K2)])),
    ] {
        assert!(switchyard_api::auth::parse_jwks(&text).is_err(), "{what}");
    }
    assert!(Key::hs256(b"short", None).is_err(), "a short HS256 secret");
}
