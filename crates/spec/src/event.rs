//! The event envelope: parsing with limits, CloudEvents 1.0 normalization,
//! and deterministic ids for events that arrive without one.
//!
//! Every refusal is an [`Error`] whose [`Error::reason`] is a stable token used
//! as the dead-letter subject suffix (`switchyard.dlq.<reason>`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;
use uuid::Uuid;

/// The kind reserved for scheduled ticks; producers may not send it.
pub const RESERVED_KIND: &str = "schedule";
/// Default payload limit: 1 MiB.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
/// Default JSON nesting limit (the envelope object is depth 1).
pub const DEFAULT_MAX_DEPTH: usize = 64;
const MAX_FIELD_LEN: usize = 256;

/// Limits applied before an event is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// A normalized event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Producer id; `None` until intake assigns a delivery-derived one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Producer time, RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default)]
    pub data: Map<String, Value>,
    /// CloudEvents extension attributes other than `host` and `severity`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extensions: Map<String, Value>,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("payload is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("payload is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("payload nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("payload is not valid JSON: {message} (line {line}, column {column})")]
    InvalidJson {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("payload is a JSON {found}; an event is a JSON object")]
    NotObject { found: &'static str },
    #[error("event has no `kind`{hint}")]
    MissingKind { hint: &'static str },
    #[error("kind `{kind}` is not dotted lowercase tokens (`[a-z0-9_]+(.[a-z0-9_]+)*`)")]
    InvalidKind { kind: String },
    #[error("kind `schedule` is reserved for scheduled ticks")]
    ReservedKind,
    #[error("field `{field}`: {message}")]
    InvalidField { field: String, message: String },
    #[error(
        "unknown field `{field}`; an event has id, kind, source, host, time, severity and data"
    )]
    UnknownField { field: String },
    #[error(
        "`{path}` holds a NUL character (U+0000), which the ledger cannot store; send text without it"
    )]
    NulCharacter { path: String },
}

impl Error {
    /// The stable reason token (dead-letter subject suffix).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::InvalidUtf8 { .. } => "invalid_utf8",
            Error::TooDeep { .. } => "too_deep",
            Error::InvalidJson { .. } => "invalid_json",
            Error::NotObject { .. } => "not_object",
            Error::MissingKind { .. } => "missing_kind",
            Error::InvalidKind { .. } => "invalid_kind",
            Error::ReservedKind => "reserved_kind",
            Error::InvalidField { .. } => "invalid_field",
            Error::UnknownField { .. } => "unknown_field",
            Error::NulCharacter { .. } => "nul_character",
        }
    }
}

/// True for a valid kind: dotted lowercase tokens.
pub fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_FIELD_LEN
        && kind.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Nesting depth of a JSON text, counted without parsing (so that a hostile
/// payload cannot exhaust the stack); strings are skipped.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parse a payload into a normalized event (native envelope or CloudEvents 1.0 structured JSON).
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Event, Error> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    // Most events are native ones with the usual members: read in place.
    let event = match fast_native(text, limits) {
        Some(event) => event?,
        None => parse_tree(text, limits)?,
    };
    // JSON can carry U+0000 only escaped (a raw NUL byte is not valid JSON),
    // so text without the escape needs no walk. The envelope's own strings
    // refuse control characters already; `data` and extensions are free-form.
    if text.contains("\\u0000") {
        let found = event
            .data
            .iter()
            .find_map(|(k, v)| nul_in(k, v, "data"))
            .or_else(|| {
                event
                    .extensions
                    .iter()
                    .find_map(|(k, v)| nul_in(k, v, "extensions"))
            });
        if let Some(path) = found {
            return Err(Error::NulCharacter { path });
        }
    }
    Ok(event)
}

/// The path of the first key or string under `key` that holds U+0000.
fn nul_in(key: &str, value: &Value, parent: &str) -> Option<String> {
    let here = format!("{parent}.{key}");
    if key.contains('\0') {
        return Some(here);
    }
    match value {
        Value::String(s) => s.contains('\0').then_some(here),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(&i.to_string(), v, &here)),
        Value::Object(members) => members.iter().find_map(|(k, v)| nul_in(k, v, &here)),
        _ => None,
    }
}

/// The general path: the whole payload as a JSON tree, then normalized.
fn parse_tree(text: &str, limits: Limits) -> Result<Event, Error> {
    let bytes = text.as_bytes();
    // serde_json refuses nesting past 128 levels itself, so parsing cannot
    // exhaust the stack; the depth limit is checked on the parsed tree, which
    // is much cheaper than a scan of the text. A payload that fails to parse
    // is scanned, so one nested too deep is reported as such, parsable or not.
    let too_deep = Error::TooDeep {
        limit: limits.max_depth,
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) if json_depth(bytes) > limits.max_depth => return Err(too_deep),
        Err(e) => {
            return Err(Error::InvalidJson {
                message: strip_position(&e.to_string()),
                line: e.line(),
                column: e.column(),
            });
        }
    };
    if value_depth(&value) > limits.max_depth {
        return Err(too_deep);
    }
    from_value(value)
}

