//! The CapabilityStatement at `metadata`.
//!
//! It is generated from the same registries the handlers use, so it lists exactly the
//! resource types, interactions and search parameters that work.

use std::sync::OnceLock;

use axum::extract::{Query, State};
use hearth_fhir_core::resource_types;
use hearth_fhir_core::search_params::{self, ParamType};
use serde_json::{Value, json};

use crate::FhirState;
use crate::error::FhirResult;
use crate::media::FhirJson;
use crate::search::CommonParams;

pub async fn metadata(
    State(state): State<FhirState>,
    Query(common): Query<CommonParams>,
) -> FhirResult<FhirJson> {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body =
        DOCUMENT.get_or_init(|| capability_statement(&state.settings.base_url()).to_string());
    Ok(FhirJson::ok(body.clone()).pretty(common.pretty()))
}

/// Whether the search engine of this version handles a parameter of this type.
fn searchable(param_type: ParamType) -> bool {
    matches!(
        param_type,
        ParamType::Token | ParamType::Reference | ParamType::String | ParamType::Uri
    )
}

fn capability_statement(base_url: &str) -> Value {
    let resources: Vec<Value> = resource_types::all()
        .iter()
        .map(|resource_type| resource_entry(resource_type))
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": today(),
        "kind": "instance",
        "software": {"name": "Hearth", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Hearth FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
        }],
    })
}

fn resource_entry(resource_type: &str) -> Value {
    let mut params = vec![json!({
        "name": "_id",
        "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
        "type": "token",
    })];
    for param in search_params::for_type(resource_type) {
        if param.code == "_id" || !searchable(param.param_type) {
            continue;
        }
        params.push(json!({
            "name": param.code,
            "definition": param.url,
            "type": type_code(param.param_type),
        }));
    }
    json!({
        "type": resource_type,
        "interaction": [
            {"code": "read"},
            {"code": "vread"},
            {"code": "search-type"},
        ],
        "versioning": "versioned",
        "readHistory": true,
        "searchParam": params,
    })
}

fn type_code(param_type: ParamType) -> &'static str {
    match param_type {
        ParamType::Number => "number",
        ParamType::Date => "date",
        ParamType::String => "string",
        ParamType::Token => "token",
        ParamType::Reference => "reference",
        ParamType::Composite => "composite",
        ParamType::Quantity => "quantity",
        ParamType::Uri => "uri",
        ParamType::Special => "special",
    }
}

/// Today's date in UTC, the date of a statement generated at start.
fn today() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}
