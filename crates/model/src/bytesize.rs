//! Byte sizes as Thanos' kingpin `Bytes()` flags spell them (`--index-cache-size=250MB`,
//! `--chunk-pool-size=2GB`, `--compact.block-max-index-size=64GB`).
//!
//! Kingpin parses those flags with `units.ParseBase2Bytes` from `alecthomas/units`, and
//! [`ByteSize`] accepts exactly that language:
//!
//! * A sequence of `<decimal><unit>` elements, each decimal with an optional fraction
//!   (`1.5GB`, `.5KiB`), summed: `1GB512MB` is 1.5 GiB. A bare `0` needs no unit.
//! * Units are **powers of 1024 either way they are spelled**: `B`, then `KB MB GB TB PB EB`
//!   or `KiB MiB GiB TiB PiB EiB` (so `2GB` = 2·1024³ bytes, the same as `2GiB`). One string
//!   must use one spelling: `1GiB512MB` is rejected, as upstream tries each spelling's table
//!   separately.
//! * Units are case-sensitive: `kB`, `mb`, `Gb` are rejected (upstream deliberately refuses
//!   lowercase `k`, which means 1000 in SI).
//! * A bare number other than `0` is rejected (`1024` has no unit; write `1024B`).
//! * No whitespace anywhere. A leading `+` is accepted; a leading `-` is accepted only for a zero
//!   value (upstream would return a negative size, which no flag can use).
//!
//! Two deliberate differences, both only at the edges: arithmetic is exact (upstream sums in
//! `float64`, which can be off by a few bytes above 2⁵³), and the range is `u64` (upstream stops
//! at 2⁶³-1). Fractional results are truncated to whole bytes, as upstream does.
//!
//! [`Display`](fmt::Display) prints upstream's `Base2Bytes.String()` form: the value split into
//! 1024-powers, largest first, zero parts omitted, with `iB` suffixes (`2GiB`, `250MiB`,
//! `1KiB512B`, `0B`). That form always parses back to the same value.

use std::fmt;
use std::str::FromStr;

use crate::unitnum::{TermError, next_term};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
const PIB: u64 = 1 << 50;
const EIB: u64 = 1 << 60;

/// The `...iB` spelling (`units.MakeUnitMap("iB", "B", 1024)`).
const IEC_UNITS: [(&str, u64); 7] = [
    ("B", 1),
    ("KiB", KIB),
    ("MiB", MIB),
    ("GiB", GIB),
    ("TiB", TIB),
    ("PiB", PIB),
    ("EiB", EIB),
];

/// The `...B` spelling, still base 2 (`units.MakeUnitMap("B", "B", 1024)`).
const LEGACY_UNITS: [(&str, u64); 7] = [
    ("B", 1),
    ("KB", KIB),
    ("MB", MIB),
    ("GB", GIB),
    ("TB", TIB),
    ("PB", PIB),
    ("EB", EIB),
];

/// A number of bytes, parsed and printed the way Thanos' size flags do.
///
/// See the [module documentation](self) for the accepted syntax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// One byte.
    pub const B: u64 = 1;
    /// 1024 bytes.
    pub const KIB: u64 = KIB;
    /// 1024² bytes.
    pub const MIB: u64 = MIB;
    /// 1024³ bytes.
    pub const GIB: u64 = GIB;
    /// 1024⁴ bytes.
    pub const TIB: u64 = TIB;

    /// `n` bytes.
    pub const fn new(n: u64) -> Self {
        ByteSize(n)
    }

    /// `n` KiB, saturating.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n.saturating_mul(KIB))
    }

    /// `n` MiB, saturating.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n.saturating_mul(MIB))
    }

    /// `n` GiB, saturating.
    pub const fn gib(n: u64) -> Self {
        ByteSize(n.saturating_mul(GIB))
    }

    /// The number of bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The number of bytes as `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl From<u64> for ByteSize {
    fn from(n: u64) -> Self {
        ByteSize(n)
    }
}

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> Self {
        b.0
    }
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Upstream tries the `iB` table first and falls back to the plain `B` table.
        let iec_err = match parse_with(s, &IEC_UNITS) {
            Ok(n) => return Ok(ByteSize(n)),
            Err(e) => e,
        };
        let legacy_err = match parse_with(s, &LEGACY_UNITS) {
            Ok(n) => return Ok(ByteSize(n)),
            Err(e) => e,
        };
        let kind = match (iec_err, legacy_err) {
            // Each table knows the unit the other one choked on: the spellings are mixed.
            (SizeErrorKind::UnknownUnit(a), SizeErrorKind::UnknownUnit(b))
                if is_unit(&a, &LEGACY_UNITS) && is_unit(&b, &IEC_UNITS) =>
            {
                SizeErrorKind::MixedUnits
            }
            // Otherwise report the table that understood the units.
            (a, SizeErrorKind::UnknownUnit(_)) if !matches!(a, SizeErrorKind::UnknownUnit(_)) => a,
            (_, b) => b,
        };
        Err(ParseByteSizeError {
            input: s.to_owned(),
            kind,
        })
    }
}

