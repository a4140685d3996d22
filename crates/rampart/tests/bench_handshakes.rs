//! `rampart bench handshakes` as users run it: the real binary builds real
//! OpenMLS groups and reports a verification time per group size, and a
//! commit that the server's check refuses would make it fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

#[test]
fn reports_each_group_size() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "handshakes",
            "--members",
            "2,5",
            "--rounds",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["handshakes"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, members) in rows.iter().zip([2, 5]) {
        assert_eq!(row["members"], members);
        assert!(row["commit_ms"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["tree_ms"].as_f64().unwrap() > 0.0, "{row}");
    }

    let text = Command::new(BIN)
        .args(["bench", "handshakes", "--members", "3", "--rounds", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("commit ms"), "{text}");
}
