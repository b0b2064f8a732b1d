//! `sipscreen replay` from the outside: every capture that has an expectations file next to
//! it (`NAME.expect.jsonl`, in tests/captures and pcaps/) replays to exactly those decisions;
//! differences exit 1; unreadable captures exit 2 with the file and offset.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipscreen"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Captures with expectations, each with the configuration of its folder (`replay.toml`).
fn expected_captures() -> Vec<(PathBuf, PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in ["tests/captures", "pcaps"] {
        let dir = root().join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let config = dir.join("replay.toml");
        for e in entries {
            let path = e.unwrap().path();
            let is_capture = path
                .extension()
                .is_some_and(|x| x == "pcap" || x == "pcapng");
            let expect = path.with_extension("").with_extension("expect.jsonl");
            if is_capture && expect.exists() {
                out.push((path, expect, config.clone()));
            }
        }
    }
    out.sort();
    out
}

fn replay(config: &Path, capture: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg(capture)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn every_capture_replays_to_its_expected_decisions() {
    let captures = expected_captures();
    assert!(captures.len() >= 8, "{captures:?}");
    for (capture, expect, config) in captures {
        let out = replay(
            &config,
            &capture,
            &["--json", "--expect", expect.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}: {}\n{}",
            capture.display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        // One JSON object per line, with the keys of check --json and where the call came from.
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected = std::fs::read_to_string(&expect)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        assert_eq!(lines.len(), expected, "{}", capture.display());
        for l in &lines {
            for key in [
                "call_id", "time", "source", "decision", "call", "tenant", "identity", "dialed",
                "e164", "next_hop", "reason",
            ] {
                assert!(
                    l.get(key).is_some(),
                    "{}: no {key} in {l}",
                    capture.display()
                );
            }
        }
    }
}

#[test]
fn retransmissions_and_credentials_are_not_new_calls() {
    // aaa.pcap: eleven INVITEs (retransmissions, and INVITEs re-sent with credentials) in four
    // calls; ipv6frag.pcap: one call seen at two hops.
    let config = root().join("tests/captures/replay.toml");
    for (file, calls) in [("aaa.pcap", 4), ("ipv6frag.pcap", 1), ("sipp.pcap", 5)] {
        let out = replay(&config, &root().join("tests/captures").join(file), &[]);
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().lines().count(),
            calls,
            "{file}"
        );
    }
}

#[test]
fn a_difference_exits_1_and_says_what_differs() {
    let dir = std::env::temp_dir().join(format!("sipscreen-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let expect = dir.join("wrong.jsonl");
    let real =
        std::fs::read_to_string(root().join("tests/captures/ipv6frag.expect.jsonl")).unwrap();
    std::fs::write(&expect, real.replace("\"deny\"", "\"allow\"")).unwrap();
    let out = replay(
        &root().join("tests/captures/replay.toml"),
        &root().join("tests/captures/ipv6frag.pcap"),
        &["--expect", expect.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("decision expected \"allow\", got \"deny\""),
        "{stderr}"
    );
    // A call the expectations do not know is a difference too.
    std::fs::write(&expect, "").unwrap();
    let out = replay(
        &root().join("tests/captures/replay.toml"),
        &root().join("tests/captures/ipv6frag.pcap"),
        &["--expect", expect.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("replayed but not expected"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreadable_capture_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("sipscreen-replay-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let whole = std::fs::read(root().join("tests/captures/cancel.pcap")).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() - 10]).unwrap();
    let out = replay(&root().join("tests/captures/replay.toml"), &cut, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cut.pcap") && stderr.contains("offset"),
        "{stderr}"
    );
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all").unwrap();
    let out = replay(&root().join("tests/captures/replay.toml"), &junk, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.pcap"));
    std::fs::remove_dir_all(&dir).unwrap();
}
