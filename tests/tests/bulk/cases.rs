//! The Bulk Data cases B1 to B4: type filters, cancellation, deletions and the token
//! rule of file downloads.

use std::time::Duration;

use serde_json::Value;

use crate::client::{BulkClient, assert_outcome, entries, keys, ndjson_lines};
use crate::fixture::{Hearth, OTHER_SERVICE, SERVICE, group, observation, patient};

/// A configuration whose exports run slowly enough to be caught while running.
pub const SLOW: &str = "[bulk]\nmax_resources_per_second = 100\nfile_max_resources = 50\n";

#[test]
fn type_and_type_filter_are_honoured() {
    let hearth = Hearth::start();
    hearth.put(&patient("f1", "female"));
    hearth.put(&patient("m1", "male"));
    hearth.put(&patient("o1", "other"));
    hearth.put(&observation("f1-obs", "f1", "2345-7", 100.0));
    hearth.put(&observation("m1-obs", "m1", "2345-7", 100.0));
    hearth.put(&group("g1", &["f1", "m1", "o1"]));
    let client = hearth.client();

    let manifest = client
        .export("Group/g1/$export?_type=Patient,Observation&_typeFilter=Patient%3Fgender%3Dfemale");
    let types: Vec<String> = entries(&manifest, "output")
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert!(
        types.iter().all(|t| t == "Patient" || t == "Observation"),
        "{types:?}"
    );
    assert_eq!(
        keys(&client.lines_of(&manifest, "output")),
        ["Observation/f1-obs", "Observation/m1-obs", "Patient/f1"]
    );

    // Two filters for one type are OR'd.
    let manifest = client.export(
        "Group/g1/$export?_type=Patient&_typeFilter=Patient%3Fgender%3Dfemale\
         &_typeFilter=Patient%3Fgender%3Dother",
    );
    assert_eq!(
        keys(&client.lines_of(&manifest, "output")),
        ["Patient/f1", "Patient/o1"]
    );

    // An unsupported filter is rejected unless the client asks for lenient handling.
    let unsupported = "Group/g1/$export?_type=Patient&_typeFilter=Patient%3Fno-such-param%3Dx";
    let strict = client.kick_off_with(unsupported, &[("prefer", "handling=strict")]);
    assert_outcome(&strict, 400);
    let message = assert_outcome(&client.kick_off(unsupported), 400);
    assert!(message.contains("no-such-param"), "{message}");
}

#[test]
fn lenient_type_filter_never_widens() {
    let hearth = Hearth::start();
    hearth.put(&patient("f1", "female"));
    hearth.put(&patient("m1", "male"));
    hearth.put(&observation("f1-obs", "f1", "2345-7", 100.0));
    hearth.put(&group("g1", &["f1", "m1"]));
    let client = hearth.client();
    let lenient = [("prefer", "handling=lenient")];
    let export = |path: &str| {
        let reply = client.kick_off_with(path, &lenient);
        client.wait(&client.status_url(&reply))
    };
    let reported = |manifest: &Value, text: &str| {
        let errors = client.lines_of(manifest, "error");
        errors.iter().any(|(_, e)| e.to_string().contains(text))
    };

    // The supported query of Patient still applies, so only f1 is exported.
    let manifest = export(
        "Group/g1/$export?_type=Patient&_typeFilter=Patient%3Fgender%3Dfemale\
         &_typeFilter=Patient%3Fno-such-param%3Dx",
    );
    assert_eq!(keys(&client.lines_of(&manifest, "output")), ["Patient/f1"]);
    assert!(
        reported(&manifest, "no-such-param"),
        "the query is not reported"
    );

    // With no query of Patient left, no Patient is exported rather than every one.
    let manifest = export(
        "Group/g1/$export?_type=Patient,Observation&_typeFilter=Patient%3Fno-such-param%3Dx",
    );
    assert_eq!(
        keys(&client.lines_of(&manifest, "output")),
        ["Observation/f1-obs"]
    );
    assert!(reported(&manifest, "no Patient was exported"));

    // The same without _type: every other type is still exported.
    let manifest = export("Group/g1/$export?_typeFilter=Patient%3Fno-such-param%3Dx");
    let exported = keys(&client.lines_of(&manifest, "output"));
    assert!(
        exported.contains(&"Observation/f1-obs".to_string()),
        "{exported:?}"
    );
    assert!(
        exported.iter().all(|key| !key.starts_with("Patient/")),
        "{exported:?}"
    );

    // A query of the only exported type that cannot be applied leaves nothing to export.
    let reply = client.kick_off_with(
        "Group/g1/$export?_type=Patient&_typeFilter=Patient%3Fno-such-param%3Dx",
        &lenient,
    );
    assert_outcome(&reply, 400);
}

