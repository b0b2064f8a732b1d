//! The configuration file: `Config::from_toml` on arbitrary text (bytes read as UTF-8,
//! lossily). Errors are expected; panics are not. Every error names the file.
//!
//! Inputs naming a path under /dev, /proc or /sys are skipped: a `prompt` WAV path is read
//! from disk, and reading /dev/zero or /dev/stdin says nothing about the checker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipscreen::config::Config;

/// A configuration that loads, to load the phone-number metadata before the clock starts.
const WARM_UP: &str = "[server]\nlisten = [\"udp:127.0.0.1:5060\"]\nnext_hop = \"udp:127.0.0.1:5070\"\n[brand]\nname = \"b\"\n[[tenant]]\nname = \"t\"\ncountry = \"ES\"\n";

fuzz_target!(
    // The first check loads the phone-number metadata, which takes seconds under
    // AddressSanitizer: done once here, before libFuzzer's clock starts (-timeout).
    init: {
        Config::from_toml(WARM_UP, "warm-up.toml", None).expect("the warm-up configuration loads");
    },
    |data: &[u8]| run(data)
);

fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    match Config::from_toml(&text, "fuzz.toml", None) {
        Ok(config) => {
            let _ = config.warnings.len();
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error with no mistake in it");
            for e in &errors.0 {
                assert_eq!(e.file, "fuzz.toml");
            }
            let _ = errors.to_string();
        }
    }
}
