//! (in progress)
use std::path::Path;
/// Checks a staging directory recorded in a manifest before trusting it.
pub fn check_staging_dir(dir: &Path) -> Result<bool, String> {
    Ok(dir.is_dir())
}
