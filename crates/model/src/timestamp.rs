//! Timestamps: RFC 3339 parsing and formatting, and Thanos' `--min-time` / `--max-time` values.
//!
//! All instants are Prometheus timestamps: milliseconds since the Unix epoch (UTC, no leap
//! seconds), as `i64`. Dates use the proleptic Gregorian calendar, so year 0000 exists and is a
//! leap year, as in Go.
//!
//! [`TimeOrDuration`] mirrors Thanos' `model.TimeOrDurationValue` (`pkg/model/timeduration.go`):
//! the flag value is first tried as an RFC 3339 time (`time.Parse(time.RFC3339, …)`); if that
//! fails, an optional leading `-` is stripped and the rest parsed as a duration, which is then
//! added to "now" (negated if the sign was there) when the value is resolved. Thanos' defaults
//! are [`MIN_TIME_RFC3339`] and [`MAX_TIME_RFC3339`], i.e. "no limit".

use std::fmt;
use std::str::FromStr;

use crate::duration::{Duration, ParseDurationError};

/// Thanos' default `--min-time`: the earliest instant the flag can express.
pub const MIN_TIME_RFC3339: &str = "0000-01-01T00:00:00Z";
/// Thanos' default `--max-time`: the latest instant the flag can express.
pub const MAX_TIME_RFC3339: &str = "9999-12-31T23:59:59Z";
/// [`MIN_TIME_RFC3339`] in milliseconds since the Unix epoch.
pub const MIN_TIME_MS: i64 = -62_167_219_200_000;
/// [`MAX_TIME_RFC3339`] in milliseconds since the Unix epoch.
pub const MAX_TIME_MS: i64 = 253_402_300_799_000;

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_DAY: i64 = 86_400_000;

/// A time-range bound: an absolute instant, or an offset from "now".
///
/// Parsing (see the [module documentation](self)) accepts:
/// * an RFC 3339 time: `2024-01-02T15:04:05Z`, `2024-01-02T15:04:05.123+02:00` (fractional
///   seconds beyond milliseconds are truncated);
/// * a duration, optionally signed: `-2w`, `-6h30m`, `2h45m` (in the future), `-1.5h`. The
///   duration accepts both syntaxes of [`Duration`]. Thanos itself accepts only `-` and only
///   Prometheus durations; a leading `+` and Go-style durations are Strata extensions that no
///   valid Thanos value can collide with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeOrDuration {
    /// An absolute instant, in milliseconds since the Unix epoch.
    Time(i64),
    /// A signed offset from "now" in milliseconds; negative values lie in the past.
    Relative(i64),
}

impl TimeOrDuration {
    /// Thanos' default `--min-time` (`0000-01-01T00:00:00Z`): no lower limit.
    pub const fn min_time() -> Self {
        TimeOrDuration::Time(MIN_TIME_MS)
    }

    /// Thanos' default `--max-time` (`9999-12-31T23:59:59Z`): no upper limit.
    pub const fn max_time() -> Self {
        TimeOrDuration::Time(MAX_TIME_MS)
    }

    /// The instant this value denotes when "now" is `now_ms` (milliseconds since the epoch), in
    /// milliseconds since the epoch. Relative values saturate instead of overflowing.
    pub const fn resolve(self, now_ms: i64) -> i64 {
        match self {
            TimeOrDuration::Time(t) => t,
            TimeOrDuration::Relative(offset) => now_ms.saturating_add(offset),
        }
    }
}

impl FromStr for TimeOrDuration {
    type Err = ParseTimeOrDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let time_err = match parse_rfc3339(s) {
            Ok(ms) => return Ok(TimeOrDuration::Time(ms)),
            Err(e) => e,
        };
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let dur_err = match rest.parse::<Duration>() {
            Ok(d) => {
                let ms = i64::try_from(d.as_millis()).map_err(|_| ParseTimeOrDurationError {
                    input: s.to_owned(),
                    reason: TimeOrDurationReason::OutOfRange,
                })?;
                return Ok(TimeOrDuration::Relative(if negative { -ms } else { ms }));
            }
            Err(e) => e,
        };
        // Explain the syntax the input was evidently aiming for.
        let b = s.as_bytes();
        let looks_like_date = b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-';
        let reason = if s.is_empty() {
            TimeOrDurationReason::Empty
        } else if looks_like_date {
            TimeOrDurationReason::Time(time_err)
        } else {
            TimeOrDurationReason::Duration(dur_err)
        };
        Err(ParseTimeOrDurationError {
            input: s.to_owned(),
            reason,
        })
    }
}

