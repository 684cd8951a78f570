//! Media types of the FHIR API and the responses that carry resources.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A JSON body sent as `application/fhir+json`, pretty-printed when the request asked
/// for `_pretty=true`.
pub struct FhirJson {
    pub status: StatusCode,
    pub body: String,
    pub headers: HeaderMap,
}

impl FhirJson {
    pub fn ok(body: String) -> Self {
        FhirJson {
            status: StatusCode::OK,
            body,
            headers: HeaderMap::new(),
        }
    }

    pub fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    /// Re-indents the body when `pretty` is set; the compact form is the default because
    /// it is sent as stored, without parsing.
    pub fn pretty(mut self, pretty: bool) -> Self {
        if pretty
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&self.body)
            && let Ok(text) = serde_json::to_string_pretty(&value)
        {
            self.body = text;
        }
        self
    }
}

impl IntoResponse for FhirJson {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        headers.extend(self.headers);
        response
    }
}
