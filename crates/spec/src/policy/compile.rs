//! Walk a policy document (already parsed into JSON) into findings and IR.

use super::walk::Walk;
use crate::condition::{ConditionIr, LeafIr, Op, compile_regex, type_name};
use crate::event::{RESERVED_KIND, is_valid_kind};
use crate::finding::codes;
use crate::ir::{
    ActionIr, IR_VERSION, Logic, OnError, PolicyIr, TargetIr, TriggerGroupIr, TriggerIr, WindowsIr,
};
use crate::jsonpath::JsonPath;
use crate::placeholder::Template;
use crate::pointer::Pointer;
use crate::{canonical, selector};
use serde_json::{Map, Value};
use std::str::FromStr;

const TOP: &[&str] = &[
    "version",
    "name",
    "description",
    "enabled",
    "priority",
    "trigger_group",
    "conditions",
    "targets",
    "actions",
    "windows",
];
const MAX_CONDITION_DEPTH: usize = 16;
const DEFAULT_PRIORITY: i64 = 100;
const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1_000_000..=1_000_000;

/// Walk `doc` and build the IR; the IR is `None` when any blocker was found.
pub(crate) fn compile(doc: &Value, w: &mut Walk) -> Option<PolicyIr> {
    let root = Pointer::root();
    let map = w.object(doc, &root, "a policy", TOP)?;
    let blockers_before = crate::finding::has_blocker(&w.findings);

    if let Some(v) = w.required(map, &root, "version", "the policy") {
        let at = root.key("version");
        if let Some(n) = w.integer(v, &at)
            && n != 1
        {
            w.blocker(
                codes::SPEC_VERSION,
                &at,
                format!("spec version {n} is not supported; this switchyard reads version 1"),
            );
        }
    }
    let name = w
        .required(map, &root, "name", "the policy")
        .and_then(|v| w.string(v, &root.key("name")))
        .map(str::to_owned);
    if let Some(name) = &name {
        check_name(name, &root.key("name"), w);
    }
    let description = opt(map, "description")
        .and_then(|v| w.string(v, &root.key("description")).map(str::to_owned));
    let enabled = opt(map, "enabled")
        .and_then(|v| w.boolean(v, &root.key("enabled")))
        .unwrap_or(false);
    let priority = match opt(map, "priority") {
        Some(v) => {
            let at = root.key("priority");
            let p = w.integer(v, &at);
            if let Some(p) = p
                && !PRIORITY_RANGE.contains(&p)
            {
                w.blocker(
                    codes::SCHEMA_RANGE,
                    &at,
                    format!("priority {p} is outside -1000000..=1000000"),
                );
            }
            p.unwrap_or(DEFAULT_PRIORITY)
        }
        None => DEFAULT_PRIORITY,
    };
    let trigger_group = w
        .required(map, &root, "trigger_group", "the policy")
        .and_then(|v| trigger_group(v, &root.key("trigger_group"), w));
    let conditions = match opt(map, "conditions") {
        Some(v) => condition_list(v, &root.key("conditions"), 0, w),
        None => Vec::new(),
    };
    let targets = w
        .required(map, &root, "targets", "the policy")
        .and_then(|v| w.array(v, &root.key("targets"), true, "`targets`"))
        .map(|items| {
            items
                .iter()
                .enumerate()
                .filter_map(|(i, t)| target(t, &root.key("targets").index(i), w))
                .collect::<Vec<_>>()
        });
    let actions = w
        .required(map, &root, "actions", "the policy")
        .and_then(|v| w.array(v, &root.key("actions"), true, "`actions`"))
        .map(|items| {
            items
                .iter()
                .enumerate()
                .filter_map(|(i, a)| action(a, &root.key("actions").index(i), w))
                .collect::<Vec<_>>()
        });
    let windows = match opt(map, "windows") {
        Some(v) => windows(v, &root.key("windows"), w),
        None => Some(WindowsIr {
            suppression_ms: 0,
            idempotency_ms: 0,
            group_by: Vec::new(),
            max_event_age_ms: None,
        }),
    };
    if let (Some(tg), Some(win)) = (&trigger_group, &windows)
        && !win.group_by.is_empty()
        && win.suppression_ms == 0
        && tg.logic == Logic::Any
    {
        w.warn(
            codes::WINDOW_GROUP_BY_UNUSED,
            &root.key("windows").key("group_by"),
            "`group_by` keys suppression and ALL correlation, and this policy uses neither",
        );
    }

    if blockers_before || crate::finding::has_blocker(&w.findings) {
        return None;
    }
    Some(PolicyIr {
        ir_version: IR_VERSION,
        name: name?,
        description,
        enabled,
        priority,
        trigger_group: trigger_group?,
        conditions,
        targets: targets?,
        actions: actions?,
        windows: windows?,
    })
}

