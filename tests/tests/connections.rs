//! A client that opens a connection and never finishes its request headers is
//! disconnected, and other clients are served meanwhile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hearth_e2e::{Backend, Server};

/// Maximum wait for the disconnect: the server's 30 s header timeout plus slack for a
/// loaded machine.
const DISCONNECT_WITHIN: Duration = Duration::from_secs(90);

#[test]
fn partial_headers_are_disconnected() {
    let server = Server::start(&Backend::Embedded).unwrap();
    let mut stalled = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stalled
        .write_all(b"GET /fhir/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    stalled.set_read_timeout(Some(DISCONNECT_WITHIN)).unwrap();

    let (status, statement) = server.get_json(&format!("{}/metadata", server.fhir_url()));
    assert_eq!(status, 200, "another client is served while one stalls");
    assert_eq!(statement["resourceType"], "CapabilityStatement");

    let started = Instant::now();
    let mut rest = Vec::new();
    let outcome = stalled.read_to_end(&mut rest);
    assert!(
        outcome.is_ok(),
        "the stalled connection was still open after {:?}: {outcome:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        !text.contains("CapabilityStatement"),
        "a request without its final blank line was answered: {text}"
    );
    server.stop().unwrap();
}
