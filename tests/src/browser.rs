//! Running the scripts under tests/clients/node that drive Hearth's pages in headless
//! Chromium, and the helpers the browser tests share.
//!
//! infra/test.sh installs Chromium and the npm packages, then sets `HEARTH_TEST_NODE_DIR`
//! (the directory whose node_modules contains playwright-core, fhirclient and axe-core).
//! When it is unset, as under a plain `cargo test`, [`node_dir`] prints a notice and the
//! test returns without a browser.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Server, synthea_dir, workspace_root};

/// Returns the directory of the installed npm packages, or prints a notice naming `test`
/// and returns `None` when the test command did not install them.
pub fn node_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("HEARTH_TEST_NODE_DIR").map(PathBuf::from);
    if dir.is_none() {
        skip_notice(
            test,
            "HEARTH_TEST_NODE_DIR is not set; infra/test.sh installs Chromium and the npm \
             packages and sets it",
        );
    }
    dir
}

/// Prints why a test did not run. It writes to stderr directly, because the test harness
/// hides `eprintln!` output of passing tests.
pub fn skip_notice(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "{test}: not run, because {reason}");
}

/// Returns the directory of the client scripts, tests/clients.
pub fn clients_dir() -> PathBuf {
    workspace_root().join("tests/clients")
}

/// Runs `node tests/clients/node/SCRIPT CONFIG` with the packages of `node_dir` and
/// returns the JSON report it printed last. See [`run_driver`] for the failure cases.
pub fn run_node_script(node_dir: &Path, script: &str, config: &Value, timeout: Duration) -> Value {
    let mut command = Command::new("node");
    command
        .arg(clients_dir().join("node").join(script))
        .arg(config.to_string())
        .env("HEARTH_TEST_NODE_DIR", node_dir);
    run_driver(command, script, timeout)
}

/// Runs a driver script and returns the JSON object it printed last. Fails the test with
/// the report and stderr when the script exits non-zero or runs past `timeout`.
pub fn run_driver(mut command: Command, driver: &str, timeout: Duration) -> Value {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {driver}: {e}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the driver") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{driver} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    eprintln!("{driver} ran for {:.1?}", started.elapsed());

    let report: Value = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!("{driver} printed no JSON report ({status}):\n{stdout}\nstderr:\n{stderr}")
        });
    assert!(
        status.success(),
        "{driver} failed ({status}):\n{}\nstderr:\n{stderr}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    report
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Checks that Chromium sent no request off 127.0.0.1 (the drivers abort and record such
/// requests in `blocked_requests`).
pub fn assert_stayed_on_loopback(report: &Value) {
    assert_eq!(
        report["blocked_requests"],
        json!([]),
        "Chromium left 127.0.0.1"
    );
}

/// Returns the file of the Synthea sample whose name starts with `prefix`.
pub fn sample_file(prefix: &str) -> PathBuf {
    std::fs::read_dir(synthea_dir())
        .expect("the Synthea sample directory is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .unwrap_or_else(|| panic!("no Synthea file starts with {prefix}"))
}

/// POSTs JSON to the server with the admin credential and returns the JSON response,
/// which must be a success.
pub fn admin_post(server: &Server, path: &str, body: &Value) -> Value {
    admin_send(server, reqwest::Method::POST, path, body)
}

/// Sends JSON to the server with the admin credential and returns the JSON response,
/// which must be a success.
pub fn admin_send(server: &Server, method: reqwest::Method, path: &str, body: &Value) -> Value {
    let url = format!("{}{path}", server.base_url);
    let response = reqwest::blocking::Client::new()
        .request(method.clone(), &url)
        .bearer_auth(server.admin_token())
        .json(body)
        .send()
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
    let status = response.status();
    let text = response.text().unwrap_or_default();
    assert!(
        status.is_success(),
        "{method} {path} returned {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path} returned no JSON ({e})"))
}
