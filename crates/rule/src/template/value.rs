//! The values a template computes with, modelled on the Go types Prometheus' template data and
//! functions produce (`map[string]string`, `float64`, `*sample`, `queryResult`, `*time.Time`, …),
//! so printing, truthiness and comparisons follow Go's rules for those exact types.

use std::collections::BTreeMap;
use std::rc::Rc;

/// A Go map with string keys. Keys are kept sorted because Go's `fmt` and `range` visit map keys
/// in sorted order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GoMap {
    pub(crate) entries: BTreeMap<String, Value>,
    /// `map[string]interface{}` (from `args`) rather than `map[string]string`: a missing key
    /// yields a nil interface (printed `<no value>`) instead of `""`.
    pub(crate) interface_elems: bool,
}

impl GoMap {
    pub(crate) fn strings<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> GoMap {
        GoMap {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::Str(v.to_owned())))
                .collect(),
            interface_elems: false,
        }
    }

    /// Go's map index with `missingkey=zero`: the element type's zero value for a missing key.
    pub(crate) fn get(&self, key: &str) -> Value {
        match self.entries.get(key) {
            Some(v) => v.clone(),
            None if self.interface_elems => Value::Nil,
            None => Value::Str(String::new()),
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        if self.interface_elems {
            "map[string]interface {}"
        } else {
            "map[string]string"
        }
    }
}

/// Prometheus' template `sample`: one element of a `query` result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) labels: Rc<GoMap>,
    pub(crate) value: f64,
}

/// The alert template data struct (`Labels`, `ExternalLabels`, `ExternalURL`, `Value`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DataValue {
    pub(crate) labels: Rc<GoMap>,
    pub(crate) external_labels: Rc<GoMap>,
    pub(crate) external_url: String,
    pub(crate) value: f64,
}

/// The Go type name of the alert data struct, as Go's errors and `%T` spell it.
pub(crate) const DATA_TYPE_NAME: &str = "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }";

/// A point in time (`*time.Time` from `toTime`), always in UTC as Prometheus makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoTime {
    pub(crate) secs: i64,
    pub(crate) nanos: u32,
}

/// A template value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// Go's nil (the `nil` literal, a nil interface, a missing value).
    Nil,
    Bool(bool),
    /// Go `int` (number literals without a fraction or exponent, `len`, rune literals, …).
    Int(i64),
    /// Go `uint8`: a byte of a string (`index "abc" 0`), printed as a number.
    Byte(u8),
    Float(f64),
    Str(String),
    /// `html/template.HTML` (from `safeHtml`): prints and compares like a string, but Go will
    /// not pass it where a `string` parameter is expected.
    Html(String),
    Map(Rc<GoMap>),
    Sample(Rc<Sample>),
    /// Prometheus' `queryResult` (`[]*sample`).
    Samples(Rc<Vec<Rc<Sample>>>),
    Time(GoTime),
    Data(Rc<DataValue>),
}

impl Value {
    /// The value of an integer (Go compares signed and unsigned integers by value).
    pub(crate) fn integer(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Byte(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The text of a value of Go kind string (`string`, `template.HTML`).
    pub(crate) fn string_kind(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Html(s) => Some(s),
            _ => None,
        }
    }

    /// Go's template truthiness: the zero value of a type, nil and empty collections are false.
    pub(crate) fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Byte(b) => *b != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::Html(s) => !s.is_empty(),
            Value::Map(m) => !m.entries.is_empty(),
            Value::Samples(s) => !s.is_empty(),
            Value::Sample(_) | Value::Time(_) | Value::Data(_) => true,
        }
    }

    /// The Go type name, as `%T` and Go's error messages print it.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Byte(_) => "uint8",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Html(_) => "template.HTML",
            Value::Map(m) => m.type_name(),
            Value::Sample(_) => "*template.sample",
            Value::Samples(_) => "template.queryResult",
            Value::Time(_) => "*time.Time",
            Value::Data(_) => DATA_TYPE_NAME,
        }
    }
}
