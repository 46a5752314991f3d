//! Injection through event fields: a corpus of hostile strings (`;`, `$( )`,
//! backticks, newlines, quotes, `--option`, `../`, NUL, very long values)
//! put into the params of each built-in driver — exec argv, http path
//! segments and query, ssh argv — by a real `switchyard serve`. Each one is
//! either carried as inert data (the program receives exactly the string, the
//! server sees exactly one path segment) or refused with a specific reason;
//! none runs anything.

use serde_json::Value;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_system_tests::{Backend, Rig, RigOptions, http_get};
use switchyard_test_support::Sshd;

/// Paths the fake web server was asked for (the raw request target).
type Seen = Arc<Mutex<Vec<String>>>;

/// An HTTP/1.1 server that answers 200 to everything and records request targets.
fn web_server() -> (u16, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let keep = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let keep = Arc::clone(&keep);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                if let Some(target) = text.split_whitespace().nth(1) {
                    keep.lock().unwrap().push(target.to_owned());
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            });
        }
    });
    (port, seen)
}

fn corpus(rig: &Rig) -> Vec<(String, String)> {
    let pwned = rig.path("pwned");
    let p = pwned.display();
    vec![
        ("semicolon", format!("a; touch {p}")),
        ("subshell", format!("$(touch {p})")),
        ("backticks", format!("`touch {p}`")),
        ("newline", format!("a\ntouch {p}")),
        ("single quote", format!("' ; touch {p} ; '")),
        ("double quote", format!("\"; touch {p}; \"")),
        ("pipe", format!("x | touch {p}")),
        ("and", format!("x && touch {p}")),
        ("glob and variables", "* ${IFS} $HOME ~".to_owned()),
        ("long option", format!("--output={p}")),
        ("short option", "-rf".to_owned()),
        ("dot dot", "../../../etc/passwd".to_owned()),
        ("just dot dot", "..".to_owned()),
        ("percent", "%2e%2e%2f%00".to_owned()),
        ("very long", "x".repeat(20_000)),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b))
    .collect()
}

