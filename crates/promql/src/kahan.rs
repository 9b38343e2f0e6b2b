//! Compensated (Kahan-Neumaier) summation, step for step as Prometheus'
//! `util/kahansum` does it, so that sums round exactly as Prometheus' do.
//!
//! Rust never contracts `a + b` into a fused multiply-add, so plain arithmetic here matches
//! Go's explicitly rounded arithmetic.

/// Adds `inc` to the running `sum` with compensation `c`; returns the new `(sum, c)`.
#[inline]
pub(crate) fn inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}
