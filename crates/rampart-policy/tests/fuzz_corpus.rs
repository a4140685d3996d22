//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and any saved crash
//! artifacts (`fuzz/artifacts/<target>/`) through the fuzz entry points, so
//! every input the fuzzers were seeded with or once broke on runs in the
//! ordinary `cargo test`, on stable, without libFuzzer.

#[path = "../fuzz/src/lib.rs"]
mod entry;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        files.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file()),
        );
    }
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) -> std::io::Result<()> {
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for fuzz target {target}");
    for path in files {
        let data = std::fs::read(&path)?;
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
    Ok(())
}

#[test]
fn scan_corpus() -> std::io::Result<()> {
    replay("scan", entry::scan)
}

#[test]
fn policy_parse_corpus() -> std::io::Result<()> {
    replay("policy_parse", entry::policy_parse)
}

#[test]
fn links_corpus() -> std::io::Result<()> {
    replay("links", entry::links)
}

#[test]
fn files_corpus() -> std::io::Result<()> {
    replay("files", entry::files)
}
