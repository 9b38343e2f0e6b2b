//! Durations as Thanos' flags and configuration files spell them.
//!
//! Thanos mixes two duration syntaxes: flags registered through `extkingpin.ModelDuration`
//! (`--delete-delay`, `--retention.resolution-raw`, `--consistency-delay`, grace periods, …)
//! use Prometheus' `model.ParseDuration`, while flags declared with kingpin's `Duration()`
//! (`--sync-block-duration`, `--wait-interval`, `--query.timeout`, …) use Go's
//! `time.ParseDuration`. A user's manifest may therefore contain either spelling, so
//! [`Duration`]'s [`FromStr`] accepts the union of both languages:
//!
//! * **Prometheus** (`model.ParseDuration`): a sequence of `<integer><unit>` with units
//!   `y` (365 days), `w`, `d`, `h`, `m`, `s`, `ms`, each at most once and in exactly that
//!   order (`1h30m`, `30d`, `2w`, `1y`, `500ms`), or a bare `0`. No sign, no fraction.
//! * **Go** (`time.ParseDuration`): an optional sign, then a sequence of
//!   `<decimal><unit>` where the decimal may have a fraction (`1.5h`, `.5s`, `1.h`) and units are
//!   `h`, `m`, `s`, `ms`, `us`/`µs`/`μs`, `ns`, in any order and repeatable (`1h1h` is `2h`),
//!   or a bare `0` (optionally signed).
//!
//! Where both grammars accept a string they agree on its value, so trying one and then the
//! other gives exactly the union. Parse them separately with [`Duration::parse_prometheus`] and
//! [`Duration::parse_go`] when a field must follow one syntax only.
//!
//! **Precision.** Strata durations have millisecond precision, like Prometheus' own
//! `model.Duration.String()` and timestamps. A Go-style value with a sub-millisecond part is
//! truncated toward zero (`1500us` is `1ms`, `1us` is `0s`), the same truncation Prometheus
//! applies when it converts a `time.Duration` to milliseconds.
//!
//! **Sign.** A duration is never negative: every Thanos flag that takes a duration is a delay,
//! an interval, a timeout or a retention, where a negative value is meaningless. A leading `+`
//! (Go syntax) is accepted; a leading `-` is an error unless the value is zero (`-0s`). Relative
//! times such as `--min-time=-2w` carry their sign outside the duration; see
//! [`crate::timestamp::TimeOrDuration`].
//!
//! **Range.** Values up to `u64::MAX` milliseconds parse (Go itself stops at 2⁶³-1 ns, about 292
//! years); larger ones are an out-of-range error, never a wrap-around.
//!
//! [`Display`](fmt::Display) prints Prometheus' canonical form (`model.Duration.String()`):
//! largest units first, zero components omitted, `0s` for zero — `90m` prints as `1h30m`, a
//! week as `1w`, 365 days as `1y`. That form always parses back to the same value.

use std::fmt;
use std::str::FromStr;

use crate::unitnum::{TermError, next_term, split_digits};

const MS_PER_SECOND: u64 = 1_000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;
const MS_PER_WEEK: u64 = 7 * MS_PER_DAY;
const MS_PER_YEAR: u64 = 365 * MS_PER_DAY;

/// Prometheus' units, in the only order `model.ParseDuration` accepts them.
const PROMETHEUS_UNITS: [(&str, u64); 7] = [
    ("y", MS_PER_YEAR),
    ("w", MS_PER_WEEK),
    ("d", MS_PER_DAY),
    ("h", MS_PER_HOUR),
    ("m", MS_PER_MINUTE),
    ("s", MS_PER_SECOND),
    ("ms", 1),
];

const NS_PER_MS: u128 = 1_000_000;

/// Go's `time.ParseDuration` units, in nanoseconds.
fn go_unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// A non-negative span of time with millisecond precision.
///
/// See the [module documentation](self) for the accepted syntaxes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

