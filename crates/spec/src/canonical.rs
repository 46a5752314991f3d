//! RFC 8785 (JCS) canonical JSON and number normalization.
//!
//! The IR is hashed as canonical JSON, so two documents with equal meaning must
//! produce the same bytes: keys sorted by UTF-16 code units, no whitespace,
//! numbers in ECMAScript form, and integral floats (`120.0`) folded into integers.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// 2^53: integers up to this magnitude are exact as IEEE doubles.
const MAX_SAFE: f64 = 9_007_199_254_740_992.0;

/// Fold numbers so that equal values have one representation: an integral
/// float within ±2^53 becomes an integer, `-0.0` becomes `0`.
pub fn normalize_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() <= MAX_SAFE
            {
                // Exact: |f| <= 2^53 and integral.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *n = Number::from(i);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// Serialize a value as RFC 8785 canonical JSON.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// SHA-256 of the canonical JSON, lowercase hex.
pub fn sha256_hex(value: &Value) -> String {
    sha256_hex_of(to_canonical_string(value).as_bytes())
}

/// Lowercase hex of HMAC-SHA-256 (RFC 2104) of `msg` under `key`.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    sha256_hex_of_digest(&outer)
}

/// Lowercase hex of the SHA-256 of `bytes`, encoded through a buffer rather
/// than character by character (every queued run hashes its idempotency key).
fn sha256_hex_of(bytes: &[u8]) -> String {
    sha256_hex_of_digest(&Sha256::digest(bytes))
}

fn sha256_hex_of_digest(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for &b in digest {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    hex
}

/// A member value for [`sha256_hex_of_members`].
#[derive(Debug, Clone, Copy)]
pub enum Member<'a> {
    Str(&'a str),
    Json(&'a Value),
}

/// [`sha256_hex`] of the object with these members, without building it as a
/// [`Value`] first (the decision path hashes one per queued run). Keys must be
/// ASCII and given in sorted order, which is then the canonical order.
pub fn sha256_hex_of_members(members: &[(&str, Member<'_>)]) -> String {
    debug_assert!(
        members.windows(2).all(|w| w[0].0 < w[1].0) && members.iter().all(|(k, _)| k.is_ascii()),
        "members in canonical order"
    );
    let mut out = String::with_capacity(256);
    write_members(&mut out, members.iter().copied());
    sha256_hex_of(out.as_bytes())
}

/// `{"key":value,…}` with the members in the order given.
fn write_members<'a>(out: &mut String, members: impl Iterator<Item = (&'a str, Member<'a>)>) {
    out.push('{');
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        match value {
            Member::Str(s) => write_string(out, s),
            Member::Json(v) => write_value(out, v),
        }
    }
    out.push('}');
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // The map iterates in UTF-8 (code point) order, which equals JCS's UTF-16
    // order unless a key holds a character at or above U+E000.
    if map.keys().any(|k| k.chars().any(|c| c >= '\u{e000}')) {
        entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    }
    write_members(
        out,
        entries
            .into_iter()
            .map(|(k, v)| (k.as_str(), Member::Json(v))),
    );
}

/// JCS string escaping: `\"` `\\` `\b` `\f` `\n` `\r` `\t`, other control
/// characters as lowercase `\u00xx`, everything else literal.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) {
    if n.is_i64() || n.is_u64() {
        out.push_str(&n.to_string());
        return;
    }
    let f = n.as_f64().unwrap_or(0.0);
    out.push_str(&ecmascript_number(f));
}

/// Format a finite double the way ECMAScript's `Number.prototype.toString` does.
pub fn ecmascript_number(f: f64) -> String {
    if f == 0.0 {
        return "0".to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde±x".
    let sci = format!("{:e}", f.abs());
    // `{:e}` always writes an exponent, an integer.
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let n = exp + 1; // position of the decimal point relative to the digits
    let mut s = String::new();
    if f < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        s.push_str(&digits[..n as usize]);
        s.push('.');
        s.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        s.push_str(&digits[..1]);
        if k > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if n > 0 { '+' } else { '-' });
        s.push_str(&(n - 1).abs().to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 4231's test cases 1, 2 and 6 (a key longer than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hmac_sha256_hex(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hmac_sha256_hex(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn ecmascript_numbers() {
        let cases = [
            (1.5, "1.5"),
            (0.1, "0.1"),
            (-0.25, "-0.25"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (123456789.125, "123456789.125"),
            (0.000001, "0.000001"),
            (1e20, "100000000000000000000"),
            (333333333.3333333, "333333333.3333333"),
        ];
        for (f, want) in cases {
            assert_eq!(ecmascript_number(f), want, "{f}");
        }
    }

    #[test]
    fn members_hash_like_the_object_they_make() {
        let params =
            json!({"argv": ["echo", "\u{e000}ü"], "z": 2, "a": {"b": null, "c": [1.5, true]}});
        for (host, id) in [("pve-01", "vm:100"), ("h\"q", "ü€\n\u{1}")] {
            let object = json!({
                "verb": "run", "target_type": "vm", "target_id": id, "policy": "p-1",
                "params": params, "host": host, "capability": "command.run",
            });
            let members = sha256_hex_of_members(&[
                ("capability", Member::Str("command.run")),
                ("host", Member::Str(host)),
                ("params", Member::Json(&params)),
                ("policy", Member::Str("p-1")),
                ("target_id", Member::Str(id)),
                ("target_type", Member::Str("vm")),
                ("verb", Member::Str("run")),
            ]);
            assert_eq!(members, sha256_hex(&object), "{host} {id}");
        }
    }

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "\u{1}\u{1f}\n\r\t\u{8}\u{c}",
            "ünï €",
            "\u{7f}",
        ] {
            let mut out = String::new();
            write_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+FF61 sorts after U+1F600 in UTF-8 order but before it in UTF-16.
        let v = json!({"\u{1F600}": 1, "\u{FF61}": 2, "a": 3});
        assert_eq!(
            to_canonical_string(&v),
            "{\"a\":3,\"\u{1F600}\":1,\"\u{FF61}\":2}"
        );
    }

    #[test]
    fn canonical_sorts_keys_and_folds_floats() {
        let mut v = json!({"b": 120.0, "a": [1, 2.5, {"é": 1, "z": null}], "\u{20ac}": "x\n"});
        normalize_numbers(&mut v);
        assert_eq!(
            to_canonical_string(&v),
            r#"{"a":[1,2.5,{"z":null,"é":1}],"b":120,"€":"x\n"}"#
        );
    }
}
