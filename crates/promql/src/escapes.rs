//! A check on string literals that `promql-parser` cannot make: byte escapes.
//!
//! In PromQL (Go's string syntax) `"\xff"` and `"\377"` are single *bytes*, and a byte of
//! 0x80 or more on its own is not valid UTF-8: Prometheus then rejects such a string as a
//! label name and matches it byte-wise as a value. `promql-parser` instead decodes each such
//! escape as the code point U+0080..U+00FF, which is a different, valid string (`"\xff"`
//! becomes `"ÿ"`, and the UTF-8 pair `"\xc3\xbf"` becomes `"Ã¿"`). Rather than evaluate a
//! query whose strings mean something else than the user wrote, such escapes are refused
//! with an error that says how to write the character instead.

use crate::error::Error;

/// Fails if a double- or single-quoted string in `query` has a `\x` or octal escape of a byte
/// of 0x80 or more. Backtick strings (no escapes) and `#` comments are skipped.
pub(crate) fn check_byte_escapes(query: &str) -> Result<(), Error> {
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        let esc = &b[i + 1..];
                        let byte = match esc[0] {
                            b'x' if esc.len() >= 3 => std::str::from_utf8(&esc[1..3])
                                .ok()
                                .and_then(|h| u8::from_str_radix(h, 16).ok()),
                            b'0'..=b'7' if esc.len() >= 3 => std::str::from_utf8(&esc[..3])
                                .ok()
                                .and_then(|o| u8::from_str_radix(o, 8).ok()),
                            _ => None,
                        };
                        if let Some(v) = byte.filter(|v| *v >= 0x80) {
                            let text = String::from_utf8_lossy(&b[i..(i + 4).min(b.len())]);
                            return Err(Error::Parse(format!(
                                "parse error: the escape {text} in a string is the single byte \
                                 {v:#04x}, which is not valid UTF-8 on its own and is not \
                                 supported; write the character itself or a \\u escape"
                            )));
                        }
                        i += 2;
                        continue;
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_byte_escapes;

    #[test]
    fn high_byte_escapes_are_refused_everywhere_else_is_fine() {
        for bad in [
            r#"label_replace(m, "\xff", "", "src", "(.*)")"#,
            r#"m{a='\xC3\xBF'}"#,
            r#"m{a="\377"}"#,
        ] {
            let e = check_byte_escapes(bad).unwrap_err().to_string();
            assert!(e.contains("not valid UTF-8"), "{bad}: {e}");
        }
        for ok in [
            r#"m{a="\x41\u00ff\n\\"}"#,
            r#"m{a="ÿ", b='\''}"#,
            "m{a=`\\xff`}",
            "m # \"\\xff\" in a comment\n",
            r#"m{a="\\xff"}"#,
            r#"m{a="\101"}"#,
            r#"m{a="unterminated \"#,
        ] {
            assert!(check_byte_escapes(ok).is_ok(), "{ok}");
        }
    }
}