fn runs_of(api: u16, event: &str) -> Vec<Value> {
    let (status, body) =
        http_get(api, &format!("/api/runs?event={event}")).expect("the API answers");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    v["runs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_event_values_are_inert_or_refused_in_every_builtin_driver() {
    let sshd = Sshd::start();
    let (web, seen) = web_server();
    let opts = RigOptions::new(Backend::Sqlite, 0)
        .raw(&format!(
            "[[hosts]]\nid = \"local\"\ndriver = \"exec\"\n\
             [[hosts]]\nid = \"web\"\ndriver = \"http\"\naddress = \"http://127.0.0.1:{web}/base\"\n\
             [[hosts]]\nid = \"remote\"\ndriver = \"ssh\"\naddress = \"127.0.0.1\"\n\
             config = {{ user = \"{user}\", port = {port}, private_key = \"${{file:{key}}}\", host_key = \"{fp}\" }}\n",
            user = sshd.user,
            port = sshd.port,
            key = sshd.client_key_path.display(),
            fp = sshd.host_fingerprint,
        ));
    let mut rig = Rig::new(opts);
    let cwd = rig.path("");
    rig.policy(
        "exec",
        &format!(
            "version: 1\nname: inject-exec\nenabled: true\ntrigger_group: {{triggers: [{{kind: inject.exec}}]}}\n\
             targets: [{{selector: local}}]\n\
             actions: [{{capability: command.run, verb: run, driver: exec, params: {{argv: [printf, \"%s\", \"{{{{ $.data.v }}}}\"], cwd: \"{}\"}}}}]\n",
            cwd.display()
        ),
    );
    rig.policy(
        "http",
        "version: 1\nname: inject-http\nenabled: true\ntrigger_group: {triggers: [{kind: inject.http}]}\n\
         targets: [{selector: web}]\n\
         actions: [{capability: http.request, verb: get, params: {path: /echo, segments: [\"{{ $.data.v }}\"], query: {q: \"{{ $.data.v }}\"}}}]\n",
    );
    rig.policy(
        "http-path",
        "version: 1\nname: inject-http-path\nenabled: true\ntrigger_group: {triggers: [{kind: inject.path}]}\n\
         targets: [{selector: web}]\n\
         actions: [{capability: http.request, verb: get, params: {path: \"/echo/{{ $.data.v }}\"}}]\n",
    );
    rig.policy(
        "ssh",
        "version: 1\nname: inject-ssh\nenabled: true\ntrigger_group: {triggers: [{kind: inject.ssh}]}\n\
         targets: [{selector: remote}]\n\
         actions: [{capability: command.run, verb: run, driver: ssh, params: {argv: [printf, \"%s\", \"{{ $.data.v }}\"]}}]\n",
    );
    rig.start().await;
    let js = rig.publisher().await;
    let items = corpus(&rig);
    let mut published = 0;
    for kind in ["exec", "http", "path", "ssh"] {
        for (i, (_, value)) in items.iter().enumerate() {
            let ev = serde_json::json!({"id": format!("{kind}-{i}"), "kind": format!("inject.{kind}"),
                                        "data": {"v": value}});
            js.publish(
                &format!("switchyard.events.inject.{kind}"),
                ev.to_string().into_bytes(),
            )
            .await
            .expect("published");
            published += 1;
        }
    }
    // NUL: refused at intake, before any policy sees it.
    let nul = br#"{"id":"nul-1","kind":"inject.exec","data":{"v":"a\u0000b"}}"#.to_vec();
    js.publish("switchyard.events.inject.exec", nul)
        .await
        .unwrap();
    assert!(
        rig.settle(published, Duration::from_secs(120)).await,
        "{}",
        rig.log()
    );

    let mut table = Vec::new();
    for kind in ["exec", "http", "path", "ssh"] {
        for (i, (what, value)) in items.iter().enumerate() {
            let runs = runs_of(rig.api, &format!("{kind}-{i}"));
            assert_eq!(runs.len(), 1, "{kind} {what}: {runs:?}");
            let run = &runs[0];
            let status = run["status"].as_str().unwrap_or_default();
            let reason = run["reason"].as_str().unwrap_or_default();
            let verdict = match status {
                "succeeded" => {
                    match kind {
                        "exec" | "ssh" => {
                            let out = run["output"].as_str().unwrap_or_default();
                            assert!(
                                out.starts_with(value.as_str()) || out.contains(value.as_str()),
                                "{kind} {what}: the program must receive exactly the value; output {out:?}"
                            );
                        }
                        _ => {
                            let targets = seen.lock().unwrap().clone();
                            let encoded: String =
                                url::form_urlencoded::byte_serialize(value.as_bytes())
                                    .collect::<String>()
                                    .replace('+', "%20");
                            let expected = if kind == "http" {
                                format!("/base/echo/{encoded}?")
                            } else {
                                "/base/echo/".to_owned()
                            };
                            assert!(
                                targets.iter().any(|t| t.starts_with(&expected)),
                                "{kind} {what}: no request under {expected}: {targets:?}"
                            );
                            assert!(
                                targets.iter().all(|t| t.starts_with("/base/echo")),
                                "{kind} {what}: a request left the base path: {targets:?}"
                            );
                        }
                    }
                    "inert"
                }
                "failed" => {
                    assert!(
                        reason == "params_invalid",
                        "{kind} {what}: failed for another reason: {run}"
                    );
                    "refused"
                }
                other => panic!("{kind} {what}: {other}: {run}"),
            };
            table.push(format!("{kind:5} {what:18} {verdict} {reason}"));
        }
    }
    println!("{}", table.join("\n"));
    // Option-looking values never reach exec or ssh argv.
    for kind in ["exec", "ssh"] {
        for (i, (what, _)) in items.iter().enumerate() {
            if what.contains("option") {
                let run = &runs_of(rig.api, &format!("{kind}-{i}"))[0];
                assert_eq!(run["reason"], "params_invalid", "{kind} {what}: {run}");
            }
        }
    }
    // `..` in a plain path is refused by the http driver; in a segment it is one segment.
    let dotdot = items.iter().position(|(w, _)| w == "dot dot").unwrap();
    assert_eq!(
        runs_of(rig.api, &format!("path-{dotdot}"))[0]["status"],
        "failed"
    );
    assert!(!rig.path("pwned").exists(), "an injected command ran");
    let dead = js.dead_letters().await;
    assert!(
        dead.iter().any(|d| d.reason == "nul_character"),
        "NUL is dead-lettered at intake: {dead:?}"
    );
    assert!(runs_of(rig.api, "nul-1").is_empty());
    drop(sshd);
}
