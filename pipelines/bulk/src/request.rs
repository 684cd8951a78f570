//! Kick-off parameters of `$export`, from a query string or a `Parameters` body, checked
//! without touching the repository.

use hearth_fhir_core::reference::{LocalBases, ReferenceKind, classify};
use hearth_fhir_core::resource_types;
use serde_json::Value;

/// Format of the output files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Ndjson,
    Parquet,
}

impl OutputFormat {
    /// The MIME type stored in the job and reported for its files.
    pub fn mime_type(self) -> &'static str {
        match self {
            OutputFormat::Ndjson => NDJSON,
            OutputFormat::Parquet => PARQUET,
        }
    }

    pub fn from_mime_type(text: &str) -> OutputFormat {
        if text == PARQUET {
            OutputFormat::Parquet
        } else {
            OutputFormat::Ndjson
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Ndjson => "ndjson",
            OutputFormat::Parquet => "parquet",
        }
    }
}

pub const NDJSON: &str = "application/fhir+ndjson";
pub const PARQUET: &str = "application/vnd.apache.parquet";

/// How the kick-off request asked for unsupported parameters to be treated
/// (`Prefer: handling=strict` or `handling=lenient`, lenient by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    Strict,
    #[default]
    Lenient,
}

/// The parameters of one kick-off request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportParameters {
    pub output_format: Option<OutputFormat>,
    /// Microseconds since the epoch.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub types: Vec<String>,
    /// Whether the request named `_type` at all: a `_type` whose names were all left out
    /// must not widen the export to every type.
    pub type_requested: bool,
    /// `Type?query` strings, one per filter.
    pub type_filters: Vec<String>,
    pub elements: Vec<String>,
    /// Patient ids from `patient` references (POST only).
    pub patients: Vec<String>,
    pub include_associated_data: Vec<String>,
    pub organize_output_by: Option<String>,
    pub allow_partial_manifests: bool,
    /// What lenient handling left out, for the job's error file.
    pub ignored: Vec<String>,
}

/// A kick-off parameter that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParameterError(pub String);

impl ExportParameters {
    /// Reads the parameters of a kick-off: from the `Parameters` resource in `body` when
    /// there is one (POST), otherwise from the query string (GET, or POST without a body).
    /// An absolute `patient` reference must lie under one of `bases`.
    pub fn read(
        query: &str,
        body: Option<&[u8]>,
        handling: Handling,
        bases: &LocalBases,
    ) -> Result<Self, ParameterError> {
        match body {
            None => Self::from_query(query, handling),
            Some(body) => {
                let value: Value = serde_json::from_slice(body).map_err(|e| {
                    ParameterError(format!("the body is not a JSON Parameters resource: {e}"))
                })?;
                Self::from_parameters(&value, handling, bases)
            }
        }
    }

    /// Reads a query string (`a=b&c=d`, percent-encoded).
    pub fn from_query(query: &str, handling: Handling) -> Result<Self, ParameterError> {
        let mut parameters = ExportParameters::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if name == "patient" {
                return Err(ParameterError(
                    "the patient parameter is only accepted in a POST kick-off with a Parameters body"
                        .to_string(),
                ));
            }
            parameters.add(&name, &value, handling)?;
        }
        Ok(parameters)
    }

    /// Reads a `Parameters` resource, as sent in a POST kick-off.
    pub fn from_parameters(
        body: &Value,
        handling: Handling,
        bases: &LocalBases,
    ) -> Result<Self, ParameterError> {
        if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(ParameterError(
                "the body of a POST kick-off must be a Parameters resource".to_string(),
            ));
        }
        let mut parameters = ExportParameters::default();
        let empty = Vec::new();
        let entries = match body.get("parameter") {
            None => &empty,
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                return Err(ParameterError(
                    "the 'parameter' element of a Parameters resource must be an array".to_string(),
                ));
            }
        };
        for entry in entries {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .ok_or_else(|| {
                    ParameterError(format!("each parameter needs a name, got {entry}"))
                })?;
            if name == "patient" {
                let reference = entry
                    .pointer("/valueReference/reference")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ParameterError(
                            "each patient parameter needs a valueReference with a reference"
                                .to_string(),
                        )
                    })?;
                parameters.patients.push(patient_id(reference, bases)?);
                continue;
            }
            let value = primitive_value(entry)
                .ok_or_else(|| ParameterError(format!("the parameter '{name}' has no value")))?;
            parameters.add(name, &value, handling)?;
        }
        Ok(parameters)
    }

    fn add(&mut self, name: &str, value: &str, handling: Handling) -> Result<(), ParameterError> {
        match name {
            "_outputFormat" => self.output_format = Some(output_format(value)?),
            "_since" => self.since = Some(instant(name, value)?),
            "_until" => self.until = Some(instant(name, value)?),
            "_type" => {
                self.type_requested = true;
                for resource_type in split_list(value) {
                    if resource_types::is_resource_type(&resource_type) {
                        self.types.push(resource_type);
                    } else {
                        self.unsupported(
                            handling,
                            format!(
                                "_type names '{resource_type}', which is not an R4 resource type"
                            ),
                        )?;
                    }
                }
            }
            "_typeFilter" => self.type_filters.extend(split_type_filters(value)),
            "_elements" => self.elements.extend(split_list(value)),
            "includeAssociatedData" => self.include_associated_data.extend(split_list(value)),
            "organizeOutputBy" => self.organize_output_by = Some(value.to_string()),
            "allowPartialManifests" => self.allow_partial_manifests = value == "true",
            _ => self.unsupported(handling, format!("the parameter '{name}' is not supported"))?,
        }
        Ok(())
    }

    /// Rejects under strict handling; under lenient handling notes what was left out.
    pub fn unsupported(
        &mut self,
        handling: Handling,
        message: String,
    ) -> Result<(), ParameterError> {
        match handling {
            Handling::Strict => Err(ParameterError(message)),
            Handling::Lenient => {
                self.ignored.push(message);
                Ok(())
            }
        }
    }

    /// The filters of one resource type, as `(name, encoded value)` search pairs, one list
    /// per `_typeFilter` (the lists are alternatives).
    pub fn filters_of(&self, resource_type: &str) -> Vec<Vec<(String, String)>> {
        filters_of(&self.type_filters, resource_type)
    }
}

