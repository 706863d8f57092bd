//! Runs the committed seeds, the regression inputs and any generated corpus through the fuzz
//! targets' checks under plain `cargo test` (no libFuzzer, no nightly flags).
//!
//! `regressions/<target>/` holds minimised inputs of findings; each passes once its finding is
//! fixed. `regressions/xff/` holds the finding fixed in `ClientIp::resolve` (see README.md).

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use tower_lb_fuzz::{algo_name, backend_address, register_body, utf8_prefix, xff};

/// Every file under `dir` (none when it does not exist).
fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on every input in `dirs`, and fails naming each input that panicked, and why.
fn replay(target: fn(&[u8]), dirs: &[&str], at_least: usize) {
    let files: Vec<PathBuf> = dirs.iter().flat_map(|d| inputs(d)).collect();
    assert!(
        files.len() >= at_least,
        "{} inputs in {dirs:?}",
        files.len()
    );
    // The failures are reported below, one line each, instead of a backtrace each.
    panic::set_hook(Box::new(|_| {}));
    let failed: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let data = fs::read(path).expect("a readable input");
            let payload = panic::catch_unwind(|| target(&data)).err()?;
            let why = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Some(format!("{}: {why}", path.display()))
        })
        .collect();
    let _ = panic::take_hook();
    assert!(failed.is_empty(), "failing inputs:\n{}", failed.join("\n"));
}

#[test]
fn register_body_seeds_and_corpus_hold() {
    replay(
        register_body,
        &["seeds/register_body", "corpus/register_body"],
        10,
    );
}

#[test]
fn backend_address_seeds_and_corpus_hold() {
    replay(
        |data| backend_address(utf8_prefix(data)),
        &["seeds/backend_address", "corpus/backend_address"],
        10,
    );
}

#[test]
fn algo_name_seeds_and_corpus_hold() {
    replay(
        |data| algo_name(utf8_prefix(data)),
        &["seeds/algo_name", "corpus/algo_name"],
        10,
    );
}

#[test]
fn xff_seeds_and_corpus_hold() {
    replay(xff, &["seeds/xff", "corpus/xff"], 5);
}

#[test]
fn xff_regressions_hold() {
    replay(xff, &["regressions/xff"], 2);
}