impl fmt::Display for ByteSize {
    /// Upstream's `Base2Bytes.String()`: `2GiB`, `250MiB`, `1KiB512B`, `0B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0B");
        }
        for (unit, mult) in IEC_UNITS.iter().rev() {
            let v = (self.0 / mult) % 1024;
            // The largest unit takes everything above it (at most 15 for EiB in a u64).
            let v = if *mult == EIB { self.0 / mult } else { v };
            if v > 0 {
                write!(f, "{v}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Why a size string was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SizeErrorKind {
    /// The string is empty.
    Empty,
    /// A negative, non-zero size.
    Negative,
    /// The value does not fit in `u64` bytes.
    OutOfRange,
    /// A number without a unit (e.g. `1024`).
    MissingUnit,
    /// A unit that is not one of the case-sensitive base-2 units (e.g. `mb`, `kB`, `G`).
    UnknownUnit(String),
    /// Both `KiB`-style and `KB`-style units in one string.
    MixedUnits,
    /// Anything else (no digits, stray characters, whitespace…).
    Syntax,
}

impl fmt::Display for SizeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: &str = "B, KB, MB, GB, TB, PB, EB or KiB, MiB, GiB, TiB, PiB, EiB; all \
                             powers of 1024, case-sensitive";
        match self {
            SizeErrorKind::Empty => f.write_str("empty size"),
            SizeErrorKind::Negative => f.write_str("sizes cannot be negative"),
            SizeErrorKind::OutOfRange => f.write_str("size out of range"),
            SizeErrorKind::MissingUnit => {
                write!(
                    f,
                    "missing unit (only 0 may omit it; e.g. 512MB, 2GB; units: {UNITS})"
                )
            }
            SizeErrorKind::UnknownUnit(u) => write!(f, "unknown unit {u:?} (units: {UNITS})"),
            SizeErrorKind::MixedUnits => {
                f.write_str("cannot mix KiB-style and KB-style units in one size")
            }
            SizeErrorKind::Syntax => write!(f, "not a valid size (e.g. 250MB, 2GB, 1.5GiB)"),
        }
    }
}

/// A size string that could not be parsed; names the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {kind}")]
pub struct ParseByteSizeError {
    input: String,
    kind: SizeErrorKind,
}

impl ParseByteSizeError {
    /// The rejected input.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it was rejected.
    pub fn kind(&self) -> &SizeErrorKind {
        &self.kind
    }
}

fn is_unit(u: &str, table: &[(&str, u64)]) -> bool {
    table.iter().any(|&(name, _)| name == u)
}

/// Fixed-point scale for exact sums of fractional elements.
const FRACTION_DIGITS: u32 = 18;
const FRACTION_SCALE: u128 = 10u128.pow(FRACTION_DIGITS);

