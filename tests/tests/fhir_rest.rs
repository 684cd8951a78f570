//! End-to-end tests of the FHIR REST API: the write interactions and their conditional
//! forms, read and vread, history, search, batch and transaction Bundles, media types and
//! limits, scopes at writes and searches, and a round trip of the official R4 examples. Each
//! test starts its own `hearth serve`; every error response must be an OperationOutcome.
//! The tests named in each module's `through_proxy!` block run again against an
//! EHR-backed site, with a second `hearth serve` in front of the one that stores the data
//! (see `smart_cases/target.rs`), and `upstream_faults` stops and restarts that EHR.

// Declared first: its `through_proxy!` macro is used by the modules below. Each suite
// uses part of the module.
#[macro_use]
#[allow(dead_code, unused_macros)]
#[path = "smart_cases/target.rs"]
mod target;

// The SMART test support gets tokens through the real authorization flow; these tests use
// only part of it.
#[allow(dead_code)]
#[path = "smart_cases/browser.rs"]
mod browser;
#[allow(dead_code)]
#[path = "smart_cases/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "smart_cases/sample.rs"]
mod sample;
#[allow(dead_code, unused_imports)]
#[path = "smart_cases/support.rs"]
mod support;

#[path = "fhir_rest/client.rs"]
mod client;

#[path = "fhir_rest/bundles.rs"]
mod bundles;
#[path = "fhir_rest/cases.rs"]
mod cases;
#[path = "fhir_rest/examples.rs"]
mod examples;
#[path = "fhir_rest/foreign_references.rs"]
mod foreign_references;
#[path = "fhir_rest/history.rs"]
mod history;
#[path = "fhir_rest/interactions.rs"]
mod interactions;
#[path = "fhir_rest/scopes.rs"]
mod scopes;
#[path = "fhir_rest/search.rs"]
mod search;
#[path = "fhir_rest/search_scopes.rs"]
mod search_scopes;
#[path = "fhir_rest/search_system.rs"]
mod search_system;
#[path = "fhir_rest/upstream_faults.rs"]
mod upstream_faults;
#[path = "fhir_rest/us_core.rs"]
mod us_core;
