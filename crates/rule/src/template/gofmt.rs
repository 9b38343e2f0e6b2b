//! Go's `fmt` and `strconv` output formats, reimplemented: templates print values the way Go's
//! `fmt.Sprint` does and `printf` follows Go's verbs, so alert texts come out byte for byte as
//! Prometheus writes them.

use std::fmt::Write as _;

use super::value::{GoMap, GoTime, Value};

/// The decimal digits of a finite, non-negative float and its decimal point position: the value
/// is `0.d1d2d3… × 10^dp`. Trailing zeros are removed (Go's `%g` never prints them).
///
/// `sig` rounds to that many significant digits; `None` gives the shortest digits that read back
/// as the same float (Go's precision -1).
fn decimal_digits(f: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    // Rust's `{:e}` is the shortest round-trip form and `{:.Ne}` rounds correctly, exactly what
    // strconv produces; only the layout differs.
    let s = match sig {
        None => format!("{f:e}"),
        Some(n) => format!("{:.*e}", n.saturating_sub(1), f),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits == [b'0'] {
        return (digits, 1);
    }
    (digits, exp + 1)
}

/// `NaN`, `+Inf` or `-Inf` as Go's fmt prints them (`plus`/`space` only affect NaN's sign).
fn non_finite(f: f64, plus: bool, space: bool) -> String {
    if f.is_nan() {
        if plus {
            "+NaN".into()
        } else if space {
            " NaN".into()
        } else {
            "NaN".into()
        }
    } else if f > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

fn exponent_suffix(out: &mut String, exp: i32, upper: bool) {
    out.push(if upper { 'E' } else { 'e' });
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
}

/// The unsigned body of `%g` / `%v` for a finite float (`prec` None = shortest).
fn g_body(f: f64, prec: Option<usize>, upper: bool) -> String {
    let prec = prec.map(|p| p.max(1));
    let (digits, dp) = decimal_digits(f.abs(), prec);
    // Go: "%e is used if the exponent from the conversion is less than -4 or greater than or
    // equal to the precision. If precision was the shortest possible, use precision 6."
    let eprec = prec.map_or(6, |p| p as i32);
    let exp = dp - 1;
    let mut out = String::new();
    if exp < -4 || exp >= eprec {
        out.push(digits[0] as char);
        if digits.len() > 1 {
            out.push('.');
            out.extend(digits[1..].iter().map(|&d| d as char));
        }
        exponent_suffix(&mut out, exp, upper);
    } else if dp <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-dp) as usize));
        out.extend(digits.iter().map(|&d| d as char));
    } else {
        let dp = dp as usize;
        for i in 0..dp.max(digits.len()) {
            if i == dp {
                out.push('.');
            }
            out.push(digits.get(i).map_or('0', |&d| d as char));
        }
    }
    out
}

