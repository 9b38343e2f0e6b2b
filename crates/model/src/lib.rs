//! Strata's shared vocabulary: label sets, label matchers with Prometheus semantics, and the
//! duration, size and timestamp syntaxes that Thanos' flags accept.
//!
//! **Architecture invariant:** this crate does no IO, spawns nothing and knows nothing about
//! blocks, buckets or the wire. Every other Strata crate depends on it, so it must stay small
//! and cheap to compile. Anything that parses user input returns a typed error that names the
//! offending text.

pub mod bytesize;
pub mod duration;
pub mod json;
pub mod labels;
pub mod matcher;
pub mod timestamp;
mod unitnum;

pub use labels::{Label, Labels, LabelsBuilder};
pub use matcher::{MatchOp, Matcher, MatcherError};

// Duration, size and timestamp syntaxes of Thanos' flags.
pub use bytesize::{ByteSize, ParseByteSizeError};
pub use duration::{Duration, ParseDurationError};
pub use timestamp::{ParseTimeOrDurationError, TimeOrDuration};
