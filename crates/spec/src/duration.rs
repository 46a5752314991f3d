//! Durations as policies write them: `250ms`, `30s`, `10m`, `1h`, `2d`, and
//! combinations in descending unit order (`1h30m`). `0` alone is zero.

use thiserror::Error;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("empty duration")]
    Empty,
    #[error("`{0}`: expected digits followed by a unit (ms, s, m, h, d), like `10m` or `1h30m`")]
    Syntax(String),
    #[error("`{text}`: unknown unit `{unit}`; use ms, s, m, h or d")]
    Unit { text: String, unit: String },
    #[error("`{0}`: units must appear once each, largest first (`1h30m`, not `30m1h`)")]
    Order(String),
    #[error("`{0}`: duration is too large")]
    Overflow(String),
}

const UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parse a duration into milliseconds.
pub fn parse_ms(text: &str) -> Result<u64, Error> {
    let s = text.trim();
    if s.is_empty() {
        return Err(Error::Empty);
    }
    if s == "0" {
        return Ok(0);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    // Index into UNITS of the last unit seen; later units must have a larger index.
    let mut last_unit: Option<usize> = None;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(Error::Syntax(text.to_owned()));
        }
        let number: u64 = s[start..i]
            .parse()
            .map_err(|_| Error::Overflow(text.to_owned()))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        if unit.is_empty() {
            return Err(Error::Syntax(text.to_owned()));
        }
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(Error::Unit {
                text: text.to_owned(),
                unit: unit.to_owned(),
            });
        };
        if last_unit.is_some_and(|last| idx <= last) {
            return Err(Error::Order(text.to_owned()));
        }
        last_unit = Some(idx);
        total = number
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| Error::Overflow(text.to_owned()))?;
    }
    Ok(total)
}

/// Format milliseconds in the largest-units-first form `parse_ms` reads back.
pub fn format_ms(mut ms: u64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, factor) in UNITS {
        let n = ms / factor;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            ms -= n * factor;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("250ms", 250),
            ("30s", 30_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("60m", 3_600_000),
            ("2d", 172_800_000),
            ("1h30m", 5_400_000),
            ("1d2h3m4s5ms", 93_784_005),
            ("0", 0),
            ("0s", 0),
        ];
        for (text, want) in ok {
            assert_eq!(parse_ms(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "10",
            "m",
            "1x",
            "30m1h",
            "1h1h",
            "-5m",
            "1.5h",
            "1 h",
            "99999999999999999999d",
        ] {
            assert!(parse_ms(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn format_round_trips() {
        for ms in [0, 1, 999, 1000, 61_000, 5_400_000, 93_784_005] {
            assert_eq!(parse_ms(&format_ms(ms)), Ok(ms));
        }
    }
}