/// The members a native event may have, read straight into place: no tree
/// is built for the envelope itself, only for `data`. Anything else (another
/// member, a member of another type, a member twice, CloudEvents, text that
/// is not JSON) is left to the general path, which also words every error,
/// so both paths accept and refuse exactly the same payloads.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Native {
    id: Option<String>,
    kind: Option<String>,
    source: Option<String>,
    host: Option<String>,
    time: Option<String>,
    severity: Option<String>,
    data: Option<Value>,
}

/// A native event parsed by [`Native`]; `None` to take the general path.
fn fast_native(text: &str, limits: Limits) -> Option<Result<Event, Error>> {
    // A struct also deserializes from a JSON array: only objects come here.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let native: Native = serde_json::from_str(text).ok()?;
    // The document's depth: the envelope, plus what `data` nests.
    let depth = 1 + native.data.as_ref().map_or(0, value_depth);
    if depth > limits.max_depth {
        return Some(Err(Error::TooDeep {
            limit: limits.max_depth,
        }));
    }
    let kind = native.kind?;
    // Checked in the order `from_value` checks them, with the same checks.
    let event = (|| {
        Ok(Event {
            id: checked_id("id", native.id)?,
            kind: check_kind(kind)?,
            source: checked_short("source", native.source)?,
            host: checked_short("host", native.host)?,
            time: checked_time("time", native.time)?,
            severity: checked_short("severity", native.severity)?,
            data: checked_data("data", native.data)?,
            extensions: Map::new(),
        })
    })();
    Some(event)
}

/// Nesting depth of a parsed value, counted as [`json_depth`] counts it. Only
/// for values serde_json parsed (at most 128 levels, so the recursion is bounded).
fn value_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Normalize an already-parsed JSON value (limits are the caller's business).
pub fn from_value(value: Value) -> Result<Event, Error> {
    let Value::Object(mut obj) = value else {
        return Err(Error::NotObject {
            found: crate::condition::type_name(&value),
        });
    };
    if obj.contains_key("specversion") {
        return from_cloudevent(obj);
    }
    let kind = take_string(&mut obj, "kind")?.ok_or(Error::MissingKind { hint: "" })?;
    let event = Event {
        id: take_id(&mut obj, "id")?,
        kind: check_kind(kind)?,
        source: take_short(&mut obj, "source")?,
        host: take_short(&mut obj, "host")?,
        time: take_time(&mut obj, "time")?,
        severity: take_short(&mut obj, "severity")?,
        data: take_data(&mut obj, "data")?,
        extensions: Map::new(),
    };
    if let Some(field) = obj.keys().next() {
        return Err(Error::UnknownField {
            field: field.clone(),
        });
    }
    Ok(event)
}

fn from_cloudevent(mut obj: Map<String, Value>) -> Result<Event, Error> {
    let version = take_string(&mut obj, "specversion")?.unwrap_or_default();
    if version != "1.0" {
        return Err(Error::InvalidField {
            field: "specversion".into(),
            message: format!("CloudEvents `{version}` is not supported; use 1.0"),
        });
    }
    if obj.contains_key("data_base64") {
        return Err(Error::InvalidField {
            field: "data_base64".into(),
            message: "binary CloudEvents data is not supported; send JSON `data`".into(),
        });
    }
    let kind = take_string(&mut obj, "type")?.ok_or(Error::MissingKind {
        hint: " (CloudEvents `type`)",
    })?;
    let subject = take_short(&mut obj, "subject")?;
    let host_ext = take_short(&mut obj, "host")?;
    if let Some(ct) = take_string(&mut obj, "datacontenttype")?
        && !ct.starts_with("application/json")
        && !ct.ends_with("+json")
    {
        return Err(Error::InvalidField {
            field: "datacontenttype".into(),
            message: format!("`{ct}` is not JSON"),
        });
    }
    obj.remove("dataschema");
    let mut event = Event {
        id: take_id(&mut obj, "id")?,
        kind: check_kind(kind)?,
        source: take_short(&mut obj, "source")?,
        host: host_ext.clone().or_else(|| subject.clone()),
        time: take_time(&mut obj, "time")?,
        severity: take_short(&mut obj, "severity")?,
        data: take_data(&mut obj, "data")?,
        extensions: Map::new(),
    };
    // With a `host` extension, `subject` is not the host: keep it visible.
    if let (Some(_), Some(subject)) = (host_ext, subject) {
        event
            .extensions
            .insert("subject".into(), Value::String(subject));
    }
    event.extensions.extend(obj);
    Ok(event)
}

fn check_kind(kind: String) -> Result<String, Error> {
    if kind == RESERVED_KIND {
        return Err(Error::ReservedKind);
    }
    if !is_valid_kind(&kind) {
        return Err(Error::InvalidKind { kind });
    }
    Ok(kind)
}

fn take_string(obj: &mut Map<String, Value>, field: &str) -> Result<Option<String>, Error> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::InvalidField {
            field: field.into(),
            message: format!(
                "expected a string, found a {}",
                crate::condition::type_name(&other)
            ),
        }),
    }
}

