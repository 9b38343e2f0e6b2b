//! What `--matcher-cache-size` saves per request: a Grafana multi-value variable's regex
//! (`instance=~"host-0001|host-0002|…"`, N alternatives) converted with and without the
//! store's matcher cache.
//!
//! `cargo run --release -p strata-store --example matcher_cache -- [N] [REPEAT]`
//! (defaults 500 and 2000).

use std::time::Instant;

use strata_store::matchers::MatcherCache;
use strata_storepb::convert::label_matcher;
use strata_storepb::thanos::label_matcher::Type;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(500);
    let repeat: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let pattern = (0..n)
        .map(|i| format!("host-{i:04}"))
        .collect::<Vec<_>>()
        .join("|");
    let ms = [
        label_matcher(Type::Eq, "__name__", "up"),
        label_matcher(Type::Re, "instance", &pattern),
    ];
    for (name, cap) in [("without the cache", 0), ("with the cache", 100)] {
        let cache = MatcherCache::new(cap);
        cache.convert(&ms).expect("valid matchers");
        let t = Instant::now();
        for _ in 0..repeat {
            std::hint::black_box(cache.convert(&ms).expect("valid matchers"));
        }
        let per = t.elapsed().as_secs_f64() / repeat as f64 * 1e6;
        println!("{name}: {per:.1} µs per request ({n} alternatives)");
    }
}