impl Duration {
    /// The empty duration (`0s`).
    pub const ZERO: Duration = Duration { millis: 0 };
    /// The largest representable duration.
    pub const MAX: Duration = Duration { millis: u64::MAX };

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { millis }
    }

    /// A duration of `secs` seconds, saturating at [`Duration::MAX`].
    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            millis: secs.saturating_mul(MS_PER_SECOND),
        }
    }

    /// A duration of `mins` minutes, saturating at [`Duration::MAX`].
    pub const fn from_mins(mins: u64) -> Self {
        Duration {
            millis: mins.saturating_mul(MS_PER_MINUTE),
        }
    }

    /// A duration of `hours` hours, saturating at [`Duration::MAX`].
    pub const fn from_hours(hours: u64) -> Self {
        Duration {
            millis: hours.saturating_mul(MS_PER_HOUR),
        }
    }

    /// A duration of `days` 24-hour days, saturating at [`Duration::MAX`].
    pub const fn from_days(days: u64) -> Self {
        Duration {
            millis: days.saturating_mul(MS_PER_DAY),
        }
    }

    /// Converts a [`std::time::Duration`], truncating to whole milliseconds and saturating at
    /// [`Duration::MAX`].
    pub fn from_std(d: std::time::Duration) -> Self {
        Duration {
            millis: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The whole number of milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// The number of milliseconds as a signed value (the unit of Prometheus timestamps),
    /// saturating at `i64::MAX`.
    pub const fn as_millis_i64(self) -> i64 {
        if self.millis > i64::MAX as u64 {
            i64::MAX
        } else {
            self.millis as i64
        }
    }

    /// The whole number of seconds (truncated).
    pub const fn as_secs(self) -> u64 {
        self.millis / MS_PER_SECOND
    }

    /// Whether this is the empty duration. Thanos uses `0` to mean "disabled" or "forever" for
    /// many flags (retention, delete delay, timeouts).
    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }

    /// The same span as a [`std::time::Duration`].
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }

    /// Parses Prometheus' `model.ParseDuration` syntax only: `<integer><unit>` components with
    /// units `y w d h m s ms`, each at most once and in that order, or a bare `0`.
    pub fn parse_prometheus(s: &str) -> Result<Self, ParseDurationError> {
        parse_prometheus(s).map_err(|kind| ParseDurationError::new(s, kind))
    }

    /// Parses Go's `time.ParseDuration` syntax only: optional sign, then `<decimal><unit>`
    /// components with units `h m s ms us µs μs ns` in any order, or a bare `0`. Sub-millisecond
    /// parts are truncated; a negative non-zero value is an error.
    pub fn parse_go(s: &str) -> Result<Self, ParseDurationError> {
        parse_go(s).map_err(|kind| ParseDurationError::new(s, kind))
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.to_std()
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    /// Accepts either Prometheus or Go syntax (see the [module documentation](self)).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let prom_err = match parse_prometheus(s) {
            Ok(d) => return Ok(d),
            Err(kind) => kind,
        };
        match parse_go(s) {
            Ok(d) => Ok(d),
            Err(go_err) => {
                // Report the most specific reason: a problem that both grammars share (empty,
                // negative, out of range) as is; otherwise a hint covering both syntaxes, unless
                // the Go grammar named a precise culprit.
                let kind = match (prom_err, go_err) {
                    (_, k @ (DurationErrorKind::Negative | DurationErrorKind::OutOfRange)) => k,
                    (k @ DurationErrorKind::OutOfRange, _) => k,
                    (DurationErrorKind::Empty, _) => DurationErrorKind::Empty,
                    (DurationErrorKind::UnitOrder(u), _) => DurationErrorKind::UnitOrder(u),
                    (_, k @ DurationErrorKind::UnknownUnit(_)) => k,
                    (_, k @ DurationErrorKind::MissingUnit) => k,
                    _ => DurationErrorKind::Syntax,
                };
                Err(ParseDurationError::new(s, kind))
            }
        }
    }
}

impl fmt::Display for Duration {
    /// Prometheus' canonical form: `1y2w3d4h5m6s7ms`, zero components omitted, `0s` for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.millis;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, mult) in PROMETHEUS_UNITS {
            let v = ms / mult;
            if v > 0 {
                write!(f, "{v}{unit}")?;
                ms -= v * mult;
            }
        }
        Ok(())
    }
}

/// Why a duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationErrorKind {
    /// The string is empty.
    Empty,
    /// The value is negative (durations are never negative; relative times carry their sign
    /// separately).
    Negative,
    /// The value does not fit in `u64` milliseconds.
    OutOfRange,
    /// A number is not followed by a unit (e.g. `30`).
    MissingUnit,
    /// A unit neither syntax knows (e.g. `5x`, `3D`).
    UnknownUnit(String),
    /// A Prometheus-style unit that appears twice or out of order (e.g. `30m1h`, `1d1d`).
    UnitOrder(String),
    /// Anything else that matches neither grammar.
    Syntax,
}

