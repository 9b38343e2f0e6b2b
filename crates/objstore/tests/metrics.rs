//! The exposition text of the bucket metrics: names, labels and values as Thanos exports them.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use strata_objstore::{Bucket, BucketMetrics};

fn exposition(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

/// The value of the sample line that starts with `series` (name plus labels).
fn sample(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

#[tokio::test]
async fn exposition_has_thanos_names_labels_and_counts() {
    let mut registry = Registry::default();
    let metrics = BucketMetrics::register(&mut registry);
    let bucket = Bucket::in_memory("blocks", &metrics);

    // Every operation series exists at zero before any traffic, as in Thanos.
    let text = exposition(&registry);
    for op in [
        "iter",
        "get",
        "get_range",
        "exists",
        "upload",
        "delete",
        "attributes",
    ] {
        let labels = format!("{{bucket=\"blocks\",operation=\"{op}\"}}");
        assert_eq!(
            sample(
                &text,
                &format!("thanos_objstore_bucket_operations_total{labels}")
            ),
            0.0
        );
        assert_eq!(
            sample(
                &text,
                &format!("thanos_objstore_bucket_operation_failures_total{labels}")
            ),
            0.0
        );
    }
    assert_eq!(
        sample(
            &text,
            "thanos_objstore_bucket_last_successful_upload_time{bucket=\"blocks\"}"
        ),
        0.0
    );

    bucket.upload("a", "1".into()).await.unwrap();
    bucket.get("a").await.unwrap();
    bucket.get("missing").await.unwrap_err();
    bucket.get_range("a", 5..6).await.unwrap_err();
    bucket.exists("a").await.unwrap();

    let text = exposition(&registry);
    assert!(
        text.contains("# TYPE thanos_objstore_bucket_operations counter"),
        "{text}"
    );
    assert!(text.contains("# TYPE thanos_objstore_bucket_operation_duration_seconds histogram"));
    assert!(text.contains("# TYPE thanos_objstore_bucket_last_successful_upload_time gauge"));
    assert!(!text.contains("_total_total"), "{text}");
    let ops = |op: &str| {
        sample(
            &text,
            &format!(
                "thanos_objstore_bucket_operations_total{{bucket=\"blocks\",operation=\"{op}\"}}"
            ),
        )
    };
    let failures = |op: &str| {
        sample(
            &text,
            &format!(
                "thanos_objstore_bucket_operation_failures_total{{bucket=\"blocks\",operation=\"{op}\"}}"
            ),
        )
    };
    assert_eq!(
        (ops("get"), failures("get")),
        (2.0, 0.0),
        "not-found is not a failure"
    );
    assert_eq!((ops("get_range"), failures("get_range")), (1.0, 1.0));
    assert_eq!((ops("upload"), failures("upload")), (1.0, 0.0));
    assert_eq!(ops("exists"), 1.0);
    // Durations are recorded for successful (incl. not-found) operations only.
    assert_eq!(
        sample(
            &text,
            "thanos_objstore_bucket_operation_duration_seconds_count{bucket=\"blocks\",operation=\"get\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "thanos_objstore_bucket_operation_duration_seconds_count{bucket=\"blocks\",operation=\"get_range\"}"
        ),
        0.0
    );
    for le in ["0.01", "120.0", "+Inf"] {
        let series = format!(
            "thanos_objstore_bucket_operation_duration_seconds_bucket{{le=\"{le}\",bucket=\"blocks\",operation=\"get\"}}"
        );
        assert_eq!(sample(&text, &series), 2.0, "{series}");
    }
    // prometheus-client adds the final period to HELP itself.
    assert!(!text.contains(".."), "{text}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = sample(
        &text,
        "thanos_objstore_bucket_last_successful_upload_time{bucket=\"blocks\"}",
    );
    assert!(
        (now - last).abs() < 60.0,
        "last upload time {last} is not now ({now})"
    );
}

#[tokio::test]
async fn buckets_share_one_registration() {
    let mut registry = Registry::default();
    let metrics = BucketMetrics::register(&mut registry);
    let a = Bucket::in_memory("a", &metrics);
    let b = Bucket::in_memory("b", &metrics);
    a.upload("x", "1".into()).await.unwrap();
    b.iter("", true).await.unwrap();
    let text = exposition(&registry);
    assert_eq!(
        text.matches("# TYPE thanos_objstore_bucket_operations counter")
            .count(),
        1
    );
    assert_eq!(
        sample(
            &text,
            "thanos_objstore_bucket_operations_total{bucket=\"a\",operation=\"upload\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "thanos_objstore_bucket_operations_total{bucket=\"b\",operation=\"iter\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "thanos_objstore_bucket_operations_total{bucket=\"b\",operation=\"upload\"}"
        ),
        0.0
    );
}