fn opt<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key)
}

/// A name is `^[a-z0-9][a-z0-9-]{0,62}$` and not shaped like a UUID.
pub fn name_problem(name: &str) -> Option<(&'static str, String)> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Some((
            codes::NAME_INVALID,
            format!(
                "`{name}` is not a valid name: 1–63 lowercase letters, digits and `-`, starting with a letter or digit"
            ),
        ));
    }
    if uuid::Uuid::try_parse(name).is_ok() {
        return Some((
            codes::NAME_UUID,
            format!("`{name}` is shaped like a UUID; policy ids are UUIDs, so names may not be"),
        ));
    }
    None
}

fn check_name(name: &str, at: &Pointer, w: &mut Walk) {
    if let Some((code, message)) = name_problem(name) {
        w.blocker(code, at, message);
    }
}

fn trigger_group(v: &Value, at: &Pointer, w: &mut Walk) -> Option<TriggerGroupIr> {
    let map = w.object(v, at, "`trigger_group`", &["logic", "within", "triggers"])?;
    let logic = match opt(map, "logic") {
        None => Some(Logic::Any),
        Some(Value::String(s)) if s == "ANY" => Some(Logic::Any),
        Some(Value::String(s)) if s == "ALL" => Some(Logic::All),
        Some(other) => {
            w.blocker(
                codes::SCHEMA_ENUM,
                &at.key("logic"),
                format!("`logic` is ANY or ALL, not {}", short(other)),
            );
            None
        }
    };
    let within = opt(map, "within").and_then(|v| w.duration(v, &at.key("within")));
    match (logic, within) {
        (Some(Logic::All), None) if opt(map, "within").is_none() => {
            w.blocker(
                codes::TRIGGER_WITHIN_REQUIRED,
                at,
                "`logic: ALL` needs `within`: the window in which every trigger must be seen",
            );
        }
        (Some(Logic::All), Some(0)) => {
            w.blocker(
                codes::DURATION_RANGE,
                &at.key("within"),
                "`within` must be longer than 0",
            );
        }
        (Some(Logic::Any), Some(_)) => {
            w.warn(
                codes::TRIGGER_WITHIN_IGNORED,
                &at.key("within"),
                "`within` only applies to `logic: ALL`; it is ignored",
            );
        }
        _ => {}
    }
    let triggers_at = at.key("triggers");
    let items = w
        .required(map, at, "triggers", "`trigger_group`")
        .and_then(|v| w.array(v, &triggers_at, true, "`triggers`"))?;
    let mut triggers = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (i, t) in items.iter().enumerate() {
        let t_at = triggers_at.index(i);
        if let Some(tr) = trigger(t, &t_at, w) {
            if logic == Some(Logic::All) && matches!(tr, TriggerIr::Schedule { .. }) {
                w.blocker(
                    codes::TRIGGER_SCHEDULE_IN_ALL,
                    &t_at,
                    "a schedule trigger cannot take part in `logic: ALL`; use it in its own policy",
                );
            }
            let key = canonical::to_canonical_string(
                &serde_json::to_value(&tr).unwrap_or(serde_json::Value::Null),
            );
            if seen.contains(&key) {
                w.warn(
                    codes::TRIGGER_DUPLICATE,
                    &t_at,
                    "this trigger repeats an earlier one",
                );
            }
            seen.push(key);
            triggers.push(tr);
        }
    }
    if triggers.len() != items.len() {
        return None;
    }
    Some(TriggerGroupIr {
        logic: logic?,
        within_ms: if logic == Some(Logic::All) {
            within
        } else {
            None
        },
        triggers,
    })
}