/// The unsigned body of `%e` for a finite float.
fn e_body(f: f64, prec: usize, upper: bool) -> String {
    let s = format!("{:.*e}", prec, f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mut out = mantissa.to_owned();
    exponent_suffix(&mut out, exp.parse().unwrap_or(0), upper);
    out
}

/// The unsigned body of `%x` for a finite float: Go's hexadecimal mantissa and binary exponent
/// (`0x1.54p+05`), shortest unless a precision (in hex digits) is given.
fn hex_body(f: f64, prec: Option<usize>, upper: bool) -> String {
    const FRACTION_BITS: u32 = 52;
    let bits = f.to_bits();
    let mut exp = ((bits >> FRACTION_BITS) & 0x7ff) as i32;
    let mut mant = bits & ((1u64 << FRACTION_BITS) - 1);
    if f == 0.0 {
        exp = 0;
    } else if exp == 0 {
        // Subnormal: normalise so the leading 1 sits where a normal float's implicit bit is.
        exp = -1022;
        while mant & (1u64 << FRACTION_BITS) == 0 {
            mant <<= 1;
            exp -= 1;
        }
    } else {
        mant |= 1u64 << FRACTION_BITS;
        exp -= 1023;
    }
    if let Some(p) = prec.filter(|&p| p < 13) {
        // Round to p hex digits, half to even.
        let shift = (13 - p as u32) * 4;
        let rem = mant & ((1u64 << shift) - 1);
        let half = 1u64 << (shift - 1);
        mant >>= shift;
        if rem > half || (rem == half && mant & 1 == 1) {
            mant += 1;
        }
        mant <<= shift;
        if mant >> (FRACTION_BITS + 1) != 0 {
            mant >>= 1;
            exp += 1;
        }
    }
    let lead = mant >> FRACTION_BITS;
    let mut digits = format!("{:013x}", mant & ((1u64 << FRACTION_BITS) - 1));
    match prec {
        None => digits.truncate(digits.trim_end_matches('0').len()),
        Some(p) if p <= 13 => digits.truncate(p),
        Some(p) => digits.extend(std::iter::repeat_n('0', p - 13)),
    }
    let mut out = format!("0x{lead}");
    if !digits.is_empty() {
        out.push('.');
        out.push_str(&digits);
    }
    out.push('p');
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
    if upper { out.to_uppercase() } else { out }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)` with fmt's `+Inf`).
pub(crate) fn format_float_v(f: f64) -> String {
    format_float(f, 'g', None, &Flags::default())
}

/// Go's `%.Ng`, the format the `humanize*` functions use.
pub(crate) fn format_float_g(f: f64, prec: usize) -> String {
    format_float(f, 'g', Some(prec), &Flags::default())
}

fn format_float(f: f64, verb: char, prec: Option<usize>, flags: &Flags) -> String {
    if !f.is_finite() {
        return non_finite(f, flags.plus, flags.space);
    }
    let body = match verb {
        'e' | 'E' => e_body(f, prec.unwrap_or(6), verb == 'E'),
        'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), f.abs()),
        'x' | 'X' => hex_body(f.abs(), prec, verb == 'X'),
        'G' => g_body(f, prec, true),
        _ => g_body(f, prec, false),
    };
    let sign = if f.is_sign_negative() {
        "-"
    } else if flags.plus {
        "+"
    } else if flags.space {
        " "
    } else {
        ""
    };
    format!("{sign}{body}")
}

/// Go's `time.Time.String()` for a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub(crate) fn format_time(t: GoTime) -> String {
    let days = t.secs.div_euclid(86_400);
    let rem = t.secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if t.nanos != 0 {
        let frac = format!("{:09}", t.nanos);
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The calendar fields of a UTC time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: i64,
    pub(crate) minute: i64,
    pub(crate) second: i64,
    pub(crate) year_day: i64,
    /// 0 = Sunday.
    pub(crate) weekday: usize,
}

pub(crate) fn civil(t: GoTime) -> Civil {
    let days = t.secs.div_euclid(86_400);
    let rem = t.secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let jan1 = days_from_civil(year, 1, 1);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        year_day: days - jan1 + 1,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as usize,
    }
}

pub(crate) fn month_name(month: u32) -> &'static str {
    MONTHS[(month as usize + 11) % 12]
}

pub(crate) fn weekday_name(weekday: usize) -> &'static str {
    WEEKDAYS[weekday % 7]
}

/// Days from 1970-01-01 to a proleptic Gregorian date (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Go's `time.Time.Format` for a UTC time: the reference-time layout elements
/// (`2006 01 02 15 04 05 Jan Mon MST -07:00 .000 PM`, …) replaced by this time's fields.
pub(crate) fn format_time_layout(t: GoTime, layout: &str) -> String {
    let c = civil(t);
    let hour12 = if c.hour % 12 == 0 { 12 } else { c.hour % 12 };
    let mut out = String::new();
    let mut rest = layout;
    while let Some(ch) = rest.chars().next() {
        // Longest elements first where one is a prefix of another.
        let elements: &[(&str, String)] = &[
            ("January", month_name(c.month).to_owned()),
            ("Jan", month_name(c.month)[..3].to_owned()),
            ("Monday", weekday_name(c.weekday).to_owned()),
            ("Mon", weekday_name(c.weekday)[..3].to_owned()),
            ("MST", "UTC".to_owned()),
            ("2006", format!("{:04}", c.year)),
            ("002", format!("{:03}", c.year_day)),
            ("__2", format!("{:>3}", c.year_day)),
            ("_2", format!("{:>2}", c.day)),
            ("01", format!("{:02}", c.month)),
            ("02", format!("{:02}", c.day)),
            ("03", format!("{hour12:02}")),
            ("04", format!("{:02}", c.minute)),
            ("05", format!("{:02}", c.second)),
            ("06", format!("{:02}", c.year.rem_euclid(100))),
            ("15", format!("{:02}", c.hour)),
            ("1", c.month.to_string()),
            ("2", c.day.to_string()),
            ("3", hour12.to_string()),
            ("4", c.minute.to_string()),
            ("5", c.second.to_string()),
            ("PM", if c.hour >= 12 { "PM" } else { "AM" }.to_owned()),
            ("pm", if c.hour >= 12 { "pm" } else { "am" }.to_owned()),
            ("-07:00:00", "+00:00:00".to_owned()),
            ("-070000", "+000000".to_owned()),
            ("-07:00", "+00:00".to_owned()),
            ("-0700", "+0000".to_owned()),
            ("-07", "+00".to_owned()),
            ("Z07:00:00", "Z".to_owned()),
            ("Z070000", "Z".to_owned()),
            ("Z07:00", "Z".to_owned()),
            ("Z0700", "Z".to_owned()),
            ("Z07", "Z".to_owned()),
        ];
        if let Some((el, value)) = elements.iter().find(|(el, _)| rest.starts_with(el)) {
            out.push_str(value);
            rest = &rest[el.len()..];
            continue;
        }
        // Fractional seconds: `.000`/`,000` (fixed) or `.999`/`,999` (trailing zeros dropped),
        // only when no digit follows the run.
        if matches!(ch, '.' | ',') {
            let digit = rest[1..].chars().next().filter(|d| matches!(d, '0' | '9'));
            if let Some(d) = digit {
                let run = rest[1..].chars().take_while(|&x| x == d).count();
                if !rest[1 + run..].starts_with(|x: char| x.is_ascii_digit()) {
                    let digits = format!("{:09}", t.nanos);
                    let mut frac = digits[..run.min(9)].to_owned();
                    if d == '9' {
                        frac.truncate(frac.trim_end_matches('0').len());
                    }
                    if d == '0' || !frac.is_empty() {
                        out.push(ch);
                        out.push_str(&frac);
                    }
                    rest = &rest[1 + run..];
                    continue;
                }
            }
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of the 400-year era's years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether Go's `unicode.IsPrint` would hold (approximated: no control or format characters,
/// no separators other than the ASCII space).
pub(crate) fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{600}'..='\u{605}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}' | '\u{e000}'..='\u{f8ff}')
        || ('\u{f0000}'..).contains(&c))
}

/// Go's `strconv.Quote` (`ascii`: `QuoteToASCII`).
pub(crate) fn quote(s: &str, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        quote_char(&mut out, c, '"', ascii);
    }
    out.push('"');
    out
}

/// Go's `strconv.QuoteRune`.
fn quote_rune(c: char, ascii: bool) -> String {
    let mut out = String::from("'");
    quote_char(&mut out, c, '\'', ascii);
    out.push('\'');
    out
}

fn quote_char(out: &mut String, c: char, quote: char, ascii: bool) {
    match c {
        _ if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        _ if (c.is_ascii() || !ascii) && is_print(c) => out.push(c),
        _ if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        _ if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        _ => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// Go's `fmt.Sprint` of one value (`%v`). Query results are the exception: Go prints their
/// sample pointers as addresses, we print the samples (see the module docs).
pub(crate) fn sprint_value(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Byte(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Float(f) => out.push_str(&format_float_v(*f)),
        Value::Str(s) | Value::Html(s) => out.push_str(s),
        Value::Map(m) => sprint_map(out, m),
        Value::Sample(s) => {
            out.push('&');
            sprint_sample(out, s);
        }
        Value::Samples(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push('&');
                sprint_sample(out, s);
            }
            out.push(']');
        }
        Value::Time(t) => out.push_str(&format_time(*t)),
        Value::Data(d) => {
            out.push('{');
            sprint_map(out, &d.labels);
            out.push(' ');
            sprint_map(out, &d.external_labels);
            out.push(' ');
            out.push_str(&d.external_url);
            out.push(' ');
            out.push_str(&format_float_v(d.value));
            out.push('}');
        }
    }
}

/// A sample struct as `{map[…] value}`.
pub(crate) fn sprint_sample(out: &mut String, s: &super::value::Sample) {
    out.push('{');
    sprint_map(out, &s.labels);
    out.push(' ');
    out.push_str(&format_float_v(s.value));
    out.push('}');
}

fn sprint_map(out: &mut String, m: &GoMap) {
    out.push_str("map[");
    for (i, (k, v)) in m.entries.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push(':');
        sprint_value(out, v);
    }
    out.push(']');
}

/// Go's `fmt.Sprint(args...)`: a space between operands when neither side is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = a.string_kind().is_some();
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        sprint_value(&mut out, a);
        prev_string = is_string;
    }
    out
}

/// Go's `fmt.Sprintln(args...)`: spaces between all operands and a final newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        sprint_value(&mut out, a);
    }
    out.push('\n');
    out
}

/// The flags, width and precision of one `printf` directive.
#[derive(Debug, Default, Clone)]
struct Flags {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Flags {
    /// Pads `s` to the width with spaces (or zeros after a sign, for numbers with the `0` flag).
    fn pad(&self, s: String, numeric: bool) -> String {
        let len = s.chars().count();
        let Some(width) = self.width.filter(|&w| w > len) else {
            return s;
        };
        let fill = width - len;
        if self.minus {
            return s + &" ".repeat(fill);
        }
        if self.zero {
            if numeric {
                let sign_len = usize::from(s.starts_with(['-', '+', ' ']));
                let digits_start =
                    if s[sign_len..].starts_with("0x") || s[sign_len..].starts_with("0X") {
                        sign_len + 2
                    } else {
                        sign_len
                    };
                return format!(
                    "{}{}{}",
                    &s[..digits_start],
                    "0".repeat(fill),
                    &s[digits_start..]
                );
            }
            return "0".repeat(fill) + &s;
        }
        " ".repeat(fill) + &s
    }
}

/// The largest width or precision honoured (Go: 1e6, beyond which it reports `%!(BADWIDTH)`).
const MAX_WIDTH: usize = 1_000_000;

/// Go's `fmt.Sprintf`.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next_arg = 0;
    let mut chars = format.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = Flags::default();
        while let Some(&(_, f)) = chars.peek() {
            match f {
                '-' => flags.minus = true,
                '+' => flags.plus = true,
                ' ' => flags.space = true,
                '0' => flags.zero = !flags.minus,
                '#' => flags.sharp = true,
                _ => break,
            }
            chars.next();
        }
        // Width: digits or `*` (taken from the arguments).
        if chars.peek().map(|&(_, c)| c) == Some('*') {
            chars.next();
            match args.get(next_arg) {
                Some(Value::Int(w)) if w.unsigned_abs() <= MAX_WIDTH as u64 => {
                    if *w < 0 {
                        flags.minus = true;
                        flags.zero = false;
                    }
                    flags.width = Some(w.unsigned_abs() as usize);
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
            next_arg += 1;
        } else {
            flags.width = parse_num(&mut chars);
        }
        if chars.peek().map(|&(_, c)| c) == Some('.') {
            chars.next();
            if chars.peek().map(|&(_, c)| c) == Some('*') {
                chars.next();
                match args.get(next_arg) {
                    Some(Value::Int(p)) if (0..=MAX_WIDTH as i64).contains(p) => {
                        flags.prec = Some(*p as usize)
                    }
                    _ => out.push_str("%!(BADPREC)"),
                }
                next_arg += 1;
            } else {
                flags.prec = Some(parse_num(&mut chars).unwrap_or(0));
            }
        }
        let Some((_, verb)) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next_arg += 1;
        out.push_str(&format_arg(verb, arg, &flags));
    }
    if next_arg < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[next_arg..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            if matches!(a, Value::Nil) {
                out.push_str("<nil>");
            } else {
                out.push_str(a.type_name());
                out.push('=');
                sprint_value(&mut out, a);
            }
        }
        out.push(')');
    }
    out
}

fn parse_num(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(&(_, c)) = chars.peek() {
        let Some(d) = c.to_digit(10) else { break };
        // Go rejects absurd widths too ("%!(BADWIDTH)"); clamping keeps padding bounded.
        n = Some((n.unwrap_or(0) * 10 + d as usize).min(MAX_WIDTH));
        chars.next();
    }
    n
}

/// Go's `%!verb(type=value)`, the value printed with `%v` and the directive's flags.
fn bad_verb(verb: char, arg: &Value, flags: &Flags) -> String {
    if matches!(arg, Value::Nil) {
        return format!("%!{verb}(<nil>)");
    }
    format!(
        "%!{verb}({}={})",
        arg.type_name(),
        format_arg('v', arg, flags)
    )
}

/// Go's `%#v`: the value in Go syntax.
fn go_syntax(out: &mut String, v: &Value, in_interface: bool) {
    match v {
        Value::Nil if in_interface => out.push_str("interface {}(nil)"),
        Value::Str(s) | Value::Html(s) => out.push_str(&quote(s, false)),
        Value::Byte(b) => {
            let _ = write!(out, "0x{b:x}");
        }
        Value::Map(m) => {
            out.push_str(m.type_name());
            out.push('{');
            for (i, (k, v)) in m.entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&quote(k, false));
                out.push(':');
                go_syntax(out, v, m.interface_elems);
            }
            out.push('}');
        }
        Value::Sample(s) => {
            out.push_str("&template.sample{Labels:");
            go_syntax(out, &Value::Map(s.labels.clone()), false);
            out.push_str(", Value:");
            out.push_str(&format_float_v(s.value));
            out.push('}');
        }
        Value::Samples(samples) if samples.is_empty() => out.push_str("template.queryResult{}"),
        other => sprint_value(out, other),
    }
}