impl fmt::Display for TimeOrDuration {
    /// An RFC 3339 time in UTC, or a signed Prometheus duration (`-2w`); both parse back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TimeOrDuration::Time(ms) => f.write_str(&format_rfc3339(ms)),
            TimeOrDuration::Relative(offset) => {
                let d = Duration::from_millis(offset.unsigned_abs());
                if offset < 0 {
                    write!(f, "-{d}")
                } else {
                    write!(f, "{d}")
                }
            }
        }
    }
}

/// Why a `--min-time` / `--max-time` value was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeOrDurationReason {
    /// The value is empty.
    Empty,
    /// It looks like a date but is not a valid RFC 3339 time.
    Time(ParseRfc3339Error),
    /// It is neither a time nor a valid (signed) duration.
    Duration(ParseDurationError),
    /// The duration does not fit in a signed millisecond offset.
    OutOfRange,
}

/// A value that is neither an RFC 3339 time nor a relative duration; names the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid time or duration {input:?}: {reason}; expected an RFC 3339 time such as \
     2024-01-02T15:04:05Z or a duration relative to now such as -2w or -6h30m"
)]
pub struct ParseTimeOrDurationError {
    input: String,
    reason: TimeOrDurationReason,
}

impl ParseTimeOrDurationError {
    /// The rejected input.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &TimeOrDurationReason {
        &self.reason
    }
}

impl fmt::Display for TimeOrDurationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeOrDurationReason::Empty => f.write_str("empty value"),
            TimeOrDurationReason::Time(e) => write!(f, "{}", e.kind),
            TimeOrDurationReason::Duration(e) => write!(f, "{}", e.kind()),
            TimeOrDurationReason::OutOfRange => f.write_str("duration out of range"),
        }
    }
}

/// Why an RFC 3339 string was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rfc3339ErrorKind {
    /// Not of the form `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    Syntax,
    /// Month not in 01–12.
    MonthOutOfRange,
    /// Day not in the month (e.g. `02-30`, `02-29` in a non-leap year).
    DayOutOfRange,
    /// Hour not in 00–23.
    HourOutOfRange,
    /// Minute not in 00–59.
    MinuteOutOfRange,
    /// Second not in 00–59 (leap seconds are rejected, as in Go).
    SecondOutOfRange,
    /// Time-zone offset hour not in 00–23 or minute not in 00–59.
    OffsetOutOfRange,
}

impl fmt::Display for Rfc3339ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rfc3339ErrorKind::Syntax => {
                "not an RFC 3339 time (YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM)"
            }
            Rfc3339ErrorKind::MonthOutOfRange => "month out of range",
            Rfc3339ErrorKind::DayOutOfRange => "day out of range",
            Rfc3339ErrorKind::HourOutOfRange => "hour out of range",
            Rfc3339ErrorKind::MinuteOutOfRange => "minute out of range",
            Rfc3339ErrorKind::SecondOutOfRange => "second out of range",
            Rfc3339ErrorKind::OffsetOutOfRange => "time zone offset out of range",
        })
    }
}

/// An invalid RFC 3339 time; names the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 time {input:?}: {kind}")]
pub struct ParseRfc3339Error {
    input: String,
    kind: Rfc3339ErrorKind,
}

impl ParseRfc3339Error {
    /// The rejected input.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it was rejected.
    pub fn kind(&self) -> Rfc3339ErrorKind {
        self.kind
    }
}