/// A kind pattern: dotted tokens of `[a-z0-9_]`, `*` for one token, `>` (last) for the rest.
pub fn kind_pattern_problem(pattern: &str) -> Option<String> {
    if pattern == RESERVED_KIND {
        return None; // reported separately
    }
    let tokens: Vec<&str> = pattern.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        let ok = *t == "*"
            || (*t == ">" && i == tokens.len() - 1)
            || (!t.is_empty() && is_valid_kind(t));
        if !ok {
            return Some(format!(
                "`{pattern}` is not a kind or pattern: dotted tokens of lowercase letters, digits and `_`, `*` for one token, `>` (last) for the rest"
            ));
        }
    }
    None
}

fn trigger(v: &Value, at: &Pointer, w: &mut Walk) -> Option<TriggerIr> {
    let map = w.object(v, at, "a trigger", &["kind", "where", "schedule", "tz"])?;
    match (opt(map, "kind"), opt(map, "schedule")) {
        (Some(kind), None) => {
            if map.contains_key("tz") {
                w.blocker(
                    codes::TRIGGER_SHAPE,
                    &at.key("tz"),
                    "`tz` belongs to a `schedule` trigger, not a `kind` trigger",
                );
            }
            let kind_at = at.key("kind");
            let kind = w.string(kind, &kind_at)?;
            if kind == RESERVED_KIND {
                w.blocker(
                    codes::TRIGGER_RESERVED_KIND,
                    &kind_at,
                    "the kind `schedule` is reserved; write a `schedule:` trigger with a cron expression",
                );
                return None;
            }
            if let Some(problem) = kind_pattern_problem(kind) {
                w.blocker(codes::TRIGGER_KIND, &kind_at, problem);
                return None;
            }
            let where_ = match opt(map, "where") {
                Some(v) => condition_list(v, &at.key("where"), 0, w),
                None => Vec::new(),
            };
            Some(TriggerIr::Kind {
                kind: kind.to_owned(),
                where_,
            })
        }
        (None, Some(schedule)) => {
            if map.contains_key("where") {
                w.blocker(
                    codes::TRIGGER_SHAPE,
                    &at.key("where"),
                    "`where` filters events; a `schedule` trigger has none (use `conditions`)",
                );
            }
            let s_at = at.key("schedule");
            let schedule = normalize_cron(w.string(schedule, &s_at)?, &s_at, w);
            let tz = match opt(map, "tz") {
                Some(v) => {
                    let tz_at = at.key("tz");
                    let tz = w.string(v, &tz_at)?;
                    if chrono_tz::Tz::from_str(tz).is_err() {
                        w.blocker(
                            codes::CRON_TIMEZONE,
                            &tz_at,
                            format!("`{tz}` is not an IANA time zone name such as `Europe/Berlin`"),
                        );
                        return None;
                    }
                    tz.to_owned()
                }
                None => "UTC".to_owned(),
            };
            Some(TriggerIr::Schedule {
                schedule: schedule?,
                tz,
            })
        }
        (Some(_), Some(_)) => {
            w.blocker(
                codes::TRIGGER_SHAPE,
                at,
                "a trigger has either `kind` or `schedule`, not both",
            );
            None
        }
        (None, None) => {
            w.blocker(
                codes::TRIGGER_SHAPE,
                at,
                "a trigger needs `kind` (an event kind or pattern) or `schedule` (cron)",
            );
            None
        }
    }
}

