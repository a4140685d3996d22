//! `rampart bench dlp` as users run it: the real binary on a small corpus.
//! Its report has every detector, and none of the generated numbers or
//! secrets appears in it unmasked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
const LINES: usize = 400;
const SEED: u64 = 11;

fn run(json: bool) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "bench",
        "dlp",
        "--lines",
        &LINES.to_string(),
        "--seed",
        &SEED.to_string(),
    ]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The labelled values (and their 8-character middles) of the corpus the
/// command measured.
fn secrets() -> Vec<String> {
    let mut out = Vec::new();
    for sample in rampart_policy::corpus::generate(SEED, LINES) {
        for label in &sample.labels {
            let value = &sample.text[label.span.clone()];
            let chars: Vec<char> = value.chars().collect();
            if chars.len() >= 12 {
                out.push(value.to_owned());
                let mid = chars.len() / 2;
                out.push(chars[mid - 4..mid + 4].iter().collect());
            }
        }
    }
    out
}

#[test]
fn reports_every_detector_and_masks_what_it_shows() {
    let json = run(true);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let detectors = report["detectors"].as_array().unwrap();
    assert_eq!(detectors.len(), rampart_policy::Detector::ALL.len());
    for d in detectors {
        assert!(d["support"].as_u64().unwrap() > 0, "{d}");
    }
    assert!(report["throughput"]["corpus_mb_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["throughput"]["message_bytes"].as_u64().unwrap() == 64 * 1024);

    let table = run(false);
    assert!(
        table.contains("precision") && table.contains("MB/s"),
        "{table}"
    );
    for secret in secrets() {
        for output in [&json, &table] {
            assert!(!output.contains(&secret), "{secret:?} printed unmasked");
        }
    }
}