fn take_short(obj: &mut Map<String, Value>, field: &str) -> Result<Option<String>, Error> {
    checked_short(field, take_string(obj, field)?)
}

/// A short string member: bounded, no control characters.
fn checked_short(field: &str, s: Option<String>) -> Result<Option<String>, Error> {
    if let Some(s) = &s {
        if s.len() > MAX_FIELD_LEN {
            return Err(Error::InvalidField {
                field: field.into(),
                message: format!("longer than {MAX_FIELD_LEN} bytes"),
            });
        }
        if s.chars().any(char::is_control) {
            return Err(Error::InvalidField {
                field: field.into(),
                message: "contains control characters".into(),
            });
        }
    }
    Ok(s)
}

fn take_id(obj: &mut Map<String, Value>, field: &str) -> Result<Option<String>, Error> {
    checked_id(field, take_string(obj, field)?)
}

fn checked_id(field: &str, id: Option<String>) -> Result<Option<String>, Error> {
    let id = checked_short(field, id)?;
    if id.as_deref() == Some("") {
        return Err(Error::InvalidField {
            field: field.into(),
            message: "is empty; omit it to have one derived from the delivery".into(),
        });
    }
    Ok(id)
}

fn take_time(obj: &mut Map<String, Value>, field: &str) -> Result<Option<DateTime<Utc>>, Error> {
    checked_time(field, take_string(obj, field)?)
}

fn checked_time(field: &str, t: Option<String>) -> Result<Option<DateTime<Utc>>, Error> {
    t.map(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| Error::InvalidField {
                field: field.into(),
                message: format!("`{t}` is not an RFC 3339 time: {e}"),
            })
    })
    .transpose()
}

fn take_data(obj: &mut Map<String, Value>, field: &str) -> Result<Map<String, Value>, Error> {
    checked_data(field, obj.remove(field))
}

fn checked_data(field: &str, data: Option<Value>) -> Result<Map<String, Value>, Error> {
    match data {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(Error::InvalidField {
            field: field.into(),
            message: format!(
                "expected a JSON object, found a {}",
                crate::condition::type_name(&other)
            ),
        }),
    }
}

/// Namespace for delivery-derived event ids (UUIDv5).
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_4d0e_8a53_4b5e_9c1a_5e7d_2b3c_9f10);

/// The id of an event that arrived without one: a UUIDv5 of its delivery
/// identity, so every redelivery of one message gets the same id.
pub fn delivery_event_id(stream: &str, stream_created: DateTime<Utc>, stream_seq: u64) -> String {
    let name = format!(
        "{stream}\n{}\n{stream_seq}",
        stream_created.to_rfc3339_opts(SecondsFormat::Nanos, true)
    );
    Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes()).to_string()
}

impl Event {
    /// The normalized envelope that conditions and placeholders address.
    /// `received_at` is the intake time, used when the producer sent no `time`.
    pub fn to_envelope(&self, received_at: DateTime<Utc>) -> Value {
        self.clone().into_envelope(received_at)
    }

    /// [`Event::to_envelope`], taking the event apart rather than copying it.
    pub fn into_envelope(self, received_at: DateTime<Utc>) -> Value {
        let mut obj = Map::new();
        if let Some(id) = self.id {
            obj.insert("id".into(), id.into());
        }
        obj.insert("kind".into(), self.kind.into());
        for (k, v) in [
            ("source", self.source),
            ("host", self.host),
            ("severity", self.severity),
        ] {
            if let Some(v) = v {
                obj.insert(k.into(), v.into());
            }
        }
        let time = self.time.unwrap_or(received_at);
        obj.insert(
            "time".into(),
            time.to_rfc3339_opts(SecondsFormat::AutoSi, true).into(),
        );
        obj.insert(
            "received_at".into(),
            received_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
                .into(),
        );
        obj.insert("data".into(), Value::Object(self.data));
        if !self.extensions.is_empty() {
            obj.insert("extensions".into(), Value::Object(self.extensions));
        }
        Value::Object(obj)
    }
}

#[cfg(test)]
mod tests;
