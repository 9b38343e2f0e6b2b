//! Selecting series by label matchers, with Prometheus' semantics
//! (`tsdb/querier.go`, `PostingsForMatchers`).
//!
//! A matcher that rejects the empty string (`job="api"`, `pod=~"web-.+"`, `x!=""`) selects
//! series that *have* a matching value: its postings are intersected. A matcher that accepts
//! the empty string (`job!="api"`, `x=""`, `x!~"a|b"`) also selects series *without* the
//! label, so it is applied as a subtraction of its inverse. When nothing is intersected, the
//! subtraction starts from all series. The result is sorted by series ref, i.e. label order.

use strata_model::{MatchOp, Matcher};

use super::{difference, intersect_many, union_many};
use crate::error::Result;

/// What matcher selection needs from an index. Implemented by the in-memory
/// [`super::IndexReader`]; the store gateway implements it over its index-header.
pub trait PostingsIndex {
    /// Every series ref, sorted.
    fn all_postings(&self) -> Result<Vec<u32>>;
    /// The union of the postings lists of `name=value` for each given value.
    fn postings_for_values(&self, name: &str, values: &[&str]) -> Result<Vec<u32>>;
    /// The union of the postings lists of every value of `name` that starts with `prefix`
    /// and is accepted by `accept`.
    fn postings_matching(
        &self,
        name: &str,
        prefix: &str,
        accept: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Vec<u32>>;
}

/// The sorted refs of the series selected by all `matchers` (a logical AND).
pub fn postings_for_matchers<I: PostingsIndex + ?Sized>(
    ix: &I,
    matchers: &[Matcher],
) -> Result<Vec<u32>> {
    let mut intersect: Vec<Vec<u32>> = Vec::new();
    let mut subtract: Vec<Vec<u32>> = Vec::new();
    // Cheap, selective matchers first so an empty intersection stops the work early.
    let mut ordered: Vec<&Matcher> = matchers.iter().collect();
    ordered.sort_by_key(|m| cost(m));
    for m in ordered {
        if m.matches_everything() {
            continue;
        }
        if m.matches_empty() {
            // Selects series without the label too: remove the series whose value fails.
            let list = postings_for_non_empty_matcher(ix, &m.inverse())?;
            if !list.is_empty() {
                subtract.push(list);
            }
        } else {
            let list = postings_for_non_empty_matcher(ix, m)?;
            if list.is_empty() {
                return Ok(Vec::new());
            }
            intersect.push(list);
        }
    }
    let base = if intersect.is_empty() {
        ix.all_postings()?
    } else {
        intersect_many(intersect)
    };
    if subtract.is_empty() {
        return Ok(base);
    }
    Ok(difference(&base, &union_many(subtract)))
}

/// Postings for a matcher that does not match the empty string: the union over the label's
/// values that match.
fn postings_for_non_empty_matcher<I: PostingsIndex + ?Sized>(
    ix: &I,
    m: &Matcher,
) -> Result<Vec<u32>> {
    if let Some(values) = m.set_matches() {
        return ix.postings_for_values(m.name(), &values);
    }
    let prefix = m.literal_prefix().unwrap_or("");
    ix.postings_matching(m.name(), prefix, &mut |v| m.matches(v))
}

/// Rough evaluation cost, lowest first.
fn cost(m: &Matcher) -> u8 {
    match m.op() {
        MatchOp::Equal if !m.value().is_empty() => 0,
        MatchOp::RegexMatch if m.set_matches().is_some() => 1,
        MatchOp::Equal => 2,
        MatchOp::NotEqual => 3,
        MatchOp::RegexMatch => 4,
        MatchOp::RegexNoMatch => 5,
    }
}
