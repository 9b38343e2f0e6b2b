//! XOR decode cost in CPU nanoseconds per sample, measured with the thread's CPU clock so the
//! figure holds on a shared, busy machine (criterion's wall-clock numbers do not): first with
//! `decode_into`, one chunk at a time, then with `decode_chunks_into`, 120 chunks a call.
//!
//! `cargo run --release -p strata-tsdb --example xor_cpu [seconds-per-shape] [shape]`

use std::hint::black_box;

use strata_testutil::cpu::thread_cpu_ns;

use strata_tsdb::XorIterator;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{SHAPES, chunks};

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let only = std::env::args().nth(2);
    println!("shape     ns/sample (CPU time, bulk decode_into)");
    for kind in SHAPES {
        if only.as_deref().is_some_and(|o| o != kind) {
            continue;
        }
        let data = chunks(kind, 2000);
        let (mut ts, mut vs) = (Vec::with_capacity(120), Vec::with_capacity(120));
        let mut samples = 0u64;
        let start = thread_cpu_ns();
        let budget = (secs * 1e9) as u64;
        while thread_cpu_ns() - start < budget {
            for d in &data {
                ts.clear();
                vs.clear();
                XorIterator::new(d)
                    .unwrap()
                    .decode_into(&mut ts, &mut vs)
                    .unwrap();
                black_box((&ts, &vs));
            }
            samples += 120 * data.len() as u64;
        }
        let ns = (thread_cpu_ns() - start) as f64 / samples as f64;
        println!("{kind:<9} {ns:.2}   ({samples} samples)");
    }
    println!("shape     ns/sample (CPU time, XorIterator::decode_chunks_into, 120 chunks a call)");
    for kind in SHAPES {
        if only.as_deref().is_some_and(|o| o != kind) {
            continue;
        }
        let data = chunks(kind, 2000);
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let (mut ts, mut vs) = (Vec::with_capacity(120 * 120), Vec::with_capacity(120 * 120));
        let mut samples = 0u64;
        let start = thread_cpu_ns();
        let budget = (secs * 1e9) as u64;
        while thread_cpu_ns() - start < budget {
            for group in refs.chunks(120) {
                ts.clear();
                vs.clear();
                XorIterator::decode_chunks_into(group, &mut ts, &mut vs).unwrap();
                black_box((&ts, &vs));
            }
            samples += 120 * data.len() as u64;
        }
        let ns = (thread_cpu_ns() - start) as f64 / samples as f64;
        println!("{kind:<9} {ns:.2}   ({samples} samples)");
    }
}
