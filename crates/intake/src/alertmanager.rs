//! Alertmanager webhook payloads (version 4) to switchyard events.
//!
//! Each alert becomes one event of kind `alertmanager.firing` or
//! `alertmanager.resolved`; labels, annotations, times, fingerprint and the
//! group's receiver are in `data`; the host is the `instance` label without
//! its `:port`; the id is a UUIDv5 of fingerprint, status and start time, so
//! Alertmanager's repeated notifications of one alert are de-duplicated.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use switchyard_spec::event::Event;
use thiserror::Error;
use uuid::Uuid;

/// Namespace of Alertmanager-derived event ids.
pub const ALERT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x2b6e_51f4_0d8a_4c37_b0e2_6a91_c5d3_7e48);

/// Why a webhook payload was refused.
#[derive(Debug, Error)]
pub enum Error {
    #[error("not an Alertmanager webhook payload: {0}")]
    Shape(String),
    #[error("unsupported webhook version `{0}`; switchyard reads version 4")]
    Version(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: String,
    #[serde(default)]
    group_key: Option<String>,
    #[serde(default)]
    receiver: Option<String>,
    #[serde(default, rename = "externalURL")]
    external_url: Option<String>,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// `web-01:9100` → `web-01`; `[::1]:9100` → `::1`; names without a port unchanged.
pub fn host_of_instance(instance: &str) -> String {
    if let Some(rest) = instance.strip_prefix('[')
        && let Some((addr, _)) = rest.split_once(']')
    {
        return addr.to_owned();
    }
    match instance.rsplit_once(':') {
        Some((host, port))
            if !host.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host.to_owned()
        }
        _ => instance.to_owned(),
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Map a webhook body to events, one per alert.
pub fn to_events(body: &[u8]) -> Result<Vec<Event>, Error> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| Error::Shape(e.to_string()))?;
    if payload.version != "4" {
        return Err(Error::Version(payload.version));
    }
    payload
        .alerts
        .into_iter()
        .map(|a| {
            let kind = match a.status.as_str() {
                "firing" => "alertmanager.firing",
                "resolved" => "alertmanager.resolved",
                other => {
                    return Err(Error::Shape(format!(
                        "alert status `{other}` is neither firing nor resolved"
                    )));
                }
            };
            let starts_at = parse_time(&a.starts_at).ok_or_else(|| {
                Error::Shape(format!("startsAt `{}` is not RFC 3339", a.starts_at))
            })?;
            // Alertmanager sends 0001-01-01 for "not ended".
            let ends_at = a
                .ends_at
                .as_deref()
                .and_then(parse_time)
                .filter(|t| t.timestamp() > 0);
            let fingerprint = a.fingerprint.clone().unwrap_or_else(|| {
                // No fingerprint: derive one from the label set, as Alertmanager does in spirit.
                let labels = serde_json::to_string(&a.labels).unwrap_or_default();
                Uuid::new_v5(&ALERT_ID_NAMESPACE, labels.as_bytes())
                    .simple()
                    .to_string()
            });
            let id = Uuid::new_v5(
                &ALERT_ID_NAMESPACE,
                format!("{fingerprint}\n{}\n{}", a.status, a.starts_at).as_bytes(),
            )
            .to_string();
            let mut data = Map::new();
            data.insert("labels".into(), json!(a.labels));
            data.insert("annotations".into(), json!(a.annotations));
            data.insert("starts_at".into(), json!(starts_at.to_rfc3339()));
            data.insert(
                "ends_at".into(),
                ends_at.map_or(Value::Null, |t| json!(t.to_rfc3339())),
            );
            data.insert("fingerprint".into(), json!(fingerprint));
            data.insert("generator_url".into(), json!(a.generator_url));
            data.insert("receiver".into(), json!(payload.receiver));
            data.insert("group_key".into(), json!(payload.group_key));
            Ok(Event {
                id: Some(id),
                kind: kind.to_owned(),
                source: Some(
                    payload
                        .external_url
                        .clone()
                        .unwrap_or_else(|| "alertmanager".to_owned()),
                ),
                host: a.labels.get("instance").map(|i| host_of_instance(i)),
                time: Some(if kind == "alertmanager.resolved" {
                    ends_at.unwrap_or(starts_at)
                } else {
                    starts_at
                }),
                severity: a.labels.get("severity").cloned(),
                data,
                extensions: Map::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"NginxDown\"}", "truncatedAlerts": 0, "status": "firing",
      "receiver": "switchyard", "groupLabels": {"alertname": "NginxDown"}, "commonLabels": {}, "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093",
      "alerts": [
        {"status": "firing", "labels": {"alertname": "NginxDown", "instance": "web-01:9113", "severity": "critical"},
         "annotations": {"summary": "nginx is down"}, "startsAt": "2026-11-23T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus/graph", "fingerprint": "c9d1a2b3"},
        {"status": "resolved", "labels": {"alertname": "DiskFull", "instance": "[2001:db8::1]:9100"},
         "annotations": {}, "startsAt": "2026-11-23T07:00:00Z", "endsAt": "2026-11-23T07:30:00Z", "fingerprint": "d00d"}
      ]
    }"#;

    #[test]
    fn maps_each_alert_to_an_event() {
        let events = to_events(BODY.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        let a = &events[0];
        assert_eq!(a.kind, "alertmanager.firing");
        assert_eq!(a.host.as_deref(), Some("web-01"));
        assert_eq!(a.severity.as_deref(), Some("critical"));
        assert_eq!(a.data["labels"]["alertname"], "NginxDown");
        assert_eq!(a.data["ends_at"], Value::Null);
        assert_eq!(a.source.as_deref(), Some("http://alertmanager:9093"));
        let b = &events[1];
        assert_eq!(b.kind, "alertmanager.resolved");
        assert_eq!(b.host.as_deref(), Some("2001:db8::1"));
        assert_eq!(b.time.unwrap().to_rfc3339(), "2026-11-23T07:30:00+00:00");
        // Every mapped event is a valid envelope.
        for e in &events {
            let bytes = serde_json::to_vec(e).unwrap();
            switchyard_spec::event::parse(&bytes, Default::default()).unwrap();
        }
    }

    #[test]
    fn ids_are_stable_for_retries_and_differ_by_status() {
        let a = to_events(BODY.as_bytes()).unwrap();
        let again = to_events(BODY.as_bytes()).unwrap();
        assert_eq!(
            a[0].id, again[0].id,
            "Alertmanager's retry is the same event"
        );
        let resolved = BODY.replacen(
            "\"status\": \"firing\", \"labels\"",
            "\"status\": \"resolved\", \"labels\"",
            1,
        );
        let r = to_events(resolved.as_bytes()).unwrap();
        assert_ne!(a[0].id, r[0].id, "firing and resolved are different events");
    }

    #[test]
    fn refuses_other_shapes() {
        assert!(matches!(
            to_events(b"{\"version\":\"3\",\"alerts\":[]}"),
            Err(Error::Version(_))
        ));
        assert!(matches!(to_events(b"[]"), Err(Error::Shape(_))));
        assert!(
            to_events(
                BODY.replace("\"firing\", \"labels\"", "\"pending\", \"labels\"")
                    .as_bytes()
            )
            .is_err()
        );
    }

    #[test]
    fn instance_ports_are_stripped() {
        for (i, want) in [
            ("web-01:9100", "web-01"),
            ("web-01", "web-01"),
            ("10.0.0.5:80", "10.0.0.5"),
            ("[::1]:9100", "::1"),
            ("::1", "::1"),
        ] {
            assert_eq!(host_of_instance(i), want, "{i}");
        }
    }
}