impl fmt::Display for DurationErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationErrorKind::Empty => f.write_str("empty duration"),
            DurationErrorKind::Negative => f.write_str("durations cannot be negative"),
            DurationErrorKind::OutOfRange => f.write_str("duration out of range"),
            DurationErrorKind::MissingUnit => {
                f.write_str("missing unit (use e.g. 30s, 5m, 2h, 7d; only 0 may omit the unit)")
            }
            DurationErrorKind::UnknownUnit(u) => write!(
                f,
                "unknown unit {u:?} (valid units: y, w, d, h, m, s, ms, us, ns; units are \
                 case-sensitive)"
            ),
            DurationErrorKind::UnitOrder(u) => write!(
                f,
                "unit {u:?} repeated or out of order (Prometheus durations list units once, \
                 largest first: y, w, d, h, m, s, ms)"
            ),
            DurationErrorKind::Syntax => f.write_str(
                "not a valid duration (expected Prometheus syntax like 1d12h or 30s, or Go \
                 syntax like 1.5h or 300ms)",
            ),
        }
    }
}

/// A duration string that could not be parsed; names the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {kind}")]
pub struct ParseDurationError {
    input: String,
    kind: DurationErrorKind,
}

impl ParseDurationError {
    fn new(input: &str, kind: DurationErrorKind) -> Self {
        ParseDurationError {
            input: input.to_owned(),
            kind,
        }
    }

    /// The rejected input.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it was rejected.
    pub fn kind(&self) -> &DurationErrorKind {
        &self.kind
    }
}

fn parse_prometheus(s: &str) -> Result<Duration, DurationErrorKind> {
    if s.is_empty() {
        return Err(DurationErrorKind::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut next_unit = 0usize; // index into PROMETHEUS_UNITS of the smallest unit still allowed
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (digits, after) = split_digits(rest);
        if digits.is_empty() {
            return Err(DurationErrorKind::Syntax);
        }
        // The unit is the maximal run of letters: "1ms" is milliseconds, never minutes + "s".
        let unit_len = after
            .char_indices()
            .find(|&(_, c)| !c.is_alphabetic())
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationErrorKind::MissingUnit);
        }
        let Some(idx) = PROMETHEUS_UNITS.iter().position(|&(u, _)| u == unit) else {
            return Err(DurationErrorKind::UnknownUnit(unit.to_owned()));
        };
        if idx < next_unit {
            return Err(DurationErrorKind::UnitOrder(unit.to_owned()));
        }
        next_unit = idx + 1;
        let n: u64 = digits.parse().map_err(|_| DurationErrorKind::OutOfRange)?;
        let v = n
            .checked_mul(PROMETHEUS_UNITS[idx].1)
            .ok_or(DurationErrorKind::OutOfRange)?;
        total = total.checked_add(v).ok_or(DurationErrorKind::OutOfRange)?;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}

/// Fraction digits beyond this many cannot change a nanosecond count below 2⁶⁴ ms.
const MAX_FRACTION_DIGITS: usize = 18;

