//! Test harness shared by Strata's tests.
//!
//! Tests use real components (Prometheus' `promtool`, an S3-compatible server) that
//! `scripts/test.sh` installs. Everything a test starts binds 127.0.0.1 on a free port and is
//! killed when its guard drops, even when the test panics.

pub mod alertmanager;
pub mod cpu;
pub mod memcached;
pub mod moto;
pub mod netem;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod tls;
pub mod tracing;
