//! The kind of site a test runs against. The FHIR REST, SMART and analytics suites run
//! their tests on a repository site, and the tests listed in a `through_proxy!` block run
//! a second time on an EHR-backed site: a second Hearth process (the front) whose site
//! `ehr` proxies the default site of the first process, which stores the test's data.
//!
//! The target is a thread-local setting because the test harness runs each test on its
//! own thread: the fixtures read it when they start their servers.

use std::cell::Cell;

use hearth_e2e::{Backend, Server};
use reqwest::blocking::Client;
use serde_json::json;

use crate::http::Reply;

/// Where a test's FHIR and OAuth requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The default site of one Hearth process, backed by its repository.
    Repository,
    /// The EHR-backed site of a front Hearth process, whose upstream is the default site
    /// of the process that holds the data.
    EhrProxy,
}

thread_local! {
    static TARGET: Cell<Target> = const { Cell::new(Target::Repository) };
}

/// The target of the test running on this thread.
pub fn current() -> Target {
    TARGET.with(Cell::get)
}

pub fn is_proxy() -> bool {
    current() == Target::EhrProxy
}

/// Runs a test body against the EHR-backed site.
pub fn run_through_proxy(test: fn()) {
    TARGET.with(|target| target.set(Target::EhrProxy));
    test();
}

/// The id of the EHR-backed site at the front.
pub const PROXY_SITE: &str = "ehr";

/// The client id the front has at the EHR.
const FRONT_CLIENT: &str = "hearth-front";

/// Seconds a proxied response stays in the front's cache. The suites run with the cache
/// on, so their writes also check that the front invalidates what they change.
const CACHE_SECONDS: i64 = 300;

/// Starts the front with extra `hearth serve` arguments, registers it at `ehr` as a
/// backend service with `system/*.cruds` and creates the EHR-backed site, whose upstream
/// is the default site of `ehr`.
pub fn start_front(ehr: &Server, args: &[&str]) -> Server {
    let data_dir = tempfile::tempdir().expect("a data directory for the front");
    let front =
        Server::start_with(&Backend::Embedded, data_dir, args, &[]).expect("the front starts");
    let http = Client::new();

    let jwks = Reply::send(http.get(format!("{}/ehr-client/jwks", front.base_url)));
    assert_eq!(jwks.status, 200, "the front's JWKS: {}", jwks.body);
    let client = json!({
        "client_id": FRONT_CLIENT,
        "name": "Hearth front",
        "client_type": "confidential-asymmetric",
        "jwks": jwks.json(),
        "scope": "system/*.cruds",
        "sites": ["default"],
    });
    let reply = Reply::send(
        http.post(format!("{}/admin/apps", ehr.base_url))
            .bearer_auth(ehr.admin_token())
            .json(&client),
    );
    assert_eq!(
        reply.status, 201,
        "registering the front at the EHR: {}",
        reply.body
    );

    let site = json!({
        "site_id": PROXY_SITE,
        "name": "EHR-backed site",
        "backing": "ehr",
        "upstream_base_url": ehr.fhir_url(),
        "upstream_auth_method": "backend-services",
        "upstream_client_id": FRONT_CLIENT,
        "upstream_scope": "system/*.cruds",
        "upstream_fhir_version": "4.0.1",
        "default_cache_freshness_s": CACHE_SECONDS,
    });
    let reply = Reply::send(
        http.post(format!("{}/admin/sites", front.base_url))
            .bearer_auth(front.admin_token())
            .json(&site),
    );
    assert_eq!(
        reply.status, 201,
        "creating the EHR-backed site: {}",
        reply.body
    );
    front
}

/// The FHIR base of the EHR-backed site at `front`.
pub fn proxy_fhir_url(front: &Server) -> String {
    format!("{}/sites/{PROXY_SITE}/fhir", front.base_url)
}

/// Declares, inside a test module, a module `through_proxy` with one test per name that
/// runs the module's test of that name against the EHR-backed site. Names after `skip`
/// become ignored tests whose reason says why they cannot hold through the proxy.
macro_rules! through_proxy {
    ($($name:ident),* $(,)? $(; $(skip $skipped:ident: $reason:literal),* $(,)?)?) => {
        mod through_proxy {
            $(
                #[test]
                fn $name() {
                    crate::target::run_through_proxy(super::$name);
                }
            )*
            $($(
                #[test]
                #[ignore = $reason]
                fn $skipped() {
                    crate::target::run_through_proxy(super::$skipped);
                }
            )*)?
        }
    };
}
