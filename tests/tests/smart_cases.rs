//! End-to-end tests of Hearth's SMART authorization server: the authorization cases,
//! bad input at every endpoint, EHR launch context, sites, dynamic registration, and
//! scope enforcement at the FHIR API. Each test starts its own `hearth serve` with two
//! Synthea patients loaded, registers apps and users through the admin API, and drives
//! the HTTP flows as a browser and an app would. The tests named in a module's
//! `through_proxy!` block run again at an EHR-backed site of a second server, whose
//! upstream stores the patients (see `smart_cases/target.rs`).

// Declared first: its `through_proxy!` macro is used by the modules below. Each suite
// uses part of the module.
#[macro_use]
#[allow(dead_code, unused_macros)]
#[path = "smart_cases/target.rs"]
mod target;

#[path = "smart_cases/browser.rs"]
mod browser;
// The Bulk Data client is shared with bulk.rs, which uses more of it.
#[allow(dead_code)]
#[path = "bulk/client.rs"]
mod bulk_client;
#[path = "smart_cases/http.rs"]
mod http;
#[path = "smart_cases/sample.rs"]
mod sample;
#[path = "smart_cases/support.rs"]
mod support;

#[path = "smart_cases/authorize.rs"]
mod authorize;
#[path = "smart_cases/bad_input.rs"]
mod bad_input;
#[path = "smart_cases/bulk_user.rs"]
mod bulk_user;
#[path = "smart_cases/client_auth.rs"]
mod client_auth;
#[path = "smart_cases/discovery.rs"]
mod discovery;
#[path = "smart_cases/introspection.rs"]
mod introspection;
#[path = "smart_cases/jwks_tls.rs"]
mod jwks_tls;
#[path = "smart_cases/launch.rs"]
mod launch;
#[path = "smart_cases/lifecycle.rs"]
mod lifecycle;
#[path = "smart_cases/management.rs"]
mod management;
#[path = "smart_cases/registration.rs"]
mod registration;
#[path = "smart_cases/safeguards.rs"]
mod safeguards;
#[path = "smart_cases/scopes.rs"]
mod scopes;
#[path = "smart_cases/sites.rs"]
mod sites;
