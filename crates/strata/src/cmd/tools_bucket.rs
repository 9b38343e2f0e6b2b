//! `strata tools bucket {ls, inspect, verify, upload-blocks}`.
//!
//! Each function receives the object store YAML (already loaded and validated by
//! [`crate::cli::tools`]) and the parsed flags of its subcommand.

use anyhow::Result;

use crate::cli::common::not_implemented;
use crate::cli::tools::{InspectArgs, LsArgs, UploadBlocksArgs, VerifyArgs};

/// Where the remaining work on these commands is tracked.
const TRACKING: &str = "the tools bucket issue";

/// Lists the blocks in the bucket.
pub(crate) async fn ls(objstore_yaml: &str, args: &LsArgs) -> Result<()> {
    let _ = (objstore_yaml, args);
    Err(not_implemented("tools bucket ls", TRACKING))
}

/// Prints a table of the blocks in the bucket.
pub(crate) async fn inspect(objstore_yaml: &str, args: &InspectArgs) -> Result<()> {
    let _ = (objstore_yaml, args);
    Err(not_implemented("tools bucket inspect", TRACKING))
}

/// Verifies (and, with `--repair`, repairs) the blocks in the bucket. `backup_yaml` is the
/// `--objstore-backup.config[-file]` bucket; it is always present when `--repair` is given.
pub(crate) async fn verify(
    objstore_yaml: &str,
    backup_yaml: Option<&str>,
    args: &VerifyArgs,
) -> Result<()> {
    let _ = (objstore_yaml, backup_yaml, args);
    Err(not_implemented("tools bucket verify", TRACKING))
}

/// Uploads the blocks under `--path` with the `--label` external labels.
pub(crate) async fn upload_blocks(objstore_yaml: &str, args: &UploadBlocksArgs) -> Result<()> {
    let _ = (objstore_yaml, args);
    Err(not_implemented("tools bucket upload-blocks", TRACKING))
}
