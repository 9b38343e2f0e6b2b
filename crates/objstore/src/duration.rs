//! Go/Prometheus duration strings (`90s`, `1m30s`, `500ms`, `1.5h`, `2d`).
//!
//! Thanos' objstore.yml carries timeouts in Go's `time.Duration` syntax (with Prometheus' `d`, `w`
//! and `y` units accepted too, since some manifests are written against `model.Duration`). The
//! model crate has its own duration type, but this crate must not depend on TSDB-level crates, so
//! it carries this small parser privately.

use std::time::Duration;

/// Parses a duration such as `1m30s`. Returns a human-readable reason on failure; the caller adds
/// which config key it was parsing.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("negative duration `{text}` is not allowed"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    // Go accepts a bare "0"; anything else needs a unit so that `30` is never silently read as
    // nanoseconds when the author meant seconds.
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "invalid duration `{text}`: expected a number before `{rest}`"
            ));
        }
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "w" => 7 * 86_400 * 1_000_000_000,
            "y" => 365 * 86_400 * 1_000_000_000,
            "" => {
                return Err(format!(
                    "invalid duration `{text}`: missing unit after `{number}` (use e.g. `{number}s`)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}` (use ns, us, ms, s, m, h, d, w or y)"
                ));
            }
        };
        total_nanos = total_nanos
            .checked_add(scale(number, unit_nanos).ok_or_else(|| {
                format!("invalid duration `{text}`: number `{number}` is malformed or too large")
            })?)
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        rest = after_unit;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| format!("duration `{text}` is too large"))?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// `number * unit_nanos` for a decimal number like `1.5`, exactly, without going through floats.
fn scale(number: &str, unit_nanos: u128) -> Option<u128> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return None;
    }
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut value = int.checked_mul(unit_nanos)?;
    // Fractional digits beyond nanosecond precision are dropped, as Go does.
    let mut divisor: u128 = 1;
    let mut frac: u128 = 0;
    for digit in frac_part.chars().take(30) {
        frac = frac * 10 + u128::from(digit.to_digit(10)?);
        divisor *= 10;
    }
    value = value.checked_add(frac.checked_mul(unit_nanos)? / divisor)?;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn parses_go_and_prometheus_forms() {
        let cases = [
            ("0", Duration::ZERO),
            ("90s", Duration::from_secs(90)),
            ("1m30s", Duration::from_secs(90)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1d", Duration::from_secs(86_400)),
            ("1w", Duration::from_secs(7 * 86_400)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            (" 5s ", Duration::from_secs(5)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_bad_input_with_reason() {
        for (text, needle) in [
            ("", "empty"),
            ("30", "missing unit"),
            ("5x", "unknown unit `x`"),
            ("-5s", "negative"),
            ("s", "expected a number"),
            ("1..5s", "malformed"),
            ("99999999999999999999999999999999y", "too large"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
