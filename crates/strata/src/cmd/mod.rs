//! Command bodies that are more than flag plumbing. The component `run()` functions in
//! [`crate::cli`] parse and validate flags, then call into here.

pub(crate) mod block_viewer;
pub(crate) mod compact;
pub(crate) mod query;
pub(crate) mod sidecar;
pub(crate) mod store;
pub(crate) mod tools_bucket;
pub(crate) mod tools_bucket_lifecycle;
pub(crate) mod tools_bucket_replicate;
pub(crate) mod tools_bucket_rewrite;
pub(crate) mod tools_rules_check;
