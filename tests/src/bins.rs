//! Where cargo put the workspace's binaries and examples.
//!
//! End-to-end tests spawn the real function binaries. Binaries of other packages are not built
//! by `cargo test` of this package, so `scripts/test.sh` builds them first; a missing one is a
//! clear panic, never a skipped test.

use std::path::{Path, PathBuf};

/// Path of the workspace binary `name` (e.g. `receiver`) in the current profile's target dir.
///
/// # Panics
/// If the binary has not been built; the message says how to build it.
pub fn bin_path(name: &str) -> PathBuf {
    find(Path::new(name), "cargo build --workspace --bins")
}

/// Path of the example binary `name` (e.g. `echo_lambda`) in the current profile's target dir.
///
/// # Panics
/// If the example has not been built; the message says how to build it.
pub fn example_path(name: &str) -> PathBuf {
    find(
        &Path::new("examples").join(name),
        "cargo build --workspace --examples",
    )
}

fn find(relative: &Path, build_hint: &str) -> PathBuf {
    let candidates = profile_dirs();
    for dir in &candidates {
        let path = dir.join(relative);
        if path.is_file() {
            return path;
        }
    }
    let searched: Vec<String> = candidates
        .iter()
        .map(|d| d.join(relative).display().to_string())
        .collect();
    panic!(
        "binary `{}` not found (searched: {}); build with `{build_hint}` or run scripts/test.sh",
        relative.display(),
        searched.join(", ")
    );
}

/// Candidate profile directories (`<target>/debug`), most reliable first.
///
/// The running test executable lives in `<target>/<profile>/deps/`, which gives both the target
/// dir and the profile even when `CARGO_TARGET_DIR` points elsewhere; `CARGO_TARGET_DIR` and the
/// workspace's `target/` are fallbacks for unusual layouts.
fn profile_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut profile = String::from("debug");
    if let Ok(exe) = std::env::current_exe()
        && let Some(mut dir) = exe.parent().map(Path::to_path_buf)
    {
        if dir
            .file_name()
            .is_some_and(|n| n == "deps" || n == "examples")
        {
            dir.pop();
        }
        if let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
            profile = name.to_owned();
        }
        dirs.push(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        let target = PathBuf::from(target);
        // Cargo resolves a relative CARGO_TARGET_DIR against the directory it was run from,
        // normally the workspace root.
        let target = if target.is_relative() {
            workspace.join(target)
        } else {
            target
        };
        dirs.push(target.join(&profile));
    }
    dirs.push(workspace.join("target").join(&profile));
    dirs.dedup();
    dirs
}