/// The parsed `_typeFilter` queries that apply to `resource_type`.
pub fn filters_of(type_filters: &[String], resource_type: &str) -> Vec<Vec<(String, String)>> {
    type_filters
        .iter()
        .filter_map(|filter| filter.split_once('?'))
        .filter(|(filter_type, _)| *filter_type == resource_type)
        .map(|(_, query)| query_pairs(query))
        .collect()
}

/// Whether a parsed search uses parameters that shape results (`_sort`, `_include`,
/// `_count`, `_summary` and the like) rather than select resources, which `_typeFilter`
/// queries and cohort filters must not.
pub fn shapes_results(query: &hearth_cdr::search::SearchQuery) -> bool {
    !query.sort.is_empty()
        || !query.includes.is_empty()
        || !query.revincludes.is_empty()
        || query.count.is_some()
        || query.total.is_some()
        || query.summary.is_some()
        || query.elements.is_some()
        || query.cursor.is_some()
}

/// Splits a query into `(decoded name, encoded value)` pairs, the form search takes.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_encoding::percent_decode_str(name)
                .decode_utf8_lossy()
                .into_owned();
            (name, value.to_string())
        })
        .collect()
}

fn primitive_value(entry: &Value) -> Option<String> {
    let object = entry.as_object()?;
    object.iter().find_map(|(key, value)| {
        if !key.starts_with("value") {
            return None;
        }
        match value {
            Value::String(text) => Some(text.clone()),
            Value::Bool(flag) => Some(flag.to_string()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    })
}

fn output_format(value: &str) -> Result<OutputFormat, ParameterError> {
    match value {
        "application/fhir+ndjson" | "application/ndjson" | "ndjson" => Ok(OutputFormat::Ndjson),
        "parquet" | "application/vnd.apache.parquet" | "application/parquet" => {
            Ok(OutputFormat::Parquet)
        }
        other => Err(ParameterError(format!(
            "_outputFormat '{other}' is not supported; use application/fhir+ndjson or parquet"
        ))),
    }
}

fn instant(name: &str, value: &str) -> Result<i64, ParameterError> {
    // A `+` of a time zone offset arrives as a space when the client did not encode it.
    let text = value.trim().replace(' ', "+");
    hearth_cdr::parse_instant(&text).ok_or_else(|| {
        ParameterError(format!(
            "{name} '{value}' is not a FHIR instant such as 2026-01-31T08:15:00Z"
        ))
    })
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits a `_typeFilter` value into its queries. Queries are comma-separated, but a query
/// may itself hold commas (values ORed within one parameter), so a comma separates two
/// queries only where a resource type and `?` follow it.
pub fn split_type_filters(value: &str) -> Vec<String> {
    let mut filters = Vec::new();
    let mut current = String::new();
    for part in value.split(',') {
        let starts_query = part
            .split_once('?')
            .is_some_and(|(name, _)| resource_types::is_resource_type(name.trim()));
        if starts_query && !current.is_empty() {
            filters.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(part.trim());
    }
    if !current.is_empty() {
        filters.push(current);
    }
    filters
}

/// The id of a `Patient/<id>` reference, relative or after one of `bases`.
pub fn patient_id(reference: &str, bases: &LocalBases) -> Result<String, ParameterError> {
    let relative = bases.strip(reference).unwrap_or(reference);
    match classify(relative) {
        ReferenceKind::Relative {
            resource_type: "Patient",
            id,
        } => Ok(id.to_string()),
        _ if reference.contains("://") => Err(ParameterError(format!(
            "the patient reference '{reference}' names no Patient of this server; use Patient/123 or an absolute URL under this server's FHIR base"
        ))),
        _ => Err(ParameterError(format!(
            "the patient reference '{reference}' does not name a Patient such as Patient/123"
        ))),
    }
}

/// The handling preference and whether `respond-async` is present, from `Prefer` headers.
pub fn parse_prefer<'a>(values: impl Iterator<Item = &'a str>) -> (bool, Handling) {
    let mut respond_async = false;
    let mut handling = Handling::Lenient;
    for value in values {
        for token in value.split([',', ';']).map(str::trim) {
            match token.to_ascii_lowercase().as_str() {
                "respond-async" => respond_async = true,
                "handling=strict" => handling = Handling::Strict,
                "handling=lenient" => handling = Handling::Lenient,
                _ => {}
            }
        }
    }
    (respond_async, handling)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn query_parameters_parse() {
        let query = "_type=Patient,Observation&_since=2026-01-01T00:00:00Z&_outputFormat=ndjson\
                     &_typeFilter=Patient%3Fgender%3Dfemale&_typeFilter=Patient%3Fgender%3Dother";
        let parameters = ExportParameters::from_query(query, Handling::Strict).unwrap();
        assert_eq!(parameters.types, ["Patient", "Observation"]);
        assert_eq!(parameters.output_format, Some(OutputFormat::Ndjson));
        assert!(parameters.since.is_some());
        assert_eq!(parameters.filters_of("Patient").len(), 2);
        assert!(parameters.filters_of("Observation").is_empty());
    }

    #[test]
    fn type_filters_keep_commas_inside_values() {
        let filters = split_type_filters("Observation?code=a,b&status=final,Patient?gender=female");
        assert_eq!(
            filters,
            ["Observation?code=a,b&status=final", "Patient?gender=female"]
        );
    }

    #[test]
    fn unknown_parameter_depends_on_handling() {
        assert!(ExportParameters::from_query("_foo=1", Handling::Strict).is_err());
        let lenient = ExportParameters::from_query("_foo=1", Handling::Lenient).unwrap();
        assert_eq!(lenient.ignored.len(), 1);
    }

    #[test]
    fn patient_parameter_only_in_post() {
        assert!(ExportParameters::from_query("patient=Patient/1", Handling::Lenient).is_err());
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
            {"name": "_type", "valueString": "Observation"},
            {"name": "_outputFormat", "valueString": "parquet"}
        ]});
        let parameters =
            ExportParameters::from_parameters(&body, Handling::Strict, &LocalBases::none())
                .unwrap();
        assert_eq!(parameters.patients, ["p1"]);
        assert_eq!(parameters.output_format, Some(OutputFormat::Parquet));
    }

    #[test]
    fn patient_reference_of_other_server_is_rejected() {
        let bases = LocalBases::new("http://hearth.example");
        let local = patient_id("http://hearth.example/fhir/Patient/p1", &bases);
        assert_eq!(local.unwrap(), "p1");
        let site = patient_id("http://hearth.example/sites/north/fhir/Patient/p2", &bases);
        assert_eq!(site.unwrap(), "p2");
        assert!(patient_id("http://other.example/fhir/Patient/p1", &bases).is_err());
        assert!(patient_id("Patient/p1/extra", &bases).is_err());
    }

    #[test]
    fn malformed_parameters_body_is_rejected() {
        let bodies = [
            json!({"resourceType": "Parameters", "parameter": {"name": "_type"}}),
            json!({"resourceType": "Parameters", "parameter": [{"valueString": "Patient"}]}),
            json!({"resourceType": "Parameters", "parameter": ["_type"]}),
            json!({"resourceType": "Parameters", "parameter": [{"name": "_type"}]}),
        ];
        for body in bodies {
            let result =
                ExportParameters::from_parameters(&body, Handling::Lenient, &LocalBases::none());
            assert!(result.is_err(), "{body} was accepted");
        }
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(ExportParameters::from_query("_outputFormat=text/csv", Handling::Lenient).is_err());
        assert!(ExportParameters::from_query("_since=yesterday", Handling::Lenient).is_err());
        assert!(patient_id("Observation/1", &LocalBases::none()).is_err());
    }

    #[test]
    fn prefer_header_tokens() {
        let (respond_async, handling) =
            parse_prefer(["respond-async, handling=strict"].into_iter());
        assert!(respond_async);
        assert_eq!(handling, Handling::Strict);
        assert_eq!(parse_prefer(std::iter::empty()), (false, Handling::Lenient));
    }
}