/// The directory of a job in the local store, by the job id in its status URL.
fn job_dir(hearth: &Hearth, status_url: &str) -> std::path::PathBuf {
    let job_id = status_url.rsplit('/').next().expect("a job id");
    hearth.server.data_dir.path().join("bulk").join(job_id)
}

/// The files of a job in the local store, by the job id in its status URL.
pub fn stored_files(hearth: &Hearth, status_url: &str) -> usize {
    std::fs::read_dir(job_dir(hearth, status_url))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn cancel_means_gone() {
    let hearth = Hearth::start_configured(SLOW);
    let client = hearth.client();
    // Deleting a job's files must leave everything else in the store alone.
    let store = hearth.server.data_dir.path().join("bulk");
    std::fs::create_dir_all(store.join("other")).expect("a directory in the store");
    std::fs::write(store.join("other/keep.ndjson"), "{}\n").expect("a file in the store");

    let status = client.status_url(&client.kick_off("$export"));
    // Wait until the job has finished at least one file, so there is something to delete.
    let mut file_url = None;
    for _ in 0..200 {
        let reply = client.get(&status);
        assert_eq!(
            reply.status,
            202,
            "the slow job ended early: {}",
            reply.text()
        );
        if stored_files(&hearth, &status) > 0 {
            file_url = Some(());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(file_url.is_some(), "the job wrote no file in 20 s");

    let deleted = client.delete(&status);
    assert_eq!(deleted.status, 202, "{}", deleted.text());
    for _ in 0..3 {
        assert_outcome(&client.get(&status), 404);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_outcome(&client.get(&status), 404);
    assert_eq!(
        stored_files(&hearth, &status),
        0,
        "files remain after cancel"
    );
    let cancelled_dir = job_dir(&hearth, &status);
    assert!(
        !cancelled_dir.exists(),
        "{} remains",
        cancelled_dir.display()
    );

    // DELETE on a completed job removes its files too.
    let status = client.status_url(&client.kick_off("$export?_type=Patient"));
    let manifest = client.wait(&status);
    let url = entries(&manifest, "output")[0].1.clone();
    assert_eq!(client.download(&url).status, 200);
    assert!(stored_files(&hearth, &status) > 0);
    let deleted = client.delete(&status);
    assert_eq!(deleted.status, 202, "{}", deleted.text());
    assert_outcome(&client.get(&status), 404);
    assert_outcome(&client.download(&url), 404);
    assert_eq!(
        stored_files(&hearth, &status),
        0,
        "files remain after DELETE"
    );
    let deleted_dir = job_dir(&hearth, &status);
    assert!(!deleted_dir.exists(), "{} remains", deleted_dir.display());
    assert!(
        store.join("other/keep.ndjson").is_file(),
        "another file was deleted"
    );
}

#[test]
fn deletions_are_reported() {
    let hearth = Hearth::start();
    hearth.put(&patient("dp", "female"));
    hearth.put(&observation("o1", "dp", "2345-7", 80.0));
    std::thread::sleep(Duration::from_millis(1100));
    let t1 = crate::export::now_instant();
    std::thread::sleep(Duration::from_millis(1100));
    hearth.put(&observation("o2", "dp", "2345-7", 81.0));
    hearth.put(&observation("o3", "dp", "2345-7", 82.0));
    hearth.delete("Observation/o2");
    let client = hearth.client();

    let manifest = client.export(&format!("$export?_type=Observation&_since={t1}"));
    let output = keys(&client.lines_of(&manifest, "output"));
    assert_eq!(output, ["Observation/o3"]);

    let deleted = entries(&manifest, "deleted");
    assert_eq!(deleted.len(), 1, "{manifest}");
    assert_eq!(deleted[0].0, "Bundle");
    let bundles = client.lines_of(&manifest, "deleted");
    let bundle: &Value = &bundles[0].1;
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction");
    let requests: Vec<(String, String)> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["request"]["method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["request"]["url"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        requests,
        [("DELETE".to_string(), "Observation/o2".to_string())]
    );
}

#[test]
fn files_need_the_kick_off_token() {
    let hearth = Hearth::start_with(&["--backend-token-seconds", "10"], &[]);
    let manifest = hearth.client().export("$export?_type=Patient");
    assert_eq!(manifest["requiresAccessToken"], true);
    let urls: Vec<String> = entries(&manifest, "output")
        .into_iter()
        .map(|(_, url, _)| url)
        .collect();
    assert!(!urls.is_empty());

    // A token issued after the export, which expires 10 s later.
    let client = hearth.client();
    let anonymous = BulkClient::new(&client.base, "");
    let other = client.with_token(&hearth.token(OTHER_SERVICE, "system/*.rs"));
    let forged = client.with_token("not-a-token");
    for url in &urls {
        assert_eq!(
            client.download(url).status,
            200,
            "{url} with the right token"
        );
        assert_eq!(anonymous.download(url).status, 401, "{url} without a token");
        assert_eq!(
            other.download(url).status,
            401,
            "{url} with another client's token"
        );
        assert_eq!(
            forged.download(url).status,
            401,
            "{url} with a forged token"
        );
    }

    std::thread::sleep(Duration::from_secs(11));
    let fresh = client.with_token(&hearth.token(SERVICE, "system/*.rs"));
    for url in &urls {
        assert_eq!(
            client.download(url).status,
            401,
            "{url} with an expired token"
        );
        let reply = fresh.download(url);
        assert_eq!(
            reply.status, 200,
            "{url} with a fresh token of the same client"
        );
        assert!(!ndjson_lines(&reply.bytes).is_empty());
    }
}

#[test]
fn export_resumes_after_a_crash() {
    export_resumes_after(Stop::Kill);
}

/// SIGTERM stops a running job at its last checkpoint, and the next start resumes it as
/// after a crash: the job never fails because the runtime cancelled its tasks.
#[test]
fn export_resumes_after_sigterm() {
    export_resumes_after(Stop::Terminate);
}

/// How a test stops the server in the middle of an export.
pub enum Stop {
    Kill,
    Terminate,
}

fn export_resumes_after(stop: Stop) {
    let hearth = Hearth::start_configured(SLOW);
    let client = hearth.client();
    let status = client.status_url(&client.kick_off("$export"));
    let mut finished = 0;
    for _ in 0..300 {
        finished = stored_files(&hearth, &status);
        if finished >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(finished >= 3, "the job finished {finished} files in 15 s");
    assert_eq!(client.get(&status).status, 202, "the job is still running");

    let hearth = restart(hearth, stop);
    let client = hearth.client();

    let resumed = client.wait(&status);
    let lines = client.lines_of(&resumed, "output");
    let resumed_keys = keys(&lines);
    let mut unique = resumed_keys.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        resumed_keys.len(),
        "a resource was written twice"
    );

    let fresh = client.export("$export");
    assert_eq!(resumed_keys, keys(&client.lines_of(&fresh, "output")));
}

/// Stops a server started with [`Hearth::start_configured`] and starts it again on the
/// same port and data directory, so that status URLs stay valid.
pub fn restart(hearth: Hearth, stop: Stop) -> Hearth {
    let config = hearth.server.data_dir.path().join("hearth.toml");
    let config = config.to_string_lossy().into_owned();
    let Hearth { server, secrets } = hearth;
    let port = server.port;
    let data_dir = match stop {
        Stop::Kill => {
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &server.pid().to_string()])
                .status()
                .expect("kill runs");
            assert!(killed.success());
            server.abandon()
        }
        Stop::Terminate => server.stop().expect("hearth stops cleanly on SIGTERM"),
    };
    let server = hearth_e2e::Server::start_on_port(
        &hearth_e2e::Backend::Embedded,
        data_dir,
        port,
        &["--config", &config],
        &[],
    )
    .expect("hearth restarts");
    Hearth { server, secrets }
}
