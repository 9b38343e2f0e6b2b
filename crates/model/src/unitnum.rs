//! The `<number><unit>` sequences shared by Go's duration syntax (`1h30m`, `1.5s`) and
//! `alecthomas/units` sizes (`1.5GiB`, `1GiB512MiB`): a tokenizer, so that both parsers agree
//! on what a term is and differ only in their units and arithmetic.

/// Splits the leading ASCII digits off `s`.
pub(crate) fn split_digits(s: &str) -> (&str, &str) {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

/// One `<digits>[.<digits>]<unit>` term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Term<'a> {
    /// Digits before the point (may be empty: `.5s`).
    pub(crate) int: &'a str,
    /// Digits after the point (empty without a point).
    pub(crate) frac: &'a str,
    /// Everything up to the next digit or point.
    pub(crate) unit: &'a str,
}

/// Why a term could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TermError {
    /// No digits before the unit (`h`, `.s`).
    NoDigits,
    /// Digits without a unit.
    MissingUnit,
}

/// Reads the term at the start of `s` (non-empty) and returns it with the rest.
pub(crate) fn next_term(s: &str) -> Result<(Term<'_>, &str), TermError> {
    let (int, after) = split_digits(s);
    let (frac, after) = match after.strip_prefix('.') {
        Some(f) => split_digits(f),
        None => ("", after),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(TermError::NoDigits);
    }
    let unit_len = after
        .char_indices()
        .find(|&(_, c)| c == '.' || c.is_ascii_digit())
        .map_or(after.len(), |(i, _)| i);
    let (unit, rest) = after.split_at(unit_len);
    if unit.is_empty() {
        return Err(TermError::MissingUnit);
    }
    Ok((Term { int, frac, unit }, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms() {
        let (t, rest) = next_term("1.5h30m").unwrap();
        assert_eq!((t.int, t.frac, t.unit, rest), ("1", "5", "h", "30m"));
        let (t, rest) = next_term(".5GiB").unwrap();
        assert_eq!((t.int, t.frac, t.unit, rest), ("", "5", "GiB", ""));
        assert_eq!(next_term("h"), Err(TermError::NoDigits));
        assert_eq!(next_term("12"), Err(TermError::MissingUnit));
        assert_eq!(split_digits("12ab"), ("12", "ab"));
    }
}