fn parse_go(s: &str) -> Result<Duration, DurationErrorKind> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(if s.is_empty() {
            DurationErrorKind::Empty
        } else {
            DurationErrorKind::Syntax
        });
    }
    // Upper bound on the accumulated nanoseconds: anything above u64::MAX ms is out of range.
    let limit: u128 = u128::from(u64::MAX) * NS_PER_MS + (NS_PER_MS - 1);
    let mut total_ns: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let (term, after) = next_term(rest).map_err(|e| match e {
            // No digits at all ("h", ".s", "-.5" without digits before the unit…).
            TermError::NoDigits => DurationErrorKind::Syntax,
            TermError::MissingUnit => DurationErrorKind::MissingUnit,
        })?;
        let (int_digits, frac_digits, unit) = (term.int, term.frac, term.unit);
        let unit_ns =
            go_unit_nanos(unit).ok_or_else(|| DurationErrorKind::UnknownUnit(unit.to_owned()))?;

        let int_part: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits
                .parse()
                .map_err(|_| DurationErrorKind::OutOfRange)?
        };
        let mut v = int_part
            .checked_mul(unit_ns)
            .ok_or(DurationErrorKind::OutOfRange)?;
        if !frac_digits.is_empty() {
            let kept = &frac_digits[..frac_digits.len().min(MAX_FRACTION_DIGITS)];
            let f: u128 = kept.parse().map_err(|_| DurationErrorKind::Syntax)?;
            let scale = 10u128.pow(kept.len() as u32);
            // f < 10^18 and unit_ns < 2^42, so the product fits comfortably in u128.
            v = v
                .checked_add(f * unit_ns / scale)
                .ok_or(DurationErrorKind::OutOfRange)?;
        }
        total_ns = total_ns
            .checked_add(v)
            .ok_or(DurationErrorKind::OutOfRange)?;
        if total_ns > limit {
            return Err(DurationErrorKind::OutOfRange);
        }
        rest = after;
    }
    let millis = (total_ns / NS_PER_MS) as u64; // bounded by `limit` above
    if negative && total_ns != 0 {
        return Err(DurationErrorKind::Negative);
    }
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(s: &str) -> u64 {
        s.parse::<Duration>()
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .as_millis()
    }

    fn err(s: &str) -> ParseDurationError {
        s.parse::<Duration>().expect_err(s)
    }

    #[test]
    fn prometheus_syntax() {
        assert_eq!(ms("0"), 0);
        assert_eq!(ms("0s"), 0);
        assert_eq!(ms("0d"), 0);
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("30s"), 30_000);
        assert_eq!(ms("5m"), 300_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("30d"), 30 * MS_PER_DAY);
        assert_eq!(ms("2w"), 14 * MS_PER_DAY);
        assert_eq!(ms("1y"), 365 * MS_PER_DAY);
        assert_eq!(
            ms("1y2w3d4h5m6s7ms"),
            MS_PER_YEAR
                + 2 * MS_PER_WEEK
                + 3 * MS_PER_DAY
                + 4 * MS_PER_HOUR
                + 5 * MS_PER_MINUTE
                + 6_000
                + 7
        );
        assert_eq!(ms("01h"), MS_PER_HOUR);
        assert_eq!(ms("90m"), 90 * MS_PER_MINUTE);
        assert_eq!(
            Duration::parse_prometheus("48h").unwrap(),
            Duration::from_hours(48)
        );
    }

    #[test]
    fn prometheus_rejects_what_upstream_rejects() {
        for bad in [
            "", "1.5h", "-1h", "+1h", "1h1h", "30m1h", "1d1d", "1us", "1D", " 1h", "1h ", "h",
        ] {
            assert!(
                Duration::parse_prometheus(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(
            Duration::parse_prometheus("30m1h").unwrap_err().kind(),
            &DurationErrorKind::UnitOrder("h".into())
        );
    }

    #[test]
    fn go_syntax() {
        assert_eq!(ms("1.5h"), 90 * MS_PER_MINUTE);
        assert_eq!(ms("300ms"), 300);
        assert_eq!(ms("2h45m"), 2 * MS_PER_HOUR + 45 * MS_PER_MINUTE);
        assert_eq!(ms("1h1h"), 2 * MS_PER_HOUR);
        assert_eq!(ms("45m2h"), 2 * MS_PER_HOUR + 45 * MS_PER_MINUTE);
        assert_eq!(ms(".5s"), 500);
        assert_eq!(ms("1.s"), 1_000);
        assert_eq!(ms("+5s"), 5_000);
        assert_eq!(ms("1500us"), 1);
        assert_eq!(ms("1500µs"), 1);
        assert_eq!(ms("1500μs"), 1);
        assert_eq!(ms("1us"), 0);
        assert_eq!(ms("999999ns"), 0);
        assert_eq!(ms("1000000ns"), 1);
        assert_eq!(ms("0.000001h"), 3); // 3.6 ms, truncated
        assert_eq!(ms("-0"), 0);
        assert_eq!(ms("+0"), 0);
        assert_eq!(ms("-0s"), 0);
        assert_eq!(Duration::parse_go("1.5h").unwrap(), Duration::from_mins(90));
        assert!(Duration::parse_go("1d").is_err());
    }

    #[test]
    fn errors_name_input_and_reason() {
        let e = err("-1h");
        assert_eq!(e.kind(), &DurationErrorKind::Negative);
        assert_eq!(e.input(), "-1h");
        assert!(e.to_string().contains("\"-1h\""), "{e}");

        assert_eq!(err("").kind(), &DurationErrorKind::Empty);
        assert_eq!(err("30").kind(), &DurationErrorKind::MissingUnit);
        assert_eq!(
            err("5x").kind(),
            &DurationErrorKind::UnknownUnit("x".into())
        );
        assert_eq!(
            err("3D").kind(),
            &DurationErrorKind::UnknownUnit("D".into())
        );
        assert_eq!(
            err("1d1d").kind(),
            &DurationErrorKind::UnitOrder("d".into())
        );
        assert_eq!(
            err("1.5d").kind(),
            &DurationErrorKind::UnknownUnit("d".into())
        );
        assert_eq!(err("abc").kind(), &DurationErrorKind::Syntax);
        for bad in [
            "-", "+", ".", ".s", "1h 30m", " 5m", "5m ", "1..5s", "--1s", "1e3s",
        ] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(
            err("5x")
                .to_string()
                .starts_with("invalid duration \"5x\": unknown unit")
        );
    }

    #[test]
    fn out_of_range_is_an_error_not_a_wrap() {
        assert_eq!(
            err("99999999999999999999y").kind(),
            &DurationErrorKind::OutOfRange
        );
        assert_eq!(err("600000000y").kind(), &DurationErrorKind::OutOfRange);
        assert_eq!(
            err("99999999999999999999999999h").kind(),
            &DurationErrorKind::OutOfRange
        );
        let max = Duration::MAX.to_string();
        assert_eq!(max.parse::<Duration>().unwrap(), Duration::MAX);
        assert_eq!(ms("18446744073709551615ms"), u64::MAX);
        assert_eq!(
            err("18446744073709551616ms").kind(),
            &DurationErrorKind::OutOfRange
        );
    }

    #[test]
    fn display_is_prometheus_canonical() {
        let cases = [
            (0, "0s"),
            (1, "1ms"),
            (1_000, "1s"),
            (90 * MS_PER_MINUTE, "1h30m"),
            (MS_PER_DAY, "1d"),
            (MS_PER_WEEK, "1w"),
            (MS_PER_YEAR, "1y"),
            (48 * MS_PER_HOUR, "2d"),
            (
                MS_PER_YEAR + MS_PER_WEEK + MS_PER_DAY + MS_PER_HOUR + 61_001,
                "1y1w1d1h1m1s1ms",
            ),
        ];
        for (millis, want) in cases {
            assert_eq!(Duration::from_millis(millis).to_string(), want);
        }
        assert_eq!(ms("1.5h").to_string(), (90 * MS_PER_MINUTE).to_string());
        assert_eq!("1.5h".parse::<Duration>().unwrap().to_string(), "1h30m");
    }

    #[test]
    fn conversions() {
        let d = Duration::from_secs(90);
        assert_eq!(d.as_millis(), 90_000);
        assert_eq!(d.as_secs(), 90);
        assert_eq!(d.to_std(), std::time::Duration::from_secs(90));
        assert_eq!(
            std::time::Duration::from(d),
            std::time::Duration::from_secs(90)
        );
        assert_eq!(
            Duration::from_std(std::time::Duration::from_micros(1_999)).as_millis(),
            1
        );
        assert_eq!(Duration::MAX.as_millis_i64(), i64::MAX);
        assert!(Duration::ZERO.is_zero());
        assert_eq!(Duration::from_days(u64::MAX), Duration::MAX);
    }

    proptest! {
        #[test]
        fn display_round_trips(millis in any::<u64>()) {
            let d = Duration::from_millis(millis);
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
            prop_assert_eq!(Duration::parse_prometheus(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn prometheus_components_sum(parts in proptest::collection::vec(proptest::option::of(0u64..10_000), 7)) {
            let mut s = String::new();
            let mut want = 0u64;
            for ((unit, mult), n) in PROMETHEUS_UNITS.iter().zip(&parts) {
                if let Some(n) = n {
                    s.push_str(&format!("{n}{unit}"));
                    want += n * mult;
                }
            }
            prop_assume!(!s.is_empty());
            prop_assert_eq!(ms(&s), want);
        }

        #[test]
        fn go_components_in_any_order(h in 0u64..1000, m in 0u64..1000, sec in 0u64..1000, order in 0usize..6) {
            let parts = [format!("{h}h"), format!("{m}m"), format!("{sec}s")];
            let perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
            let s: String = perms[order].iter().map(|&i| parts[i].as_str()).collect();
            prop_assert_eq!(ms(&s), h * MS_PER_HOUR + m * MS_PER_MINUTE + sec * 1_000);
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<Duration>();
        }

        #[test]
        fn never_panics_on_near_misses(s in "[-+]?[0-9.]{0,22}(y|w|d|h|m|s|ms|us|µs|ns|x)?[0-9.]{0,4}(h|m|s)?") {
            let _ = s.parse::<Duration>();
        }
    }
}
