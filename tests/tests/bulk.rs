//! End-to-end tests of Bulk Data export and import: each test starts its own `hearth
//! serve` on the embedded log with a few Synthea patients loaded, takes a
//! backend-services token from the token endpoint and runs the flows of the Bulk Data
//! Access IG with the client in `bulk/client.rs`, written from the IG.

// The client and the fixture are shared with bulk_s3.rs, which uses a different part of them.
#[allow(dead_code)]
#[path = "bulk/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "bulk/fixture.rs"]
mod fixture;

#[path = "bulk/cases.rs"]
mod cases;
#[path = "bulk/cohorts.rs"]
mod cohorts;
#[path = "bulk/export.rs"]
mod export;
#[path = "bulk/filters.rs"]
mod filters;
#[path = "bulk/foreign.rs"]
mod foreign;
#[path = "bulk/import.rs"]
mod import;
#[path = "bulk/kickoff.rs"]
mod kickoff;
#[path = "bulk/lines.rs"]
mod lines;
#[path = "bulk/organize.rs"]
mod organize;
#[path = "bulk/provenance.rs"]
mod provenance;