fn normalize_cron(text: &str, at: &Pointer, w: &mut Walk) -> Option<String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        w.blocker(
            codes::CRON_SYNTAX,
            at,
            format!(
                "`{text}` has {} fields; a schedule has exactly 5 (minute hour day-of-month month day-of-week)",
                fields.len()
            ),
        );
        return None;
    }
    let normalized = fields.join(" ");
    if let Err(e) = croner::Cron::from_str(&normalized) {
        w.blocker(codes::CRON_SYNTAX, at, format!("`{text}`: {e}"));
        return None;
    }
    Some(normalized)
}

fn condition_list(v: &Value, at: &Pointer, depth: usize, w: &mut Walk) -> Vec<ConditionIr> {
    if depth > MAX_CONDITION_DEPTH {
        w.blocker(
            codes::CONDITION_DEPTH,
            at,
            format!("conditions nest deeper than {MAX_CONDITION_DEPTH} levels"),
        );
        return Vec::new();
    }
    let Some(items) = w.array(v, at, false, "a condition list") else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, c)| condition(c, &at.index(i), depth, w))
        .collect()
}

fn condition(v: &Value, at: &Pointer, depth: usize, w: &mut Walk) -> Option<ConditionIr> {
    let Value::Object(map) = v else {
        w.type_error(at, "object", v);
        return None;
    };
    let nested: Vec<&str> = ["all", "any", "not"]
        .into_iter()
        .filter(|k| map.contains_key(*k))
        .collect();
    if let [key] = nested.as_slice() {
        if map.len() != 1 {
            w.blocker(
                codes::CONDITION_SHAPE,
                at,
                format!("`{key}` stands alone in its condition; put other tests inside its list"),
            );
            return None;
        }
        let list = condition_list(&map[*key], &at.key(key), depth + 1, w);
        return Some(match *key {
            "all" => ConditionIr::All { all: list },
            "any" => ConditionIr::Any { any: list },
            _ => ConditionIr::Not { not: list },
        });
    }
    if nested.len() > 1 {
        w.blocker(
            codes::CONDITION_SHAPE,
            at,
            "a condition holds one of `all`, `any` or `not`",
        );
        return None;
    }
    let map = w.object(v, at, "a condition", &["path", "op", "value"])?;
    let path = w
        .required(map, at, "path", "the condition")
        .and_then(|p| w.string(p, &at.key("path")))
        .and_then(|p| match JsonPath::parse(p) {
            Ok(_) => Some(p.to_owned()),
            Err(e) => {
                w.blocker(codes::JSONPATH_SYNTAX, &at.key("path"), e);
                None
            }
        });
    let op_at = at.key("op");
    let op = w
        .required(map, at, "op", "the condition")
        .and_then(|o| w.string(o, &op_at))
        .and_then(|o| {
            let op = Op::from_name(o);
            if op.is_none() {
                let names: Vec<&str> = Op::ALL.iter().map(|o| o.as_str()).collect();
                w.blocker(
                    codes::CONDITION_OP,
                    &op_at,
                    format!(
                        "unknown operator `{o}`; expected one of {}",
                        names.join(", ")
                    ),
                );
            }
            op
        })?;
    let value = leaf_value(op, map.get("value"), at, w)?;
    Some(ConditionIr::Leaf(LeafIr {
        path: path?,
        op,
        value,
    }))
}

