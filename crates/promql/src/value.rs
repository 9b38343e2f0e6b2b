//! Query results, as the HTTP API and the rule evaluator consume them.

use strata_model::Labels;

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub labels: Labels,
    /// Evaluation timestamp in milliseconds.
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// One series of a matrix: points sorted by timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// `(timestamp ms, value)` points.
    pub points: Vec<(i64, f64)>,
}

/// The value of an evaluated query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at an evaluation time.
    Scalar {
        /// Timestamp in milliseconds.
        t: i64,
        /// The value.
        v: f64,
    },
    /// A string at an evaluation time.
    String {
        /// Timestamp in milliseconds.
        t: i64,
        /// The value.
        s: String,
    },
    /// An instant vector (instant queries), in evaluation order.
    Vector(Vec<Sample>),
    /// A matrix: range queries (always, sorted by labels) and instant queries of range
    /// vectors.
    Matrix(Vec<Series>),
}

impl Value {
    /// The Prometheus API `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}
