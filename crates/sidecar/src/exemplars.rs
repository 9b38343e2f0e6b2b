//! Prometheus' `/api/v1/query_exemplars` answer turned into the Exemplars API's messages, the
//! series labels extended with the external labels (Prometheus does not add them; the
//! querier needs them to tell replicas apart and to route by them, as Thanos' sidecar
//! provides).

use std::collections::BTreeMap;

use serde::Deserialize;
use strata_model::Labels;
use strata_storepb::thanos::{Exemplar, ExemplarData, Label, LabelSet};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SeriesExemplarsJson {
    #[serde(default)]
    series_labels: BTreeMap<String, String>,
    #[serde(default)]
    exemplars: Vec<ExemplarJson>,
}

#[derive(Debug, Deserialize)]
struct ExemplarJson {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// A float as Prometheus writes sample values: a string (`"6"`, `"NaN"`, `"+Inf"`).
    value: String,
    /// Seconds since the epoch, with milliseconds as the fraction.
    timestamp: f64,
}

fn label_set(m: BTreeMap<String, String>) -> LabelSet {
    LabelSet {
        labels: m
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect(),
    }
}

/// The series as the Exemplars API carries them, each series' labels extended with `ext` (an
/// external label wins over a series label of the same name), or what cannot be read.
pub(crate) fn convert(
    data: Vec<SeriesExemplarsJson>,
    ext: &Labels,
) -> Result<Vec<ExemplarData>, String> {
    data.into_iter()
        .map(|mut s| {
            for l in ext.iter() {
                s.series_labels
                    .insert(l.name.to_string(), l.value.to_string());
            }
            let exemplars = s
                .exemplars
                .into_iter()
                .map(|e| {
                    let value = parse_value(&e.value)
                        .ok_or_else(|| format!("exemplar value {:?} is not a number", e.value))?;
                    Ok(Exemplar {
                        labels: Some(label_set(e.labels)),
                        value,
                        ts: (e.timestamp * 1000.0).round() as i64,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(ExemplarData {
                series_labels: Some(label_set(s.series_labels)),
                exemplars,
            })
        })
        .collect()
}

/// A sample value as Prometheus' JSON writes it (Go's `strconv.FormatFloat` spellings).
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_answer_converts_with_external_labels() {
        let body = r#"[{"seriesLabels":{"__name__":"demo_events_total","job":"demo"},
            "exemplars":[{"labels":{"trace_id":"abc"},"value":"6","timestamp":1600096945.479},
                         {"labels":{},"value":"+Inf","timestamp":1600096946}]}]"#;
        let data: Vec<SeriesExemplarsJson> = serde_json::from_str(body).unwrap();
        let ext = Labels::new([strata_model::Label::new("replica", "a")]);
        let out = convert(data, &ext).unwrap();
        let names: Vec<&str> = out[0]
            .series_labels
            .as_ref()
            .unwrap()
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["__name__", "job", "replica"]);
        assert_eq!(out[0].exemplars[0].ts, 1_600_096_945_479);
        assert_eq!(out[0].exemplars[0].value, 6.0);
        assert_eq!(out[0].exemplars[1].value, f64::INFINITY);

        let bad: Vec<SeriesExemplarsJson> =
            serde_json::from_str(r#"[{"exemplars":[{"value":"x","timestamp":1}]}]"#).unwrap();
        assert!(convert(bad, &ext).unwrap_err().contains("\"x\""));
    }
}