/// Check the value an operator takes and normalize its numbers.
fn leaf_value(op: Op, value: Option<&Value>, at: &Pointer, w: &mut Walk) -> Option<Option<Value>> {
    let v_at = at.key("value");
    let Some(value) = value else {
        if op.takes_value() {
            w.blocker(
                codes::CONDITION_VALUE_MISSING,
                at,
                format!("operator `{}` needs a `value`", op.as_str()),
            );
            return None;
        }
        return Some(None);
    };
    let bad = |w: &mut Walk, want: &str| {
        w.blocker(
            codes::CONDITION_VALUE_TYPE,
            &v_at,
            format!(
                "operator `{}` takes {want}, found {}",
                op.as_str(),
                type_name(value)
            ),
        );
    };
    match op {
        Op::Exists | Op::Absent => {
            w.blocker(
                codes::CONDITION_VALUE_UNEXPECTED,
                &v_at,
                format!("operator `{}` takes no `value`", op.as_str()),
            );
            return None;
        }
        Op::In | Op::NotIn if !value.is_array() => {
            bad(w, "an array");
            return None;
        }
        Op::Lt | Op::Le | Op::Gt | Op::Ge if !(value.is_number() || value.is_string()) => {
            bad(w, "a number or a string");
            return None;
        }
        Op::StartsWith | Op::EndsWith if !value.is_string() => {
            bad(w, "a string");
            return None;
        }
        Op::Matches => match value.as_str() {
            None => {
                bad(w, "a string (a regex)");
                return None;
            }
            Some(pattern) => {
                if let Err(e) = compile_regex(pattern) {
                    w.blocker(
                        codes::CONDITION_REGEX,
                        &v_at,
                        format!("invalid regex `{pattern}`: {e}"),
                    );
                    return None;
                }
            }
        },
        _ => {}
    }
    let mut value = value.clone();
    canonical::normalize_numbers(&mut value);
    Some(Some(value))
}

fn target(v: &Value, at: &Pointer, w: &mut Walk) -> Option<TargetIr> {
    let map = w.object(v, at, "a target", &["selector", "dynamic_resolution"])?;
    let dynamic_resolution = opt(map, "dynamic_resolution")
        .and_then(|v| w.boolean(v, &at.key("dynamic_resolution")))
        .unwrap_or(false);
    let s_at = at.key("selector");
    let text = w
        .required(map, at, "selector", "the target")
        .and_then(|v| w.string(v, &s_at))?;
    match selector::parse(text) {
        Ok(sel) => Some(TargetIr {
            selector: sel.to_string(),
            dynamic_resolution,
            resolved_ids: sel.expand_text(),
        }),
        Err(e) => {
            w.blocker(
                e.code,
                &s_at,
                format!("`{text}` at byte {}: {}", e.offset, e.message),
            );
            None
        }
    }
}

fn is_capability_name(s: &str) -> bool {
    is_valid_kind(s)
}

fn is_simple_name(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
}