/// Parses an RFC 3339 time as Go's `time.Parse(time.RFC3339, s)` does, returning milliseconds
/// since the Unix epoch (sub-millisecond digits truncated, i.e. rounded toward the past).
///
/// Accepted: `YYYY-MM-DDTHH:MM:SS`, then optionally `.` or `,` and one or more fraction digits,
/// then `Z` or `+HH:MM` / `-HH:MM`. `T` and `Z` must be upper case; the year has exactly four
/// digits (0000–9999).
pub fn parse_rfc3339(s: &str) -> Result<i64, ParseRfc3339Error> {
    parse_rfc3339_inner(s).map_err(|kind| ParseRfc3339Error {
        input: s.to_owned(),
        kind,
    })
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn parse_rfc3339_inner(s: &str) -> Result<i64, Rfc3339ErrorKind> {
    use Rfc3339ErrorKind as K;
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(K::Syntax);
    }
    let field = |r: std::ops::Range<usize>| digits(&b[r]).ok_or(K::Syntax);
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);

    // Optional fraction: `.` or `,` then at least one digit; only milliseconds are kept.
    let mut i = 19;
    let mut frac_ms = 0i64;
    if matches!(b[i], b'.' | b',') {
        let start = i + 1;
        let end = b[start..]
            .iter()
            .position(|c| !c.is_ascii_digit())
            .map_or(b.len(), |p| start + p);
        if end == start {
            return Err(K::Syntax);
        }
        for (n, &c) in b[start..end.min(start + 3)].iter().enumerate() {
            frac_ms += i64::from(c - b'0') * [100, 10, 1][n];
        }
        i = end;
    }

    let offset_secs: i64 = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2]).ok_or(K::Syntax)?;
            let om = digits(&[*m1, *m2]).ok_or(K::Syntax)?;
            if oh > 23 || om > 59 {
                return Err(K::OffsetOutOfRange);
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return Err(K::Syntax),
    };

    if !(1..=12).contains(&month) {
        return Err(K::MonthOutOfRange);
    }
    if day < 1 || day > days_in_month(i64::from(year), month) {
        return Err(K::DayOutOfRange);
    }
    if hour > 23 {
        return Err(K::HourOutOfRange);
    }
    if minute > 59 {
        return Err(K::MinuteOutOfRange);
    }
    if second > 59 {
        return Err(K::SecondOutOfRange);
    }

    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    Ok(secs * MS_PER_SECOND + frac_ms)
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC, with a `.mmm` fraction only when
/// it is non-zero: `2024-01-02T15:04:05Z`, `2024-01-02T15:04:05.120Z`.
///
/// Years outside 0000–9999 are printed with as many digits as needed (and a sign when
/// negative), which is no longer RFC 3339 but never panics.
pub fn format_rfc3339(ms: i64) -> String {
    format_inner(ms, false)
}

/// Like [`format_rfc3339`] but always with a three-digit millisecond fraction
/// (`2024-01-02T15:04:05.000Z`), for fixed-width output such as log timestamps.
pub fn format_rfc3339_millis(ms: i64) -> String {
    format_inner(ms, true)
}

