//! Label sets and times of the Info API's other services (rules, exemplars, targets) as
//! their merges compare them and as the HTTP API writes them.

use strata_storepb::thanos::{Label, LabelSet};

/// A label set as sorted name-value pairs.
pub(crate) type Pairs = Vec<(String, String)>;

/// Sorted pairs of a label set, without and with the replica labels.
pub(crate) fn pairs(l: &Option<LabelSet>, replica_labels: &[String]) -> (Pairs, Pairs) {
    let mut all: Pairs = l
        .as_ref()
        .map(|l| {
            l.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    let kept = all
        .iter()
        .filter(|(n, _)| !replica_labels.contains(n))
        .cloned()
        .collect();
    (kept, all)
}

pub(crate) fn to_set(pairs: Pairs) -> Option<LabelSet> {
    Some(LabelSet {
        labels: pairs
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect(),
    })
}

/// A label set as a JSON object.
pub(crate) fn labels_json(l: Option<&LabelSet>) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = l
        .map(|l| {
            l.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone().into()))
                .collect()
        })
        .unwrap_or_default();
    serde_json::Value::Object(map)
}

/// A time as Go's JSON writes one (RFC 3339, nanoseconds without trailing zeros); Go's zero
/// time when there is none.
pub(crate) fn time_json(t: Option<prost_types::Timestamp>) -> String {
    let Some(t) = t else {
        return "0001-01-01T00:00:00Z".into();
    };
    let whole = strata_model::timestamp::format_rfc3339(t.seconds.saturating_mul(1000));
    if t.nanos <= 0 {
        return whole;
    }
    let frac = format!("{:09}", t.nanos);
    let frac = frac.trim_end_matches('0');
    // `whole` ends in `Z` and has no fraction (whole seconds).
    format!("{}.{frac}Z", &whole[..whole.len() - 1])
}