fn format_arg(verb: char, arg: &Value, flags: &Flags) -> String {
    if verb == 'T' {
        return flags.pad(arg.type_name().to_owned(), false);
    }
    if verb == 'v' && flags.sharp {
        let mut out = String::new();
        go_syntax(&mut out, arg, false);
        return flags.pad(out, false);
    }
    match arg {
        Value::Nil => match verb {
            'v' => flags.pad("<nil>".into(), false),
            _ => bad_verb(verb, arg, flags),
        },
        Value::Bool(b) => match verb {
            't' | 'v' => flags.pad(b.to_string(), false),
            _ => bad_verb(verb, arg, flags),
        },
        Value::Int(_) | Value::Byte(_) => {
            let i = arg.integer().unwrap_or_default();
            format_int(verb, i, flags).unwrap_or_else(|| bad_verb(verb, arg, flags))
        }
        Value::Float(f) => match verb {
            'v' | 'g' | 'G' | 'e' | 'E' | 'f' | 'F' | 'x' | 'X' => {
                let verb = if verb == 'v' { 'g' } else { verb };
                let s = format_float(*f, verb, flags.prec, flags);
                flags.pad(s, f.is_finite())
            }
            _ => bad_verb(verb, arg, flags),
        },
        Value::Str(s) | Value::Html(s) => {
            format_str(verb, s, flags).unwrap_or_else(|| bad_verb(verb, arg, flags))
        }
        Value::Time(t) => {
            // time.Time is a Stringer: %v, %s and %q use its String().
            let s = format_time(*t);
            format_str(verb, &s, flags).unwrap_or_else(|| bad_verb(verb, arg, flags))
        }
        Value::Map(m) => {
            let mut out = String::from("map[");
            for (i, (k, v)) in m.entries.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&format_arg(verb, &Value::Str(k.clone()), flags));
                out.push(':');
                out.push_str(&format_arg(verb, v, flags));
            }
            out.push(']');
            out
        }
        // Go formats a struct's fields with the verb, one by one.
        Value::Sample(sample) => format!(
            "&{{{} {}}}",
            format_arg(verb, &Value::Map(sample.labels.clone()), flags),
            format_arg(verb, &Value::Float(sample.value), flags)
        ),
        Value::Data(d) => format!(
            "{{{} {} {} {}}}",
            format_arg(verb, &Value::Map(d.labels.clone()), flags),
            format_arg(verb, &Value::Map(d.external_labels.clone()), flags),
            format_arg(verb, &Value::Str(d.external_url.clone()), flags),
            format_arg(verb, &Value::Float(d.value), flags)
        ),
        // A slice is formatted element by element. Its elements are pointers, which Go prints
        // as addresses for %v and the integer verbs (we print the samples) and rejects for
        // the others.
        Value::Samples(samples) => {
            let elems: Vec<String> = samples
                .iter()
                .map(|sample| {
                    let mut shown = String::from("&");
                    sprint_sample(&mut shown, sample);
                    match verb {
                        'v' | 'p' | 'b' | 'o' | 'O' | 'd' | 'x' | 'X' => shown,
                        _ => format!("%!{verb}(*template.sample={shown})"),
                    }
                })
                .collect();
            format!("[{}]", elems.join(" "))
        }
    }
}

