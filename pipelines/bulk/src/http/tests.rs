use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

use super::*;

#[test]
fn http_dates_are_imf_fixdate() {
    assert_eq!(
        http_date(1_780_000_000_000_000),
        "Thu, 28 May 2026 20:26:40 GMT"
    );
}

/// The FHIR router's generic routes and the Bulk Data routes side by side, as `hearth
/// serve` merges them: each path must reach the route meant for it.
#[tokio::test]
async fn operations_route_before_generic_routes() {
    let generic = Router::new()
        .route("/{resource_type}", get(|| async { "search" }))
        .route("/{resource_type}/{id}", get(|| async { "read" }))
        .route(
            "/{resource_type}/{id}/_history",
            get(|| async { "history" }),
        );
    let operations = Router::new()
        .route("/$export", get(|| async { "system export" }))
        .route("/Patient/$export", get(|| async { "patient export" }))
        .route("/Group/{id}/$export", get(|| async { "group export" }))
        .route("/$bulk-status/{job}", get(|| async { "status" }));
    let app = generic.merge(operations);

    let cases = [
        ("/$export", "system export"),
        ("/Patient/$export", "patient export"),
        ("/Group/g1/$export", "group export"),
        ("/$bulk-status/j1", "status"),
        ("/Patient/p1", "read"),
        ("/Group/g1", "read"),
        ("/Group/g1/_history", "history"),
        ("/Patient", "search"),
        ("/Group", "search"),
    ];
    for (path, expected) in cases {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(body, expected.as_bytes(), "{path}");
    }
}
