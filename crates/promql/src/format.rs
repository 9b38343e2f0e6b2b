//! Number formatting exactly as Go's `strconv` writes it, which Prometheus' output (JSON
//! values, `count_values` labels) depends on.
//!
//! Rust's shortest round-trip digits are the same digits Go's `FormatFloat(f, _, -1, 64)`
//! chooses (both pick the shortest string that parses back to the same float); only the
//! layout differs: Go writes `1e+21` where Rust writes `1e21`, `+Inf` where Rust writes
//! `inf`. These functions take Rust's digits and lay them out as Go does.

use std::fmt::Write as _;

/// The shortest decimal digits of a finite, non-zero `|v|` (no leading or trailing zeros)
/// and its decimal exponent: `|v| = d1.d2d3... × 10^exp`. Uses Ryu, whose shortest digits are
/// the ones Go picks; only its layout is parsed here.
fn shortest_digits(v: f64, digits: &mut [u8; 32]) -> (usize, i32) {
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v.abs()).as_bytes();
    let mut n = 0usize;
    let (mantissa, exp_part) = match s.iter().position(|&b| b == b'e') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    // Position of the decimal point within the mantissa's digits.
    let mut point = mantissa.len();
    let mut first_nonzero: Option<usize> = None;
    let mut idx = 0usize;
    for &b in mantissa {
        if b == b'.' {
            point = idx;
            continue;
        }
        if first_nonzero.is_none() && b != b'0' {
            first_nonzero = Some(idx);
        }
        if first_nonzero.is_some() {
            digits[n] = b;
            n += 1;
        }
        idx += 1;
    }
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
    }
    let lead = first_nonzero.unwrap_or(0) as i32;
    let mut exp = point as i32 - lead - 1;
    if let Some(e) = exp_part {
        let (neg, e) = match e.first() {
            Some(b'-') => (true, &e[1..]),
            _ => (false, e),
        };
        let mut x = 0i32;
        for &b in e {
            x = x * 10 + i32::from(b - b'0');
        }
        exp += if neg { -x } else { x };
    }
    (n, exp)
}

fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("+Inf")
    } else if v == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent.
