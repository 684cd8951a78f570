//! Static files embedded in the binary: the console's stylesheet and script, the icon
//! that browsers show for Hearth's pages, and the demo app with the vendored SMART
//! JavaScript client.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Name, content type and content of each console asset.
const CONSOLE: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/console.js"),
    ),
];

/// The demo app's files. `fhir-client.js` is the unmodified browser build of npm
/// fhirclient, kept under `vendor/` with its license.
const DEMO: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../demo-app/index.html"),
    ),
    (
        "launch.html",
        "text/html; charset=utf-8",
        include_str!("../demo-app/launch.html"),
    ),
    (
        "demo.js",
        "text/javascript; charset=utf-8",
        include_str!("../demo-app/demo.js"),
    ),
    (
        "demo.css",
        "text/css; charset=utf-8",
        include_str!("../demo-app/demo.css"),
    ),
    (
        "fhir-client.js",
        "text/javascript; charset=utf-8",
        include_str!("../vendor/fhirclient/fhir-client.pure.min.js"),
    ),
    (
        "fhir-client.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_str!("../vendor/fhirclient/LICENSE"),
    ),
];

fn serve(files: &'static [(&'static str, &'static str, &'static str)], name: &str) -> Response {
    match files.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// Hearth's icon, a flame on a dark square: one 32 by 32 PNG image in an ICO container.
/// Browsers ask every origin for `/favicon.ico`, so every page of Hearth gets it.
const FAVICON: &[u8] = include_bytes!("../assets/favicon.ico");

pub async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/x-icon"),
            (header::CACHE_CONTROL, "max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        FAVICON,
    )
        .into_response()
}

pub async fn console_asset(Path(name): Path<String>) -> Response {
    serve(CONSOLE, &name)
}

pub async fn demo_asset(Path(name): Path<String>) -> Response {
    serve(DEMO, &name)
}

pub async fn demo_index() -> Response {
    serve(DEMO, "index.html")
}
