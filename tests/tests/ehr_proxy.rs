//! End-to-end tests of a site backed by an upstream EHR: two Hearth processes, one as the
//! EHR (its default site contains the Synthea sample) and one in front of it with an
//! EHR-backed site that authenticates upstream with SMART Backend Services. Apps launch
//! and read through the front site; the tests check scope filtering, URL rewriting, the
//! cache and its invalidation, and the 502/504 answers when the EHR is slow or stopped.

// Declared first: its `through_proxy!` macro is used by the modules below. Each suite
// uses part of the module.
#[macro_use]
#[allow(dead_code, unused_macros)]
#[path = "smart_cases/target.rs"]
mod target;

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

#[path = "ehr_proxy/front.rs"]
mod front;

#[allow(dead_code)]
#[path = "bulk/client.rs"]
mod bulk_client;

#[path = "ehr_proxy/bulk.rs"]
mod bulk;

#[path = "ehr_proxy/cases.rs"]
mod cases;

#[path = "ehr_proxy/settings.rs"]
mod settings;

#[path = "ehr_proxy/picker.rs"]
mod picker;

#[path = "ehr_proxy/stu3.rs"]
mod stu3;

#[path = "ehr_proxy/leaks.rs"]
mod leaks;
