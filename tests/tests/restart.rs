//! Stopping Hearth, cleanly or by SIGKILL, loses nothing it acknowledged.

use std::process::Command;

use hearth_e2e::{Backend, Server, synthea_dir};

fn patient_count(server: &Server) -> u64 {
    let url = format!("{}/Patient?_summary=count", server.fhir_url());
    let (_, bundle) = server.get_json(&url);
    bundle["total"].as_u64().unwrap()
}

fn load_sample(server: &Server) {
    let data = synthea_dir();
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("hospitalInformation")
                || name.starts_with("practitionerInformation")
                || name.starts_with("Abram")
        })
        .collect();
    let paths: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    let output = server.load(&paths).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn sigterm_stops_cleanly_and_restart_keeps_data() {
    let server = Server::start(&Backend::Embedded).unwrap();
    load_sample(&server);
    assert_eq!(patient_count(&server), 1);
    let data_dir = server
        .stop()
        .expect("hearth stops with status 0 on SIGTERM");

    let restarted = Server::start_in(&Backend::Embedded, data_dir).unwrap();
    assert_eq!(patient_count(&restarted), 1);
}

#[test]
fn sigkill_loses_nothing_acknowledged() {
    let server = Server::start(&Backend::Embedded).unwrap();
    load_sample(&server);
    assert_eq!(patient_count(&server), 1);

    Command::new("kill")
        .arg("-KILL")
        .arg(server.pid().to_string())
        .status()
        .unwrap();
    let data_dir = server.abandon();

    let restarted = Server::start_in(&Backend::Embedded, data_dir).unwrap();
    assert_eq!(patient_count(&restarted), 1);

    // The repository also rebuilds from the log alone after the crash.
    let data_dir = restarted.stop().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(data_dir.path().join(format!("repository.db{suffix}")));
    }
    let rebuilt = Server::start_in(&Backend::Embedded, data_dir).unwrap();
    assert_eq!(patient_count(&rebuilt), 1);
}