fn format_inner(ms: i64, always_millis: bool) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / MS_PER_SECOND;
    let millis = ms_of_day % MS_PER_SECOND;
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let year = if (0..=9999).contains(&y) {
        format!("{y:04}")
    } else {
        format!("{y}")
    };
    if always_millis || millis != 0 {
        format!("{year}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    } else {
        format!("{year}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }
}

fn is_leap_year(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
///
/// Counts in 400-year eras (146097 days each) of years that start on 1 March, so the leap day
/// is the last day of its year and month lengths follow a fixed 5-month pattern.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400; // 0..=399
    let month_from_march = i64::from((month + 9) % 12); // March = 0
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468 = days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097; // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0..=11
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> i64 {
        parse_rfc3339(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(t("1970-01-01T00:00:00Z"), 0);
        assert_eq!(t("2024-01-02T15:04:05Z"), 1_704_207_845_000);
        assert_eq!(t("2024-01-02T15:04:05.123Z"), 1_704_207_845_123);
        assert_eq!(t("2024-01-02T15:04:05.1239999Z"), 1_704_207_845_123);
        assert_eq!(t("2024-01-02T15:04:05,5Z"), 1_704_207_845_500);
        assert_eq!(t("2024-01-02T17:04:05+02:00"), 1_704_207_845_000);
        assert_eq!(t("2024-01-02T10:04:05-05:00"), 1_704_207_845_000);
        assert_eq!(t("2024-02-29T00:00:00Z"), 1_709_164_800_000);
        assert_eq!(t("2000-02-29T00:00:00Z"), 951_782_400_000);
        assert_eq!(t("1969-12-31T23:59:59.999Z"), -1);
        assert_eq!(t(MIN_TIME_RFC3339), MIN_TIME_MS);
        assert_eq!(t(MAX_TIME_RFC3339), MAX_TIME_MS);
        assert_eq!(t("0000-02-29T00:00:00Z"), MIN_TIME_MS + 59 * MS_PER_DAY);
    }

    #[test]
    fn rfc3339_rejections() {
        use Rfc3339ErrorKind as K;
        let kind = |s: &str| parse_rfc3339(s).unwrap_err().kind();
        assert_eq!(kind("2024-13-01T00:00:00Z"), K::MonthOutOfRange);
        assert_eq!(kind("2024-00-01T00:00:00Z"), K::MonthOutOfRange);
        assert_eq!(kind("2023-02-29T00:00:00Z"), K::DayOutOfRange);
        assert_eq!(kind("1900-02-29T00:00:00Z"), K::DayOutOfRange);
        assert_eq!(kind("2024-04-31T00:00:00Z"), K::DayOutOfRange);
        assert_eq!(kind("2024-01-00T00:00:00Z"), K::DayOutOfRange);
        assert_eq!(kind("2024-01-01T24:00:00Z"), K::HourOutOfRange);
        assert_eq!(kind("2024-01-01T00:60:00Z"), K::MinuteOutOfRange);
        assert_eq!(kind("2024-01-01T00:00:60Z"), K::SecondOutOfRange);
        assert_eq!(kind("2024-01-01T00:00:00+24:00"), K::OffsetOutOfRange);
        for bad in [
            "",
            "2024-01-02",
            "2024-01-02 15:04:05Z",
            "2024-01-02t15:04:05Z",
            "2024-01-02T15:04:05z",
            "2024-01-02T15:04:05",
            "2024-01-02T15:04:05+0200",
            "2024-01-02T15:04:05.Z",
            "2024-01-02T15:04:05Z ",
            "24-01-02T15:04:05Z",
            "+2024-01-02T15:04:05Z",
            "2024-1-02T15:04:05Z",
            "２０２４-01-02T15:04:05Z",
        ] {
            assert_eq!(kind(bad), K::Syntax, "{bad:?}");
        }
        let e = parse_rfc3339("2023-02-29T00:00:00Z").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid RFC 3339 time \"2023-02-29T00:00:00Z\": day out of range"
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(1_704_207_845_120),
            "2024-01-02T15:04:05.120Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(MIN_TIME_MS), MIN_TIME_RFC3339);
        assert_eq!(format_rfc3339(MAX_TIME_MS), MAX_TIME_RFC3339);
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        // Out of RFC 3339's range: still no panic.
        let _ = format_rfc3339(i64::MIN);
        let _ = format_rfc3339(i64::MAX);
        assert_eq!(
            format_rfc3339(MIN_TIME_MS - MS_PER_DAY),
            "-1-12-31T00:00:00Z"
        );
    }

    #[test]
    fn time_or_duration_parsing() {
        let p = |s: &str| {
            s.parse::<TimeOrDuration>()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            p("2024-01-02T15:04:05Z"),
            TimeOrDuration::Time(1_704_207_845_000)
        );
        assert_eq!(
            p("2024-01-02T15:04:05+01:00"),
            TimeOrDuration::Time(1_704_204_245_000)
        );
        assert_eq!(p("-2w"), TimeOrDuration::Relative(-14 * MS_PER_DAY));
        assert_eq!(p("-6h"), TimeOrDuration::Relative(-6 * 3_600_000));
        assert_eq!(p("-1d"), TimeOrDuration::Relative(-MS_PER_DAY));
        assert_eq!(p("2h45m"), TimeOrDuration::Relative(9_900_000));
        assert_eq!(p("+1d"), TimeOrDuration::Relative(MS_PER_DAY));
        assert_eq!(p("-1.5h"), TimeOrDuration::Relative(-5_400_000));
        assert_eq!(p("0"), TimeOrDuration::Relative(0));
        assert_eq!(p("-0s"), TimeOrDuration::Relative(0));
        assert_eq!(p(MIN_TIME_RFC3339), TimeOrDuration::min_time());
        assert_eq!(p(MAX_TIME_RFC3339), TimeOrDuration::max_time());
    }

    #[test]
    fn time_or_duration_errors() {
        let e = |s: &str| s.parse::<TimeOrDuration>().unwrap_err();
        assert_eq!(e("").reason(), &TimeOrDurationReason::Empty);
        assert!(matches!(
            e("2024-02-30T00:00:00Z").reason(),
            TimeOrDurationReason::Time(_)
        ));
        assert!(matches!(
            e("2024-01-02").reason(),
            TimeOrDurationReason::Time(_)
        ));
        assert!(matches!(
            e("-2x").reason(),
            TimeOrDurationReason::Duration(_)
        ));
        assert!(matches!(
            e("yesterday").reason(),
            TimeOrDurationReason::Duration(_)
        ));
        assert!(matches!(
            e("--2w").reason(),
            TimeOrDurationReason::Duration(_)
        ));
        assert_eq!(
            e("-18446744073709551615ms").reason(),
            &TimeOrDurationReason::OutOfRange
        );
        let msg = e("2024-02-30T00:00:00Z").to_string();
        assert!(
            msg.starts_with("invalid time or duration \"2024-02-30T00:00:00Z\": day out of range"),
            "{msg}"
        );
        let msg = e("-2x").to_string();
        assert!(
            msg.contains("unknown unit \"x\"") && msg.contains("-2w"),
            "{msg}"
        );
    }

    #[test]
    fn resolve() {
        let now = 1_704_207_845_000;
        assert_eq!(
            TimeOrDuration::Relative(-14 * MS_PER_DAY).resolve(now),
            now - 14 * MS_PER_DAY
        );
        assert_eq!(
            TimeOrDuration::Relative(3_600_000).resolve(now),
            now + 3_600_000
        );
        assert_eq!(TimeOrDuration::Time(5).resolve(now), 5);
        assert_eq!(TimeOrDuration::min_time().resolve(now), MIN_TIME_MS);
        assert_eq!(TimeOrDuration::max_time().resolve(now), MAX_TIME_MS);
        assert_eq!(TimeOrDuration::Relative(i64::MAX).resolve(now), i64::MAX);
        assert_eq!(TimeOrDuration::Relative(i64::MIN).resolve(-now), i64::MIN);
    }

    #[test]
    fn display() {
        assert_eq!(TimeOrDuration::min_time().to_string(), MIN_TIME_RFC3339);
        assert_eq!(TimeOrDuration::max_time().to_string(), MAX_TIME_RFC3339);
        assert_eq!(
            TimeOrDuration::Relative(-14 * MS_PER_DAY).to_string(),
            "-2w"
        );
        assert_eq!(TimeOrDuration::Relative(5_400_000).to_string(), "1h30m");
        assert_eq!(TimeOrDuration::Relative(0).to_string(), "0s");
        assert_eq!(
            TimeOrDuration::Relative(i64::MIN)
                .to_string()
                .parse::<TimeOrDuration>()
                .ok(),
            None
        );
    }

    proptest! {
        #[test]
        fn civil_round_trip(days in -4_000_000i64..4_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m));
            prop_assert!(d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn rfc3339_round_trip(ms in MIN_TIME_MS..=MAX_TIME_MS + 999) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ms)).unwrap(), ms);
            prop_assert_eq!(parse_rfc3339(&format_rfc3339_millis(ms)).unwrap(), ms);
        }

        #[test]
        fn time_or_duration_round_trip(v in prop_oneof![
            (MIN_TIME_MS..=MAX_TIME_MS).prop_map(TimeOrDuration::Time),
            (-i64::MAX..=i64::MAX).prop_map(TimeOrDuration::Relative),
        ]) {
            prop_assert_eq!(v.to_string().parse::<TimeOrDuration>().unwrap(), v);
        }

        #[test]
        fn never_panics(s in "\\PC{0,32}") {
            let _ = s.parse::<TimeOrDuration>();
        }

        #[test]
        fn never_panics_on_near_misses(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.,][0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2}|[+-]?.{0,3})") {
            let _ = s.parse::<TimeOrDuration>();
        }
    }
}
