//! The parameters of the requests the frontend takes apart: a range query's and a metadata
//! request's, read as the querier reads them (the same time and duration parsers), and
//! written again for each part with only the range changed.

use strata_api::{parse_duration, parse_time};

/// Prometheus' limit on the steps of a range query's answer (`(end - start) / step`).
pub const MAX_POINTS: i64 = 11_000;

/// A request parameter that cannot be used: answered with 400 and Prometheus' `bad_data`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

impl BadRequest {
    fn param(name: &str, why: impl std::fmt::Display) -> Self {
        BadRequest(format!("invalid parameter {name:?}: {why}"))
    }
}

/// A `/api/v1/query_range` request.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRequest {
    pub query: String,
    /// Milliseconds.
    pub start: i64,
    /// Milliseconds.
    pub end: i64,
    /// Milliseconds, positive.
    pub step: i64,
    /// Every other parameter, in the order given (`dedup`, `partial_response`,
    /// `max_source_resolution`, `replicaLabels[]`, `storeMatch[]`, `timeout`, …): passed on
    /// with each part and part of the cache key.
    pub other: Vec<(String, String)>,
}

impl RangeRequest {
    /// Reads the request's form pairs (query string and, for POST, the body).
    pub fn parse(pairs: &[(String, String)]) -> Result<RangeRequest, BadRequest> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let query = get("query").unwrap_or_default().to_string();
        let start = parse_time(get("start").unwrap_or_default())
            .map_err(|e| BadRequest::param("start", e))?;
        let end =
            parse_time(get("end").unwrap_or_default()).map_err(|e| BadRequest::param("end", e))?;
        if end < start {
            return Err(BadRequest::param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let step = parse_duration(get("step").unwrap_or_default())
            .map_err(|e| BadRequest::param("step", e))?;
        if step <= 0 {
            return Err(BadRequest::param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if end.saturating_sub(start) / step > MAX_POINTS {
            return Err(BadRequest(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        let other = pairs
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "query" | "start" | "end" | "step"))
            .cloned()
            .collect();
        Ok(RangeRequest {
            query,
            start,
            end,
            step,
            other,
        })
    }

    /// The value of another parameter, if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.other
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a parameter the client did not give (`partial_response` from
    /// `--query-range.partial-response`).
    pub fn default_param(&mut self, name: &str, value: &str) {
        if self.param(name).is_none() {
            self.other.push((name.to_string(), value.to_string()));
        }
    }

    /// The form body of the part `[start, end]` of this request.
    pub fn form(&self, start: i64, end: i64) -> String {
        let mut s = form_urlencoded(&[
            ("query", self.query.as_str()),
            ("start", &seconds(start)),
            ("end", &seconds(end)),
            ("step", &seconds(self.step)),
        ]);
        for (k, v) in &self.other {
            s.push('&');
            s.push_str(&form_urlencoded(&[(k.as_str(), v.as_str())]));
        }
        s
    }

    /// Whether the request may be cut into parts and cached: not when its answer depends
    /// on the whole range (`@ start()`, `@ end()`), nor when it asks for something that
    /// does not join (`stats`, `analyze`: an evaluation's statistics or plan).
    pub fn splittable(&self) -> bool {
        !crate::split::uses_range_bounds(&self.query)
            && self.param("stats").is_none()
            && !matches!(self.param("analyze"), Some("true" | "1"))
    }

    /// The part of a cache key that identifies the query: everything but the range, with
    /// the other parameters sorted (their order does not change the answer).
    pub fn identity(&self) -> String {
        let mut s = format!("{}:{}", self.step, self.query);
        push_sorted_params(&mut s, &self.other, &["timeout"]);
        s
    }
}

/// Appends `params` but those named in `skip`, sorted, each as `\0name=value`: the part of a
/// cache key that names a request's options (their order does not change the answer).
pub fn push_sorted_params(out: &mut String, params: &[(String, String)], skip: &[&str]) {
    let mut sorted: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .collect();
    sorted.sort();
    for (k, v) in sorted {
        out.push('\u{0}');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

/// A metadata request (`/api/v1/labels`, `/api/v1/label/<name>/values`, `/api/v1/series`):
/// its range, defaulted to the last `--labels.default-time-range` up to now, and its other
/// parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataRequest {
    pub start: i64,
    pub end: i64,
    pub other: Vec<(String, String)>,
}

impl MetadataRequest {
    pub fn parse(
        pairs: &[(String, String)],
        default_range_ms: i64,
        now_ms: i64,
    ) -> Result<MetadataRequest, BadRequest> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let end = match get("end") {
            Some(v) => parse_time(v).map_err(|e| BadRequest::param("end", e))?,
            None => now_ms,
        };
        let start = match get("start") {
            Some(v) => parse_time(v).map_err(|e| BadRequest::param("start", e))?,
            None => end.saturating_sub(default_range_ms),
        };
        if end < start {
            return Err(BadRequest::param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let other = pairs
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "start" | "end"))
            .cloned()
            .collect();
        Ok(MetadataRequest { start, end, other })
    }

    /// The form body of the part `[start, end]`.
    pub fn form(&self, start: i64, end: i64) -> String {
        let mut s = form_urlencoded(&[("start", &seconds(start)), ("end", &seconds(end))]);
        for (k, v) in &self.other {
            s.push('&');
            s.push_str(&form_urlencoded(&[(k.as_str(), v.as_str())]));
        }
        s
    }
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// Milliseconds as Unix seconds, exactly (`1700000000.5`).
pub fn seconds(ms: i64) -> String {
    let mut s = String::new();
    strata_promql::format::format_timestamp(ms, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(s).unwrap()
    }

    #[test]
    fn a_range_request_is_read_as_the_querier_reads_it() {
        let r = RangeRequest::parse(&pairs(
            "query=sum(up)&start=1700000000.5&end=2023-11-14T22:23:20Z&step=1m&dedup=false&storeMatch[]=%7Ba%3D%22b%22%7D",
        ))
        .unwrap();
        assert_eq!(
            (r.start, r.end, r.step),
            (1_700_000_000_500, 1_700_000_600_000, 60_000)
        );
        assert_eq!(r.param("dedup"), Some("false"));
        let again = RangeRequest::parse(&pairs(&r.form(r.start, r.end))).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn bad_ranges_and_steps_are_refused_with_prometheus_words() {
        for (q, want) in [
            (
                "query=up&start=x&end=1&step=1",
                "invalid parameter \"start\"",
            ),
            (
                "query=up&start=2&end=1&step=1",
                "end timestamp must not be before start time",
            ),
            (
                "query=up&start=1&end=2&step=0",
                "zero or negative query resolution",
            ),
            ("query=up&start=1&end=2", "invalid parameter \"step\""),
            (
                "query=up&start=0&end=11001&step=1",
                "exceeded maximum resolution of 11,000 points",
            ),
        ] {
            let e = RangeRequest::parse(&pairs(q)).unwrap_err().0;
            assert!(e.contains(want), "{q}: {e}");
        }
    }

    #[test]
    fn identity_ignores_parameter_order_and_timeout_but_not_options() {
        let a = RangeRequest::parse(&pairs(
            "query=up&start=0&end=1&step=1&dedup=true&partial_response=false",
        ))
        .unwrap();
        let b = RangeRequest::parse(&pairs(
            "partial_response=false&timeout=5s&query=up&start=5&end=9&step=1&dedup=true",
        ))
        .unwrap();
        let c = RangeRequest::parse(&pairs(
            "query=up&start=0&end=1&step=1&dedup=false&partial_response=false",
        ))
        .unwrap();
        assert_eq!(a.identity(), b.identity());
        assert_ne!(a.identity(), c.identity());
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        // Saturated times: a range too long for 11,000 steps, refused, not a panic.
        let e = RangeRequest::parse(&pairs("query=up&start=-1e300&end=1e300&step=1")).unwrap_err();
        assert!(e.0.contains("exceeded maximum resolution"), "{e}");
        let r = RangeRequest::parse(&pairs("query=up&start=1e300&end=1e300&step=1")).unwrap();
        assert_eq!(
            crate::split::split(r.start, r.end, r.step, 86_400_000).len(),
            1
        );
    }

    #[test]
    fn whole_range_queries_are_not_cut() {
        let r =
            |q: &str| RangeRequest::parse(&pairs(&format!("{q}&start=0&end=1&step=1"))).unwrap();
        assert!(r("query=up").splittable());
        assert!(!r("query=up%20%40%20start()").splittable());
        assert!(!r("query=up&stats=all").splittable());
        assert!(!r("query=up&analyze=true").splittable());
    }

    #[test]
    fn metadata_ranges_default_to_the_last_day() {
        let m = MetadataRequest::parse(&pairs("match[]=up"), 86_400_000, 100_000_000).unwrap();
        assert_eq!((m.start, m.end), (13_600_000, 100_000_000));
        assert_eq!(m.other, vec![("match[]".to_string(), "up".to_string())]);
    }
}
