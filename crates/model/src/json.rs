//! JSON strings as Go's `encoding/json` writes them with HTML escaping on (Prometheus' and
//! Thanos' HTTP APIs): `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`, control characters
//! as `\u00XX`, U+2028 and U+2029 escaped. Here rather than in the API crate so that every
//! component writing Prometheus JSON (the API, the query frontend) writes the same bytes.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string, escaped as Go's HTML-safe encoder does.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}
