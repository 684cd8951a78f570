//! The CapabilityStatement at `metadata`.
//!
//! It is generated from the same registries the handlers use, so it lists exactly the
//! resource types, interactions and search parameters that work.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use axum::extract::{Extension, Query};
use hearth_fhir_core::resource_types;
use hearth_fhir_core::search_params::{self, ParamType};
use serde_json::{Value, json};

use crate::SiteContext;
use crate::error::FhirResult;
use crate::media::FhirJson;
use crate::search::CommonParams;

pub async fn metadata(
    Extension(site): Extension<SiteContext>,
    Query(common): Query<CommonParams>,
) -> FhirResult<FhirJson> {
    static DOCUMENTS: OnceLock<Mutex<HashMap<String, Arc<String>>>> = OnceLock::new();
    let documents = DOCUMENTS.get_or_init(Default::default);
    let cached = documents.lock().get(&site.site_id).cloned();
    let body = match cached {
        Some(body) => body,
        None => {
            let body = Arc::new(capability_statement(&site).to_string());
            documents.lock().insert(site.site_id.clone(), body.clone());
            body
        }
    };
    Ok(FhirJson::ok(body.as_ref().clone()).pretty(common.pretty()))
}

/// Whether search handles parameters of this type: every type but `special`, whose
/// R4 parameters (such as `near` and `_text`) have no index.
fn searchable(param_type: ParamType) -> bool {
    param_type != ParamType::Special
}

fn capability_statement(site: &SiteContext) -> Value {
    let base_url = site.fhir_base_url.as_str();
    let resources: Vec<Value> = resource_types::all()
        .iter()
        .map(|resource_type| {
            let mut entry = resource_entry(resource_type);
            if let Some(operations) = type_operations(base_url, resource_type) {
                entry["operation"] = operations;
            }
            entry
        })
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
            "security": security(site),
            "resource": resources,
            "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "search-system"},
                {"code": "history-system"},
            ],
            "searchParam": system_search_params(),
            "operation": [
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"},
                {"name": "import", "definition": format!("{base_url}/OperationDefinition/{}", crate::operations::IDS[0])},
            ],
        }],
    })
}

/// The parameters of system-level search without `_type`: those every resource type has
/// under one definition. With `_type`, any parameter the named types share works.
fn system_search_params() -> Value {
    let types = resource_types::all();
    let Some(first) = types.first() else {
        return json!([]);
    };
    let shared_by_all = |param: &&search_params::SearchParam| {
        types.iter().all(|resource_type| {
            search_params::get(resource_type, &param.code).is_some_and(|p| p.url == param.url)
        })
    };
    search_params::for_type(first)
        .iter()
        .filter(|param| searchable(param.param_type))
        .filter(shared_by_all)
        .map(|param| {
            json!({
                "name": param.code,
                "definition": param.url,
                "type": type_code(param.param_type),
            })
        })
        .collect()
}

/// The SMART on FHIR security service with the oauth-uris extension, which clients
/// that do not read `.well-known/smart-configuration` use to find the endpoints.
fn security(site: &SiteContext) -> Value {
    let auth = site.auth_base_url.as_str();
    json!({
        "cors": true,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }],
            "text": "OAuth2 using SMART App Launch",
        }],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": format!("{auth}/authorize")},
                {"url": "token", "valueUri": format!("{auth}/token")},
                {"url": "introspect", "valueUri": format!("{auth}/introspect")},
                {"url": "revoke", "valueUri": format!("{auth}/revoke")},
            ],
        }],
    })
}

/// The operations of a resource type: Patient `$everything`, Patient- and Group-level
/// `$export`, and the cohort `$refresh` of a Group.
fn type_operations(base_url: &str, resource_type: &str) -> Option<Value> {
    let export = |name: &str| json!({"name": "export", "definition": format!("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{name}")});
    match resource_type {
        "Patient" => Some(json!([
            {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
            export("patient-export"),
        ])),
        "Group" => Some(json!([
            export("group-export"),
            {"name": "refresh", "definition": format!("{base_url}/OperationDefinition/group-refresh")},
        ])),
        _ => None,
    }
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
    let mut includes = vec![json!("*")];
    let mut revincludes = vec![json!("*")];
    for param in search_params::for_type(resource_type) {
        if param.param_type == ParamType::Reference {
            includes.push(json!(format!("{resource_type}:{}", param.code)));
        }
    }
    for source_type in resource_types::all() {
        for param in search_params::for_type(source_type) {
            let refers =
                param.targets.is_empty() || param.targets.iter().any(|t| t == resource_type);
            if param.param_type == ParamType::Reference && refers {
                revincludes.push(json!(format!("{source_type}:{}", param.code)));
            }
        }
    }
    json!({
        "type": resource_type,
        "interaction": [
            {"code": "read"},
            {"code": "vread"},
            {"code": "update"},
            {"code": "patch"},
            {"code": "delete"},
            {"code": "history-instance"},
            {"code": "history-type"},
            {"code": "create"},
            {"code": "search-type"},
        ],
        "versioning": "versioned-update",
        "readHistory": true,
        "updateCreate": true,
        "conditionalCreate": true,
        "conditionalRead": "not-supported",
        "conditionalUpdate": true,
        "conditionalDelete": "single",
        "searchInclude": includes,
        "searchRevInclude": revincludes,
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
