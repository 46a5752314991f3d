//! Validation findings: `{severity, code, message, path}`.
//!
//! Every problem switchyard reports about a document is a [`Finding`]. `path` is
//! a JSON pointer (RFC 6901) into the submitted document; `code` is a stable
//! dotted identifier listed in `docs/FINDINGS.md`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How serious a finding is, and which gate it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A note: no-op, suppressed, de-duplicated.
    Info,
    /// Saved and enabled, but worth a look.
    Warn,
    /// A dry-run or preflight failure: enable is refused.
    Error,
    /// A parse, schema or compile failure, or a mismatch with the installed drivers: save is refused.
    Blocker,
}

impl Severity {
    /// The lowercase name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Blocker => "blocker",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which HTTP class a blocker belongs to: the spec itself (400) or the installed drivers (422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockerClass {
    /// Parse, schema or compile failure.
    Spec,
    /// Mismatch with the installed drivers (`driver.*`, `capability.*`, `verb.*`).
    Drivers,
}

/// One problem (or note) about a submitted document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: String,
    pub message: String,
    /// JSON pointer into the submitted document; `""` is the whole document.
    pub path: String,
    /// 1-based line and column, when the finding comes from the parser of the file format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

impl Finding {
    /// A finding without a source position.
    pub fn new(
        severity: Severity,
        code: &str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity,
            code: code.to_owned(),
            message: message.into(),
            path: path.into(),
            line: None,
            column: None,
        }
    }

    /// A blocker finding.
    pub fn blocker(code: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Blocker, code, path, message)
    }

    /// A warn finding.
    pub fn warn(code: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warn, code, path, message)
    }

    /// Attach a 1-based source position.
    pub fn at(mut self, line: u64, column: u64) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// The HTTP class of a blocker, decided by its code family.
    pub fn blocker_class(&self) -> Option<BlockerClass> {
        if self.severity != Severity::Blocker {
            return None;
        }
        let family = self.code.split('.').next().unwrap_or("");
        Some(match family {
            "driver" | "capability" | "verb" => BlockerClass::Drivers,
            _ => BlockerClass::Spec,
        })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{} {} {}", self.severity, self.code, path)?;
        if let (Some(line), Some(col)) = (self.line, self.column) {
            write!(f, " (line {line}, column {col})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// True when any finding is a blocker.
pub fn has_blocker(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Blocker)
}

/// Stable finding codes. `docs/FINDINGS.md` documents each one; a test keeps the two in step.
pub mod codes {
    pub const PARSE_SYNTAX: &str = "parse.syntax";
    pub const PARSE_EMPTY: &str = "parse.empty";
    pub const SCHEMA_REQUIRED: &str = "schema.required";
    pub const SCHEMA_UNKNOWN_FIELD: &str = "schema.unknown_field";
    pub const SCHEMA_TYPE: &str = "schema.type";
    pub const SCHEMA_ENUM: &str = "schema.enum";
    pub const SCHEMA_MIN_ITEMS: &str = "schema.min_items";
    pub const SCHEMA_RANGE: &str = "schema.range";
    pub const SPEC_VERSION: &str = "spec.version";
    pub const NAME_INVALID: &str = "name.invalid";
    pub const NAME_UUID: &str = "name.uuid_shaped";
    pub const TRIGGER_KIND: &str = "trigger.kind";
    pub const TRIGGER_RESERVED_KIND: &str = "trigger.reserved_kind";
    pub const TRIGGER_SHAPE: &str = "trigger.shape";
    pub const TRIGGER_WITHIN_REQUIRED: &str = "trigger.within_required";
    pub const TRIGGER_WITHIN_IGNORED: &str = "trigger.within_ignored";
    pub const TRIGGER_SCHEDULE_IN_ALL: &str = "trigger.schedule_in_all";
    pub const TRIGGER_DUPLICATE: &str = "trigger.duplicate";
    pub const CRON_SYNTAX: &str = "cron.syntax";
    pub const CRON_TIMEZONE: &str = "cron.timezone";
    pub const DURATION_SYNTAX: &str = "duration.syntax";
    pub const DURATION_RANGE: &str = "duration.range";
    pub const CONDITION_SHAPE: &str = "condition.shape";
    pub const CONDITION_OP: &str = "condition.op";
    pub const CONDITION_VALUE_MISSING: &str = "condition.value_missing";
    pub const CONDITION_VALUE_UNEXPECTED: &str = "condition.value_unexpected";
    pub const CONDITION_VALUE_TYPE: &str = "condition.value_type";
    pub const CONDITION_REGEX: &str = "condition.regex";
    pub const CONDITION_DEPTH: &str = "condition.depth";
    pub const JSONPATH_SYNTAX: &str = "jsonpath.syntax";
    pub const PLACEHOLDER_SYNTAX: &str = "placeholder.syntax";
    pub const SELECTOR_SYNTAX: &str = "selector.syntax";
    pub const SELECTOR_RANGE: &str = "selector.range";
    pub const SELECTOR_TOO_LARGE: &str = "selector.too_large";
    pub const SELECTOR_ONLY_EXCLUSIONS: &str = "selector.only_exclusions";
    pub const SELECTOR_REGEX: &str = "selector.regex";
    pub const ACTION_CAPABILITY: &str = "action.capability";
    pub const ACTION_VERB: &str = "action.verb";
    pub const ACTION_DRIVER: &str = "action.driver";
    pub const WINDOW_GROUP_BY_UNUSED: &str = "window.group_by_unused";
    pub const DRIVER_UNKNOWN: &str = "driver.unknown";
    pub const DRIVER_PARAMS_INVALID: &str = "driver.params_invalid";
    pub const CAPABILITY_UNKNOWN: &str = "capability.unknown";
    pub const CAPABILITY_TARGET_TYPE: &str = "capability.target_type";
    pub const VERB_UNKNOWN: &str = "verb.unknown";
    pub const VERB_NOT_IDEMPOTENT: &str = "verb.not_idempotent_without_window";
    pub const DRYRUN_NO_MATCH: &str = "dryrun.no_match";
    pub const DRYRUN_STALE_EVENT: &str = "dryrun.stale_event";
    pub const DRYRUN_NO_TARGETS: &str = "dryrun.no_targets";
    pub const DRYRUN_TARGET_NOT_FOUND: &str = "dryrun.target_not_found";
    pub const DRYRUN_PLACEHOLDER: &str = "dryrun.placeholder_unresolved";
    pub const DRYRUN_NO_DRIVER: &str = "dryrun.no_driver";
    pub const DRYRUN_DRIVER_REFUSED: &str = "dryrun.driver_refused";
    pub const DRYRUN_DRIVER_WARNING: &str = "dryrun.driver_warning";
    pub const DRYRUN_DRIVER_UNREACHABLE: &str = "dryrun.driver_unreachable";
    pub const DRYRUN_STALE_INVENTORY: &str = "dryrun.stale_inventory";
    pub const DRYRUN_SUPPRESSED: &str = "dryrun.suppressed";
    pub const DRYRUN_DEDUPLICATED: &str = "dryrun.deduplicated";

    /// Codes a dry-run reports (about a sample event, the inventory and the
    /// drivers' own dry-runs), tested through the API.
    pub const DRY_RUN_CHECKS: &[&str] = &[
        DRYRUN_NO_MATCH,
        DRYRUN_STALE_EVENT,
        DRYRUN_NO_TARGETS,
        DRYRUN_TARGET_NOT_FOUND,
        DRYRUN_PLACEHOLDER,
        DRYRUN_NO_DRIVER,
        DRYRUN_DRIVER_REFUSED,
        DRYRUN_DRIVER_WARNING,
        DRYRUN_DRIVER_UNREACHABLE,
        DRYRUN_STALE_INVENTORY,
        DRYRUN_SUPPRESSED,
        DRYRUN_DEDUPLICATED,
    ];

    /// Codes reported by a [`DriverCatalog`](crate::catalog::DriverCatalog), tested with it.
    pub const DRIVER_CHECKS: &[&str] = &[
        DRIVER_UNKNOWN,
        DRIVER_PARAMS_INVALID,
        CAPABILITY_UNKNOWN,
        CAPABILITY_TARGET_TYPE,
        VERB_UNKNOWN,
        VERB_NOT_IDEMPOTENT,
    ];

    /// Every code, for the documentation check.
    pub const ALL: &[&str] = &[
        PARSE_SYNTAX,
        PARSE_EMPTY,
        SCHEMA_REQUIRED,
        SCHEMA_UNKNOWN_FIELD,
        SCHEMA_TYPE,
        SCHEMA_ENUM,
        SCHEMA_MIN_ITEMS,
        SCHEMA_RANGE,
        SPEC_VERSION,
        NAME_INVALID,
        NAME_UUID,
        TRIGGER_KIND,
        TRIGGER_RESERVED_KIND,
        TRIGGER_SHAPE,
        TRIGGER_WITHIN_REQUIRED,
        TRIGGER_WITHIN_IGNORED,
        TRIGGER_SCHEDULE_IN_ALL,
        TRIGGER_DUPLICATE,
        CRON_SYNTAX,
        CRON_TIMEZONE,
        DURATION_SYNTAX,
        DURATION_RANGE,
        CONDITION_SHAPE,
        CONDITION_OP,
        CONDITION_VALUE_MISSING,
        CONDITION_VALUE_UNEXPECTED,
        CONDITION_VALUE_TYPE,
        CONDITION_REGEX,
        CONDITION_DEPTH,
        JSONPATH_SYNTAX,
        PLACEHOLDER_SYNTAX,
        SELECTOR_SYNTAX,
        SELECTOR_RANGE,
        SELECTOR_TOO_LARGE,
        SELECTOR_ONLY_EXCLUSIONS,
        SELECTOR_REGEX,
        ACTION_CAPABILITY,
        ACTION_VERB,
        ACTION_DRIVER,
        WINDOW_GROUP_BY_UNUSED,
        DRIVER_UNKNOWN,
        DRIVER_PARAMS_INVALID,
        CAPABILITY_UNKNOWN,
        CAPABILITY_TARGET_TYPE,
        VERB_UNKNOWN,
        VERB_NOT_IDEMPOTENT,
        DRYRUN_NO_MATCH,
        DRYRUN_STALE_EVENT,
        DRYRUN_NO_TARGETS,
        DRYRUN_TARGET_NOT_FOUND,
        DRYRUN_PLACEHOLDER,
        DRYRUN_NO_DRIVER,
        DRYRUN_DRIVER_REFUSED,
        DRYRUN_DRIVER_WARNING,
        DRYRUN_DRIVER_UNREACHABLE,
        DRYRUN_STALE_INVENTORY,
        DRYRUN_SUPPRESSED,
        DRYRUN_DEDUPLICATED,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocker_class_follows_the_code_family() {
        let spec = Finding::blocker(codes::SELECTOR_SYNTAX, "/targets/0/selector", "x");
        assert_eq!(spec.blocker_class(), Some(BlockerClass::Spec));
        for code in ["driver.unknown", "capability.unknown", "verb.unknown"] {
            assert_eq!(
                Finding::blocker(code, "", "x").blocker_class(),
                Some(BlockerClass::Drivers),
                "{code}"
            );
        }
        assert_eq!(
            Finding::warn(codes::TRIGGER_DUPLICATE, "", "x").blocker_class(),
            None
        );
    }

    #[test]
    fn display_is_one_line_with_position() {
        let f = Finding::blocker(codes::PARSE_SYNTAX, "", "invalid YAML: x").at(3, 6);
        assert_eq!(
            f.to_string(),
            "blocker parse.syntax / (line 3, column 6): invalid YAML: x"
        );
    }
}
