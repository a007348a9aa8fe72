//! Python's `json.dumps(obj, separators=(",", ":"))` and `json.loads(bytes.decode("latin-1"))`.
//!
//! Django's `JSONSerializer` writes compact JSON with `ensure_ascii=True` and reads the bytes
//! as Latin-1. Raw UTF-8 from a Rust writer would come back as mojibake on the Django side, so
//! every non-ASCII character (and DEL) is written as `\uXXXX`, astral ones as surrogate pairs.
//! Floats use Python's `repr` (`1e-05`, `1e+16`), so a value read from Django is written back
//! exactly as Django would.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use serde_json::Value;
use std::io::{self, Write};

#[derive(Default)]
struct PythonCompact;

impl Formatter for PythonCompact {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if (' '..='~').contains(&ch) {
                continue;
            }
            writer.write_all(&bytes[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{:04x}", unit)?;
            }
            start = i + ch.len_utf8();
        }
        writer.write_all(&bytes[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        // Python escapes these exactly like serde_json except that it never emits `\/`.
        let s: &[u8] = match char_escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(b) => return write!(writer, "\\u{:04x}", b),
        };
        writer.write_all(s)
    }

    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, value as f64)
    }
}

/// Python's `repr(float)`: shortest round-trip digits, positional for exponents in
/// `-4..16`, otherwise `d.ddde±XX`.
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "1.2345e-7", "-5e16".
    let sci = format!("{:e}", value);
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else if exp + 1 >= n {
            format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let mant = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mant}e{esign}{:02}", exp.abs())
    }
}

/// `json.dumps(value, separators=(",", ":"))` as bytes (always ASCII).
pub fn dumps<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonCompact);
    value
        .serialize(&mut ser)
        .expect("serialising JSON values into memory cannot fail");
    out
}

/// `json.loads(data.decode("latin-1"))`.
pub fn loads(data: &[u8]) -> Result<Value, serde_json::Error> {
    if let Some(text) = data
        .is_ascii()
        .then(|| std::str::from_utf8(data).ok())
        .flatten()
    {
        // Latin-1 and UTF-8 agree on ASCII; skip the copy on the path Django always takes.
        // Parsing a `str` spares serde_json checking each string's UTF-8 again.
        serde_json::from_str(text)
    } else {
        let text: String = data.iter().map(|&b| b as char).collect();
        serde_json::from_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ascii_escapes_like_python() {
        let v = json!({"k": "é", "e": "😀", "c": "\u{1}\u{7f}/\"\\\n"});
        assert_eq!(
            String::from_utf8(dumps(&v)).unwrap(),
            r#"{"k":"\u00e9","e":"\ud83d\ude00","c":"\u0001\u007f/\"\\\n"}"#
        );
    }

    #[test]
    fn key_order_is_insertion_order() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":[1,2]}"#).unwrap();
        assert_eq!(dumps(&v), br#"{"b":1,"a":[1,2]}"#);
    }

    #[test]
    fn floats_use_python_repr() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e15, "1000000000000000.0"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1e+100"),
            (123.456, "123.456"),
        ] {
            assert_eq!(python_float_repr(f), s, "{f}");
        }
    }

    #[test]
    fn loads_reads_latin1() {
        assert_eq!(loads(b"{\"k\":\"\xe9\"}").unwrap(), json!({"k": "é"}));
        assert_eq!(loads(br#"{"k":"\u00e9"}"#).unwrap(), json!({"k": "é"}));
    }
}