/// `units.ParseUnit` over one unit table, in exact arithmetic.
fn parse_with(s: &str, table: &[(&str, u64)]) -> Result<u64, SizeErrorKind> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body == "0" {
        return Ok(0);
    }
    if body.is_empty() {
        return Err(if s.is_empty() {
            SizeErrorKind::Empty
        } else {
            SizeErrorKind::Syntax
        });
    }
    let limit = (u128::from(u64::MAX) + 1) * FRACTION_SCALE; // exclusive
    let mut total: u128 = 0; // bytes × FRACTION_SCALE
    let mut rest = body;
    while !rest.is_empty() {
        let (term, after) = next_term(rest).map_err(|e| match e {
            TermError::NoDigits => SizeErrorKind::Syntax,
            TermError::MissingUnit => SizeErrorKind::MissingUnit,
        })?;
        let (int_digits, frac_digits, unit) = (term.int, term.frac, term.unit);
        let mult = table
            .iter()
            .find(|&&(name, _)| name == unit)
            .map(|&(_, m)| u128::from(m))
            .ok_or_else(|| SizeErrorKind::UnknownUnit(unit.to_owned()))?;

        let int_part: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| SizeErrorKind::OutOfRange)?
        };
        let mut v = int_part
            .checked_mul(mult)
            .and_then(|x| x.checked_mul(FRACTION_SCALE))
            .ok_or(SizeErrorKind::OutOfRange)?;
        if !frac_digits.is_empty() {
            let kept = &frac_digits[..frac_digits.len().min(FRACTION_DIGITS as usize)];
            let f: u128 = kept.parse().map_err(|_| SizeErrorKind::Syntax)?;
            // Pad the fraction to FRACTION_DIGITS digits: f / 10^len == padded / 10^18.
            let padded = f * 10u128.pow(FRACTION_DIGITS - kept.len() as u32);
            v = v
                .checked_add(padded * mult)
                .ok_or(SizeErrorKind::OutOfRange)?;
        }
        total = total.checked_add(v).ok_or(SizeErrorKind::OutOfRange)?;
        if total >= limit {
            return Err(SizeErrorKind::OutOfRange);
        }
        rest = after;
    }
    let bytes = (total / FRACTION_SCALE) as u64; // < limit, so fits
    if negative && total != 0 {
        return Err(SizeErrorKind::Negative);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(s: &str) -> u64 {
        s.parse::<ByteSize>()
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .0
    }

    fn err(s: &str) -> ParseByteSizeError {
        s.parse::<ByteSize>().expect_err(s)
    }

    #[test]
    fn thanos_defaults() {
        assert_eq!(bytes("2GB"), 2 * GIB);
        assert_eq!(bytes("250MB"), 250 * MIB);
        assert_eq!(bytes("500MB"), 500 * MIB);
        assert_eq!(bytes("64GB"), 64 * GIB);
    }

    #[test]
    fn both_spellings_are_base_2() {
        assert_eq!(bytes("1KiB"), 1024);
        assert_eq!(bytes("1KB"), 1024);
        assert_eq!(bytes("1GiB"), GIB);
        assert_eq!(bytes("1GB"), GIB);
        assert_eq!(bytes("1TB"), TIB);
        assert_eq!(bytes("1PiB"), PIB);
        assert_eq!(bytes("1EB"), EIB);
        assert_eq!(bytes("1B"), 1);
        assert_eq!(bytes("0B"), 0);
        assert_eq!(bytes("0"), 0);
        assert_eq!(bytes("+0"), 0);
        assert_eq!(bytes("-0"), 0);
        assert_eq!(bytes("+1KB"), 1024);
    }

    #[test]
    fn fractions_and_sums() {
        assert_eq!(bytes("1.5GB"), GIB + GIB / 2);
        assert_eq!(bytes(".5KiB"), 512);
        assert_eq!(bytes("1.KB"), 1024);
        assert_eq!(bytes("0.3KB"), 307); // 307.2, truncated
        assert_eq!(bytes("1GB512MB"), GIB + 512 * MIB);
        assert_eq!(bytes("1KiB512B"), 1536);
        assert_eq!(bytes("0.5B0.5B"), 1); // truncation happens on the sum, as upstream
        assert_eq!(bytes("1.5B"), 1);
    }

    #[test]
    fn rejects_what_upstream_rejects() {
        assert_eq!(err("").kind(), &SizeErrorKind::Empty);
        assert_eq!(err("1024").kind(), &SizeErrorKind::MissingUnit);
        assert_eq!(
            err("250mb").kind(),
            &SizeErrorKind::UnknownUnit("mb".into())
        );
        assert_eq!(err("1kB").kind(), &SizeErrorKind::UnknownUnit("kB".into()));
        assert_eq!(
            err("1kiB").kind(),
            &SizeErrorKind::UnknownUnit("kiB".into())
        );
        assert_eq!(err("2G").kind(), &SizeErrorKind::UnknownUnit("G".into()));
        assert_eq!(err("2Gi").kind(), &SizeErrorKind::UnknownUnit("Gi".into()));
        assert_eq!(err("1GiB512MB").kind(), &SizeErrorKind::MixedUnits);
        assert_eq!(err("-1GB").kind(), &SizeErrorKind::Negative);
        assert_eq!(
            err("2 GB").kind(),
            &SizeErrorKind::UnknownUnit(" GB".into())
        );
        for bad in [
            "GB", ".GB", "-", "+", " 1GB", "1GB ", "1..5GB", "1e3B", "--1B", "1,5GB",
        ] {
            assert!(
                bad.parse::<ByteSize>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let e = err("250mb");
        assert_eq!(e.input(), "250mb");
        assert!(
            e.to_string()
                .starts_with("invalid size \"250mb\": unknown unit \"mb\""),
            "{e}"
        );
    }

    #[test]
    fn range() {
        assert_eq!(bytes("15EiB"), 15 * EIB);
        assert_eq!(err("16EiB").kind(), &SizeErrorKind::OutOfRange);
        assert_eq!(bytes("18446744073709551615B"), u64::MAX);
        assert_eq!(
            err("18446744073709551616B").kind(),
            &SizeErrorKind::OutOfRange
        );
        assert_eq!(
            err("99999999999999999999999999999999999999999B").kind(),
            &SizeErrorKind::OutOfRange
        );
        assert_eq!(
            ByteSize(u64::MAX).to_string().parse::<ByteSize>().unwrap(),
            ByteSize(u64::MAX)
        );
    }

    #[test]
    fn display_like_base2bytes_string() {
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(ByteSize(1).to_string(), "1B");
        assert_eq!(ByteSize(1024).to_string(), "1KiB");
        assert_eq!(ByteSize(1536).to_string(), "1KiB512B");
        assert_eq!(ByteSize(250 * MIB).to_string(), "250MiB");
        assert_eq!(ByteSize(2 * GIB).to_string(), "2GiB");
        assert_eq!(ByteSize(GIB + 1).to_string(), "1GiB1B");
        assert_eq!(ByteSize(15 * EIB).to_string(), "15EiB");
        assert_eq!("2GB".parse::<ByteSize>().unwrap().to_string(), "2GiB");
        assert_eq!(ByteSize::gib(2), ByteSize(2 * GIB));
        assert_eq!(ByteSize::mib(250).as_u64(), 250 * MIB);
        assert_eq!(ByteSize::kib(1).as_usize(), 1024);
    }

    proptest! {
        #[test]
        fn display_round_trips(n in any::<u64>()) {
            prop_assert_eq!(ByteSize(n).to_string().parse::<ByteSize>().unwrap(), ByteSize(n));
        }

        #[test]
        fn legacy_and_iec_agree(n in 0u64..10_000, unit in 1usize..6) {
            let a = format!("{n}{}", LEGACY_UNITS[unit].0).parse::<ByteSize>();
            let b = format!("{n}{}", IEC_UNITS[unit].0).parse::<ByteSize>();
            prop_assert_eq!(a.clone().unwrap(), b.unwrap());
            prop_assert_eq!(a.unwrap().0, n * LEGACY_UNITS[unit].1);
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<ByteSize>();
        }

        #[test]
        fn never_panics_on_near_misses(s in "[-+]?[0-9.]{0,24}(B|KB|KiB|MB|GiB|EB|EiB|x)?[0-9.]{0,4}(B|GB)?") {
            let _ = s.parse::<ByteSize>();
        }
    }
}
