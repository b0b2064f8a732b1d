//! The admin API against its own OpenAPI document (SPEC §9.2, `GET /1.1/api/api.yml`):
//! schemathesis reads the document from the running binary, generates requests for every
//! operation from it (valid ones and invalid ones), sends them over loopback, and checks every
//! answer against the document: no server error, a status, content type, headers and body the
//! document gives that operation.
//!
//! schemathesis comes from PyPI; scripts/test installs the version it pins. Without it this
//! test fails, saying how to install it: it is never skipped.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::Proc;
use common::proxy::Sipscreen;
use common::{read_lossy, TempDir};

/// What schemathesis checks in every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";
/// Generated requests per operation and phase: enough to reach every status the document
/// gives, few enough for the run to take about half a minute.
const MAX_EXAMPLES: &str = "10";
/// The same requests every run.
const SEED: &str = "1";
/// How long schemathesis may run before it is stopped and the test fails.
const LIMIT: Duration = Duration::from_secs(100);

/// The schemathesis command: the module of `python3`, where scripts/test installs it (with
/// `pip --user`, whose script directory may not be on PATH), else `schemathesis` on PATH.
fn schemathesis() -> Vec<&'static str> {
    let candidates = [
        vec!["python3", "-m", "schemathesis.cli"],
        vec!["schemathesis"],
    ];
    for command in candidates {
        let runs = Command::new(command[0])
            .args(&command[1..])
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if runs {
            return command;
        }
    }
    panic!(
        "schemathesis is not installed: this test needs it. Run scripts/test, which installs \
         it, or `python3 -m pip install --user 'schemathesis==4.32.5'`"
    );
}

#[test]
fn the_api_answers_as_its_openapi_document_says() {
    let command = schemathesis();
    let dir = TempDir::new("admin_schema", "schemathesis");
    // A copy: schemathesis creates, changes and deletes objects, and the API writes them.
    let config = dir.path("sipscreen.toml");
    fs::copy(common::scenario("admin", "schema.toml"), &config).expect("copy the configuration");
    let proxy = Sipscreen::start_on(&dir, &config);
    let document = format!("http://{}/1.1/api/api.yml", proxy.admin());

    let output = dir.path("schemathesis.out");
    let log = fs::File::create(&output).expect("create schemathesis's output");
    let started = Instant::now();
    let mut run = Proc::spawn(
        "schemathesis",
        Command::new(command[0])
            .args(&command[1..])
            .args(["run", &document, "--checks", CHECKS])
            // The live feed answers a stream that ends only when the client goes away: a
            // request for it would wait out the request timeout. It has tests of its own.
            .args(["--exclude-path", "/1.1/events"])
            .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
            // One request at a time, so that the seed gives the same run; no example
            // database, so that no earlier run changes it (and nothing is written).
            .args(["--workers", "1", "--generation-database", "none"])
            .args(["--request-timeout", "10", "--no-color"])
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("share the output file"))
            .stderr(log),
    );
    let status = run.wait(LIMIT);
    if status.is_none() {
        run.stop(Duration::from_secs(5));
    }
    let printed = read_lossy(&output);
    let took = started.elapsed();
    let status = status
        .unwrap_or_else(|| panic!("schemathesis did not finish within {LIMIT:?}:\n{printed}"));
    assert!(
        status.success(),
        "schemathesis found answers that the document does not describe ({status}):\n\
         {printed}\nsipscreen's log:\n{}",
        proxy.log_tail()
    );
    println!("schemathesis passed in {took:.1?}:\n{printed}");
    // Every change it made was checked like the file itself: the file is still valid.
    let validate = Command::new(env!("CARGO_BIN_EXE_sipscreen"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("run validate");
    assert!(validate.status.success(), "{validate:?}");
    proxy.stop_ok();
}
