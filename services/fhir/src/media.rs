//! Media types of the FHIR API and the responses that carry resources.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::FhirError;

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

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
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

/// Middleware of the FHIR routes: answers 406 when neither the `Accept` header nor the
/// `_format` parameter allows JSON, the only format Hearth writes.
pub async fn negotiate(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match check_format(request.uri().query(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// Checks that the `_format` parameter of `query`, or without it the `Accept` header,
/// allows JSON, and returns 406 otherwise. `_format` overrides `Accept`, as the FHIR R4
/// HTTP page specifies, for clients that cannot set headers.
pub fn check_format(query: Option<&str>, headers: &HeaderMap) -> Result<(), FhirError> {
    if let Some(format) = format_param(query) {
        return if json_format(&format) && fhir_version_ok(&format) {
            Ok(())
        } else {
            Err(not_acceptable(&format!(
                "_format={format} is not supported; this server writes FHIR R4 JSON only"
            )))
        };
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if let Some(accept) = accept
        && !accepts_json(accept)
    {
        return Err(not_acceptable(&format!(
            "Accept: {accept} is not supported; this server writes FHIR R4 (fhirVersion=4.0) as application/fhir+json or application/json"
        )));
    }
    Ok(())
}

fn not_acceptable(message: &str) -> FhirError {
    FhirError::not_supported(StatusCode::NOT_ACCEPTABLE, message)
}

/// The decoded value of `_format` in a query string.
fn format_param(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "_format").then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// `_format` values meaning JSON. A `+` sent unencoded arrives as a space.
fn json_format(format: &str) -> bool {
    let essence = format.split(';').next().unwrap_or("").trim();
    matches!(
        essence,
        "json"
            | "application/json"
            | "application/fhir+json"
            | "application/fhir json"
            | "application/json+fhir"
    )
}

/// Whether the `fhirVersion` parameter of a media type, if any, names R4 (`4.0`, or the
/// full `4.0.1`).
fn fhir_version_ok(media_type: &str) -> bool {
    media_type.split(';').skip(1).all(|p| {
        let Some((name, value)) = p.split_once('=') else {
            return true;
        };
        !name.trim().eq_ignore_ascii_case("fhirVersion")
            || matches!(value.trim().trim_matches('"'), "4.0" | "4.0.1")
    })
}

/// Whether any media range of an `Accept` header (with a q-value above zero, and no
/// `fhirVersion` other than R4) covers JSON.
pub fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused
            && fhir_version_ok(range)
            && matches!(
                essence.as_str(),
                "*/*"
                    | "application/*"
                    | "application/json"
                    | "application/fhir+json"
                    | "application/json+fhir"
            )
    })
}

/// Checks the `Content-Type` of a request that carries a resource: FHIR JSON or JSON, or
/// none at all (taken as JSON). Anything else is 415.
pub fn require_json_body(headers: &HeaderMap) -> Result<(), crate::error::FhirError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let content_type = value.to_str().unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if matches!(
        essence.as_str(),
        "application/fhir+json" | "application/json" | "application/json+fhir"
    ) && fhir_version_ok(content_type)
    {
        Ok(())
    } else {
        Err(crate::error::FhirError::not_supported(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {content_type} is not supported; send application/fhir+json"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        assert!(accepts_json("application/fhir+json"));
        assert!(accepts_json("application/json"));
        assert!(accepts_json("text/html, application/xhtml+xml, */*;q=0.8"));
        assert!(accepts_json("application/fhir+json; charset=utf-8"));
        assert!(!accepts_json("application/foobar"));
        assert!(!accepts_json("application/fhir+xml"));
        assert!(!accepts_json("application/json;q=0"));
        assert!(accepts_json("application/fhir+json; fhirVersion=4.0"));
        assert!(!accepts_json("application/fhir+json; fhirVersion=3.0"));
        assert!(accepts_json(
            "application/fhir+json; fhirVersion=3.0, application/fhir+json; fhirVersion=4.0"
        ));
    }

    #[test]
    fn format_values() {
        assert!(json_format("json"));
        assert!(json_format("application/fhir json"));
        assert!(!json_format("xml"));
        assert!(fhir_version_ok("application/fhir+json;fhirVersion=4.0.1"));
        assert!(!fhir_version_ok("application/fhir+json;fhirVersion=5.0"));
        assert_eq!(
            format_param(Some("a=1&_format=application%2Ffhir%2Bjson")).as_deref(),
            Some("application/fhir+json")
        );
    }
}
