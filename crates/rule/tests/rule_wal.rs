//! The stateful ruler's WAL across a block cut and restarts: a series created right after a
//! cut (logged in the segment the cut's checkpoint covers) keeps its record, so it comes
//! back whole, and a later series never takes its ref.

use prometheus_client::registry::Registry;
use strata_model::Labels;
use strata_rule::storage::{DurableStorage, LocalStorage, LocalStorageOptions, RuleWal};
use strata_rule::{Appender, ForStateSource, RecordedSample};

const MIN: i64 = 60_000;
const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % (2 * 3_600_000);

fn sample(name: &str, t: i64) -> RecordedSample {
    RecordedSample {
        labels: Labels::from_pairs(&[("__name__", name)]),
        timestamp_ms: t,
        value: t as f64,
    }
}

fn open(dir: &std::path::Path) -> (std::sync::Arc<LocalStorage>, DurableStorage, u64) {
    let storage = LocalStorage::open(
        dir,
        LocalStorageOptions::default(),
        &mut Registry::default(),
    )
    .unwrap();
    let (wal, stats) = RuleWal::open_and_replay(&dir.join("wal"), true, &storage).unwrap();
    storage.set_wal_hook(wal.clone());
    let durable = DurableStorage {
        storage: storage.clone(),
        wal,
    };
    (storage, durable, stats.unknown_refs)
}

#[tokio::test]
async fn a_series_created_after_a_cut_survives_the_checkpoint_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (storage, durable, _) = open(dir.path());
        for m in 0..=182 {
            durable.append(vec![sample("a", T0 + m * MIN)]);
        }
        assert_eq!(storage.cut_blocks().unwrap().len(), 1);
        // An append after the cut creates `b` before the checkpoint runs.
        durable.append(vec![sample("b", T0 + 183 * MIN)]);
        assert!(durable.wal.checkpoint_if_due(&storage).unwrap());
        durable.append(vec![
            sample("a", T0 + 184 * MIN),
            sample("b", T0 + 184 * MIN),
        ]);
        durable.wal.sync(&storage).unwrap();
    }
    let series = |name: &str| Labels::from_pairs(&[("__name__", name)]);
    {
        let (storage, durable, unknown) = open(dir.path());
        assert_eq!(unknown, 0, "every sample's series record was kept");
        let b = storage
            .last_sample(&series("b"), T0, T0 + 200 * MIN)
            .await
            .unwrap();
        assert_eq!(b, Some((T0 + 184 * MIN, (T0 + 184 * MIN) as f64)));
        // A new series after the restart.
        durable.append(vec![sample("c", T0 + 190 * MIN)]);
        durable.wal.sync(&storage).unwrap();
    }
    let (storage, _, unknown) = open(dir.path());
    assert_eq!(unknown, 0);
    // `c` holds only its own sample, never one of `b`'s.
    let c = storage
        .last_sample(&series("c"), T0, T0 + 189 * MIN)
        .await
        .unwrap();
    assert_eq!(c, None);
    let c = storage
        .last_sample(&series("c"), T0, T0 + 200 * MIN)
        .await
        .unwrap();
    assert_eq!(c, Some((T0 + 190 * MIN, (T0 + 190 * MIN) as f64)));
    let b = storage
        .last_sample(&series("b"), T0, T0 + 200 * MIN)
        .await
        .unwrap();
    assert_eq!(b, Some((T0 + 184 * MIN, (T0 + 184 * MIN) as f64)));
}