fn format_int(verb: char, i: i64, flags: &Flags) -> Option<String> {
    let abs = i.unsigned_abs();
    let (prefix, digits) = match verb {
        'd' | 'v' => ("", abs.to_string()),
        'x' => (if flags.sharp { "0x" } else { "" }, format!("{abs:x}")),
        'X' => (if flags.sharp { "0X" } else { "" }, format!("{abs:X}")),
        'o' => (if flags.sharp { "0" } else { "" }, format!("{abs:o}")),
        'O' => ("0o", format!("{abs:o}")),
        'b' => ("", format!("{abs:b}")),
        'c' => {
            let c = char::from_u32(i as u32).filter(|_| (0..=0x10FFFF).contains(&i));
            return Some(flags.pad(c.unwrap_or('\u{FFFD}').to_string(), false));
        }
        'q' => {
            let c = char::from_u32(i as u32).filter(|_| (0..=0x10FFFF).contains(&i));
            return Some(flags.pad(quote_rune(c.unwrap_or('\u{FFFD}'), flags.plus), false));
        }
        'U' => {
            let s = if i < 0 {
                format!("U+{:X}", i)
            } else {
                format!("U+{:04X}", i)
            };
            return Some(flags.pad(s, false));
        }
        _ => return None,
    };
    let digits = match flags.prec {
        Some(0) if i == 0 => String::new(),
        Some(p) if digits.len() < p => "0".repeat(p - digits.len()) + &digits,
        _ => digits,
    };
    let sign = if i < 0 {
        "-"
    } else if flags.plus {
        "+"
    } else if flags.space {
        " "
    } else {
        ""
    };
    let s = format!("{sign}{prefix}{digits}");
    // A precision disables zero padding for integers, as in Go.
    let mut f = flags.clone();
    if flags.prec.is_some() {
        f.zero = false;
    }
    Some(f.pad(s, true))
}

