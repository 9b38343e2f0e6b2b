//! Blocks in a bucket.