pub fn format_float_f(v: f64, out: &mut String) {
    if let Some(s) = special(v) {
        out.push_str(s);
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    if ryu_plain(v, out) {
        return;
    }
    format_float_f_digits(v, out);
}

/// [`format_float_f`] for finite non-zero values, laid out from the shortest digits.
fn format_float_f_digits(v: f64, out: &mut String) {
    if v.is_sign_negative() {
        out.push('-');
    }
    let mut d = [0u8; 32];
    let (n, exp) = shortest_digits(v, &mut d);
    let digits = &d[..n];
    let n = n as i32;
    if exp >= 0 {
        let int_len = exp + 1;
        if n <= int_len {
            push_ascii(out, digits);
            for _ in 0..(int_len - n) {
                out.push('0');
            }
        } else {
            push_ascii(out, &digits[..int_len as usize]);
            out.push('.');
            push_ascii(out, &digits[int_len as usize..]);
        }
    } else {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        push_ascii(out, digits);
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: shortest digits, exponent with a sign and at
/// least two digits (`1e+21`, `1.5e-07`).
pub fn format_float_e(v: f64, out: &mut String) {
    if let Some(s) = special(v) {
        out.push_str(s);
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() {
            "-0e+00"
        } else {
            "0e+00"
        });
        return;
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    let mut d = [0u8; 32];
    let (n, exp) = shortest_digits(v, &mut d);
    push_ascii(out, &d[..1]);
    if n > 1 {
        out.push('.');
        push_ascii(out, &d[1..n]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
}

/// A sample value as Prometheus' JSON writes it (`jsonutil.MarshalFloat`, without the
/// quotes): `'f'` layout, switching to `'e'` below 1e-6 and from 1e21 on.
pub fn format_sample_value(v: f64, out: &mut String) {
    let a = v.abs();
    // Integral values below 2^53 are exactly their integer, whose digits are the shortest
    // representation: print them directly (counters and gauges mostly are integers).
    if a < 9_007_199_254_740_992.0 && v.fract() == 0.0 && v != 0.0 {
        if v < 0.0 {
            out.push('-');
        }
        push_u64(out, a as u64);
        return;
    }
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        format_float_e(v, out);
    } else {
        format_float_f(v, out);
    }
}

/// Ryu's own layout when it is already Go's `'f'` layout: plain decimal digits with a point
/// inside (Ryu writes `1e16`-style exponents only outside `[1e-5, 1e16)`, and `.0` after
/// integers, which callers handle before).
#[inline]
fn ryu_plain(v: f64, out: &mut String) -> bool {
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v);
    if s.contains('e') || s.ends_with(".0") {
        return false;
    }
    out.push_str(s);
    true
}

/// A millisecond timestamp as Prometheus' JSON writes it: seconds, then `.` and three digits
/// only when the milliseconds are not zero (`1.001`, `0.010`, `-0.001`).
pub fn format_timestamp(ms: i64, out: &mut String) {
    if ms < 0 {
        out.push('-');
    }
    let a = ms.unsigned_abs();
    push_u64(out, a / 1000);
    let frac = (a % 1000) as u16;
    if frac != 0 {
        out.push('.');
        out.push((b'0' + (frac / 100) as u8) as char);
        out.push((b'0' + (frac / 10 % 10) as u8) as char);
        out.push((b'0' + (frac % 10) as u8) as char);
    }
}

#[inline]
fn push_u64(out: &mut String, x: u64) {
    out.push_str(itoa::Buffer::new().format(x));
}

/// Appends ASCII digits.
#[inline]
fn push_ascii(out: &mut String, bytes: &[u8]) {
    out.push_str(std::str::from_utf8(bytes).expect("ASCII digits"));
}

/// Convenience: [`format_float_f`] into a new string.
pub fn float_f(v: f64) -> String {
    let mut s = String::new();
    format_float_f(v, &mut s);
    s
}

/// Convenience: [`format_sample_value`] into a new string.
pub fn sample_value(v: f64) -> String {
    let mut s = String::new();
    format_sample_value(v, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_layouts() {
        for (v, want) in [
            (1e21, "1e+21"),
            (1.2345678e6, "1234567.8"),
            (1.2345678e-6, "0.0000012345678"),
            (1.2345678e-67, "1.2345678e-67"),
            (1e-7, "1e-07"),
            (9.99e20, "999000000000000000000"),
            (0.1, "0.1"),
            (-0.0, "-0"),
            (0.0, "0"),
            (100.0, "100"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (-1.5, "-1.5"),
            (123456789012345680000.0, "123456789012345680000"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (1234567.0, "1234567"),
            (0.000123, "0.000123"),
            (1.5e-6, "0.0000015"),
            (1e16, "10000000000000000"),
            (1.2e17, "120000000000000000"),
            (12345678901234567890.0, "12345678901234567000"),
            (0.30000000000000004, "0.30000000000000004"),
            (9007199254740991.0, "9007199254740991"),
            (9007199254740992.0, "9007199254740992"),
            (-42.0, "-42"),
            (1e20, "100000000000000000000"),
        ] {
            assert_eq!(sample_value(v), want, "{v:e}");
        }
        assert_eq!(float_f(1e-7), "0.0000001");
        assert_eq!(float_f(1e21), "1000000000000000000000");
    }

    /// The integer fast path and the Ryu path round-trip, with the shortest digits, for many
    /// random values.
    #[test]
    fn random_values_round_trip() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match x % 4 {
                0 => f64::from_bits(x),
                1 => (x % 100_000_000) as f64,
                2 => (x % 1_000_000) as f64 / 1000.0,
                _ => ((x >> 11) as f64) * 1e-9,
            };
            if !v.is_finite() {
                continue;
            }
            let s = sample_value(v);
            let back: f64 = s.parse().expect("Go output parses");
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e} -> {s}");
            // As short as Rust's shortest representation (the digits may differ only when
            // the value lies exactly halfway: Ryu, like Go, rounds those to even).
            let digits = |t: &str| {
                t.trim_start_matches('-')
                    .split('e')
                    .next()
                    .unwrap()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
                    .trim_start_matches('0')
                    .trim_end_matches('0')
                    .len()
            };
            assert!(
                digits(&s) <= digits(&format!("{:e}", v)).max(1),
                "{v:e} -> {s}"
            );
        }
    }

    /// Ryu's plain layout, where used, is exactly the layout built from the digits.
    #[test]
    fn ryu_layout_matches_digit_layout() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match x % 3 {
                0 => f64::from_bits(x),
                1 => (x % 10_000_000) as f64 / 997.0,
                _ => ((x >> 20) as f64) * 1e-12,
            };
            if !v.is_finite() || v == 0.0 {
                continue;
            }
            let (mut fast, mut slow) = (String::new(), String::new());
            format_float_f(v, &mut fast);
            format_float_f_digits(v, &mut slow);
            assert_eq!(fast, slow, "{v:e}");
        }
    }

    #[test]
    fn timestamps() {
        for (ms, want) in [
            (0, "0"),
            (1, "0.001"),
            (10, "0.010"),
            (100, "0.100"),
            (1001, "1.001"),
            (1010, "1.010"),
            (1100, "1.100"),
            (-1, "-0.001"),
            (12345678123456555, "12345678123456.555"),
        ] {
            let mut s = String::new();
            format_timestamp(ms, &mut s);
            assert_eq!(s, want);
        }
    }
}