fn format_str(verb: char, s: &str, flags: &Flags) -> Option<String> {
    let truncated: String = match flags.prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_owned(),
    };
    let out = match verb {
        // %#v is Go syntax: a quoted string.
        'v' if flags.sharp => quote(&truncated, false),
        's' | 'v' => truncated,
        'q' => {
            if flags.sharp
                && !truncated.contains('`')
                && truncated
                    .chars()
                    .all(|c| c == '\t' || (is_print(c) && c != '\u{FEFF}'))
            {
                format!("`{truncated}`")
            } else {
                quote(&truncated, flags.plus)
            }
        }
        'x' | 'X' => {
            let mut out = String::new();
            for (i, b) in truncated.bytes().enumerate() {
                if flags.space && i > 0 {
                    out.push(' ');
                }
                if flags.sharp && (flags.space || i == 0) {
                    out.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                let _ = if verb == 'x' {
                    write!(out, "{b:02x}")
                } else {
                    write!(out, "{b:02X}")
                };
            }
            out
        }
        _ => return None,
    };
    Some(flags.pad(out, false))
}

#[cfg(test)]
#[allow(clippy::approx_constant)] // Go output for these literal values, not π.
mod tests {
    use super::*;

    #[test]
    fn float_v_matches_go() {
        // Expected strings are Go's fmt.Sprint output.
        for (f, want) in [
            (1234.5678, "1234.5678"),
            (1e21, "1e+21"),
            (1e20, "1e+20"),
            (0.0000001, "1e-07"),
            (100000000.0, "1e+08"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (0.0, "0"),
            (-0.0, "-0"),
            (-1.5, "-1.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(format_float_v(f), want, "{f}");
        }
    }

    #[test]
    fn float_g4_matches_go() {
        for (f, want) in [
            (1.234567, "1.235"),
            (1234.5678, "1235"),
            (12345.678, "1.235e+04"),
            (100.0, "100"),
            (1000.0, "1000"),
            (0.0, "0"),
            (0.000012345, "1.234e-05"),
            (-999.99, "-1000"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(format_float_g(f, 4), want, "{f}");
        }
    }

    #[test]
    fn printf_verbs_match_go() {
        let s = |v: &str| Value::Str(v.into());
        let args = [
            s("s"),
            Value::Float(1.5),
            Value::Int(42),
            Value::Float(3.14159),
            Value::Float(2.5),
            Value::Float(1e21),
            Value::Float(123456.789),
            s("q\"x"),
            Value::Int(255),
            Value::Float(3.14159),
            s("left"),
            Value::Int(255),
            Value::Int(8),
            Value::Int(5),
            Value::Int(65),
            Value::Int(65),
            Value::Bool(true),
            Value::Float(1234.5678),
            Value::Int(5),
            Value::Int(42),
            Value::Int(7),
            Value::Int(255),
        ];
        // Verified against Go (Prometheus 2.42's printf).
        assert_eq!(
            sprintf(
                "%s|%v|%d|%f|%.2f|%g|%e|%q|%x|%5.2f|%-10s|%%|%X|%o|%b|%c|%U|%t|%8.3e|%+d|%05d|% d|%#x",
                &args
            ),
            "s|1.5|42|3.141590|2.50|1e+21|1.234568e+05|\"q\\\"x\"|ff| 3.14|left      |%|FF|10|101|A|U+0041|true|1.235e+03|+5|00042| 7|0xff"
        );
        assert_eq!(
            sprintf("%d %s %d %d %x %q", &[Value::Float(1.5), Value::Float(1.5)]),
            "%!d(float64=1.5) %!s(float64=1.5) %!d(MISSING) %!d(MISSING) %!x(MISSING) %!q(MISSING)"
        );
        assert_eq!(
            sprintf("%d", &[Value::Int(1), Value::Int(2)]),
            "1%!(EXTRA int=2)"
        );
        assert_eq!(sprintf("%x %q", &[s("hi"), Value::Int(65)]), "6869 'A'");
        assert_eq!(
            sprintf(
                "%.3s|%10.4v|%-8.2f|%08.3f|%+.2e|%6.2f%%",
                &[
                    s("abcdef"),
                    Value::Float(3.14159265),
                    Value::Float(1.5),
                    Value::Float(-3.14159),
                    Value::Float(12345.678),
                    Value::Float(99.5)
                ]
            ),
            "abc|     3.142|1.50    |-003.142|+1.23e+04| 99.50%"
        );
        assert_eq!(
            sprintf("%T %T %T", &[Value::Int(1), Value::Float(1.5), s("s")]),
            "int float64 string"
        );
        assert_eq!(sprintf("100%", &[]), "100%!(NOVERB)");
    }

    #[test]
    fn hex_floats_match_go() {
        // Go's %x / %X output.
        let x = |f: f64| sprintf("%x", &[Value::Float(f)]);
        assert_eq!(x(1234.5678), "0x1.34a456d5cfaadp+10");
        assert_eq!(x(0.0), "0x0p+00");
        assert_eq!(x(-42.5), "-0x1.54p+05");
        assert_eq!(x(1e-7), "0x1.ad7f29abcaf48p-24");
        assert_eq!(x(2048.0), "0x1p+11");
        assert_eq!(x(f64::NAN), "NaN");
        assert_eq!(sprintf("%X", &[Value::Float(3.5)]), "0X1.CP+01");
    }

    #[test]
    fn sprint_spacing_matches_go() {
        let args = [
            Value::Int(1),
            Value::Int(2),
            Value::Str("a".into()),
            Value::Str("b".into()),
            Value::Int(3),
            Value::Bool(true),
            Value::Nil,
            Value::Float(1.5),
        ];
        assert_eq!(sprint(&args), "1 2ab3 true <nil> 1.5");
        assert_eq!(sprintln(&[Value::Int(1), Value::Str("a".into())]), "1 a\n");
    }

    #[test]
    fn time_string_matches_go() {
        assert_eq!(
            format_time(GoTime {
                secs: 1_435_065_584,
                nanos: 128_000_000
            }),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(
            format_time(GoTime { secs: 0, nanos: 0 }),
            "1970-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            format_time(GoTime {
                secs: -2,
                nanos: 500_000_000
            }),
            "1969-12-31 23:59:58.5 +0000 UTC"
        );
        assert_eq!(
            format_time(GoTime {
                secs: 951_782_400,
                nanos: 0
            }),
            "2000-02-29 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn time_layouts_match_go() {
        let t = GoTime {
            secs: 1_435_065_584,
            nanos: 128_000_000,
        };
        assert_eq!(
            format_time_layout(t, "2006-01-02T15:04:05Z07:00"),
            "2015-06-23T13:19:44Z"
        );
        assert_eq!(
            format_time_layout(t, "2006-01-02T15:04:05.999999999Z07:00"),
            "2015-06-23T13:19:44.128Z"
        );
        assert_eq!(
            format_time_layout(t, "Mon Jan _2 15:04:05 MST 2006"),
            "Tue Jun 23 13:19:44 UTC 2015"
        );
        assert_eq!(
            format_time_layout(t, "Monday, January 2, 2006 3:04PM -0700 .000 002"),
            "Tuesday, June 23, 2015 1:19PM +0000 .128 174"
        );
        assert_eq!(
            format_time_layout(t, "06/1/2 03:4:5 pm"),
            "15/6/23 01:19:44 pm"
        );
    }

    #[test]
    fn quote_matches_go() {
        assert_eq!(
            quote("a\"b\\c\n\té\u{1}", false),
            "\"a\\\"b\\\\c\\n\\té\\x01\""
        );
        assert_eq!(quote("é", true), "\"\\u00e9\"");
    }
}