fn action(v: &Value, at: &Pointer, w: &mut Walk) -> Option<ActionIr> {
    let map = w.object(
        v,
        at,
        "an action",
        &[
            "capability",
            "verb",
            "driver",
            "params",
            "timeout",
            "on_error",
        ],
    )?;
    let capability = w
        .required(map, at, "capability", "the action")
        .and_then(|c| w.string(c, &at.key("capability")))
        .and_then(|c| {
            if is_capability_name(c) {
                Some(c.to_owned())
            } else {
                w.blocker(
                    codes::ACTION_CAPABILITY,
                    &at.key("capability"),
                    format!("`{c}` is not a capability name (dotted lowercase tokens such as `vm.power`)"),
                );
                None
            }
        });
    let verb = w
        .required(map, at, "verb", "the action")
        .and_then(|c| w.string(c, &at.key("verb")))
        .and_then(|c| {
            if is_simple_name(c, b"_") {
                Some(c.to_owned())
            } else {
                w.blocker(
                    codes::ACTION_VERB,
                    &at.key("verb"),
                    format!("`{c}` is not a verb name (lowercase letters, digits and `_`)"),
                );
                None
            }
        });
    let driver = match opt(map, "driver") {
        None => Some(None),
        Some(d) => w.string(d, &at.key("driver")).and_then(|d| {
            if is_simple_name(d, b"_-") {
                Some(Some(d.to_owned()))
            } else {
                w.blocker(
                    codes::ACTION_DRIVER,
                    &at.key("driver"),
                    format!("`{d}` is not a driver name (lowercase letters, digits, `_` and `-`)"),
                );
                None
            }
        }),
    };
    let params = match opt(map, "params") {
        None | Some(Value::Null) => Some(Value::Object(Map::new())),
        Some(p @ Value::Object(_)) => {
            check_placeholders(p, &at.key("params"), w);
            let mut p = p.clone();
            canonical::normalize_numbers(&mut p);
            Some(p)
        }
        Some(other) => {
            w.type_error(&at.key("params"), "object", other);
            None
        }
    };
    let timeout_ms = match opt(map, "timeout") {
        None => Some(None),
        Some(t) => {
            let t_at = at.key("timeout");
            match w.duration(t, &t_at) {
                Some(0) => {
                    w.blocker(
                        codes::DURATION_RANGE,
                        &t_at,
                        "`timeout` must be longer than 0",
                    );
                    None
                }
                Some(ms) => Some(Some(ms)),
                None => None,
            }
        }
    };
    let on_error = match opt(map, "on_error") {
        None => Some(OnError::Stop),
        Some(Value::String(s)) if s == "stop" => Some(OnError::Stop),
        Some(Value::String(s)) if s == "continue" => Some(OnError::Continue),
        Some(other) => {
            w.blocker(
                codes::SCHEMA_ENUM,
                &at.key("on_error"),
                format!("`on_error` is stop or continue, not {}", short(other)),
            );
            None
        }
    };
    Some(ActionIr {
        capability: capability?,
        verb: verb?,
        driver: driver?,
        params: params?,
        timeout_ms: timeout_ms?,
        on_error: on_error?,
    })
}

/// Every string in params may hold placeholders; check their syntax.
fn check_placeholders(v: &Value, at: &Pointer, w: &mut Walk) {
    match v {
        Value::String(s) => {
            if let Err(e) = Template::parse(s) {
                w.blocker(codes::PLACEHOLDER_SYNTAX, at, format!("`{s}`: {e}"));
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, x)| check_placeholders(x, &at.index(i), w)),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, x)| check_placeholders(x, &at.key(k), w)),
        _ => {}
    }
}

fn windows(v: &Value, at: &Pointer, w: &mut Walk) -> Option<WindowsIr> {
    let map = w.object(
        v,
        at,
        "`windows`",
        &["suppression", "idempotency", "group_by", "max_event_age"],
    )?;
    let mut ok = true;
    let mut dur = |w: &mut Walk, key: &str| -> Option<u64> {
        let v = opt(map, key)?;
        let d = w.duration(v, &at.key(key));
        ok &= d.is_some();
        d
    };
    let suppression_ms = dur(w, "suppression").unwrap_or(0);
    let idempotency_ms = dur(w, "idempotency").unwrap_or(0);
    let max_event_age_ms = dur(w, "max_event_age");
    if max_event_age_ms == Some(0) {
        w.blocker(
            codes::DURATION_RANGE,
            &at.key("max_event_age"),
            "`max_event_age` must be longer than 0",
        );
        ok = false;
    }
    let mut group_by = Vec::new();
    if let Some(g) = opt(map, "group_by") {
        let g_at = at.key("group_by");
        match w.array(g, &g_at, false, "`group_by`") {
            Some(items) => {
                for (i, p) in items.iter().enumerate() {
                    let p_at = g_at.index(i);
                    match w.string(p, &p_at) {
                        Some(p) => match JsonPath::parse(p) {
                            Ok(_) => group_by.push(p.to_owned()),
                            Err(e) => {
                                w.blocker(codes::JSONPATH_SYNTAX, &p_at, e);
                                ok = false;
                            }
                        },
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(WindowsIr {
        suppression_ms,
        idempotency_ms,
        group_by,
        max_event_age_ms,
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}
