//! The search parameters of FHIR R4, compiled per resource type.
//!
//! Definitions come from the SearchParameter resources of the R4 (4.0.1) specification.
//! Each parameter is compiled once per resource type it applies to, keeping only the
//! expression branches written for that type, and the registry lives for the whole
//! process.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::fhirpath::Expression;
use crate::resource_types;

/// Codes of the R4 parameters that have no FHIRPath expression and so are not indexed:
/// `_content` and `_text` are full-text searches of the resource and of its narrative, and
/// `_query` names a named query.
pub const UNINDEXED_PARAMS: &[&str] = &["_content", "_query", "_text"];

/// The type of a search parameter, which decides how values are indexed and matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    /// Returns the FHIR code (`token`, `reference`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
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

    fn from_code(code: &str) -> Option<ParamType> {
        let param_type = match code {
            "number" => ParamType::Number,
            "date" => ParamType::Date,
            "string" => ParamType::String,
            "token" => ParamType::Token,
            "reference" => ParamType::Reference,
            "composite" => ParamType::Composite,
            "quantity" => ParamType::Quantity,
            "uri" => ParamType::Uri,
            "special" => ParamType::Special,
            _ => return None,
        };
        Some(param_type)
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A search parameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct SearchParam {
    /// The name used in search URLs, such as `patient` or `_lastUpdated`.
    pub code: String,
    /// The canonical URL of the SearchParameter definition.
    pub url: String,
    pub param_type: ParamType,
    /// The expression as the definition writes it, covering every base type.
    pub expression: String,
    /// The expression compiled for this resource type: only the `|` branches that apply to
    /// it (see [`Expression::for_resource_type`]).
    pub path: Expression,
    /// Resource types a reference parameter may point at; empty for other types.
    pub targets: Vec<String>,
    /// Modifiers the definition lists. The R4 core definitions list none.
    pub modifiers: Vec<String>,
    /// Comparators (`eq`, `gt`, `sa`, ...) the definition allows.
    pub comparators: Vec<String>,
    /// Parts of a composite parameter, in order; empty for other types.
    pub components: Vec<Component>,
    /// Whether several values may be joined with `,` (the definition's `multipleOr`).
    pub multiple_or: Option<bool>,
    /// Whether the parameter may repeat (the definition's `multipleAnd`).
    pub multiple_and: Option<bool>,
}

/// One part of a composite search parameter.
#[derive(Debug, Clone)]
pub struct Component {
    /// URL of the SearchParameter that defines how this part is indexed and matched.
    pub definition: String,
    /// Code of that SearchParameter (such as `code` or `value-quantity`).
    pub code: String,
    /// Type of that SearchParameter.
    pub param_type: ParamType,
    /// The expression as the definition writes it, relative to the composite's element.
    pub expression: String,
    /// The compiled expression.
    pub path: Expression,
}

/// Returns the parameters that apply to `resource_type`, sorted by code: those whose base
/// includes it and the Resource-level ones (`_id`, `_lastUpdated`, `_tag`, `_profile`,
/// `_security`, `_source`). Returns an empty slice for a name that is no R4 resource type.
pub fn for_type(resource_type: &str) -> &'static [SearchParam] {
    REGISTRY
        .by_type
        .get(resource_type)
        .map_or(&[], Vec::as_slice)
}

/// Returns the parameter `code` of `resource_type`, if it has one.
pub fn get(resource_type: &str, code: &str) -> Option<&'static SearchParam> {
    let params = for_type(resource_type);
    params
        .binary_search_by(|param| param.code.as_str().cmp(code))
        .ok()
        .map(|index| &params[index])
}

/// Returns the codes of the parameters that place a resource of `resource_type` in a
/// Patient's compartment (from the R4 CompartmentDefinition `patient`). Empty for types
/// outside that compartment. For Patient itself this is `link`. A Patient is also in its
/// own compartment by id, which the caller handles.
pub fn compartment_params(resource_type: &str) -> &'static [String] {
    REGISTRY
        .compartments
        .get(resource_type)
        .map_or(&[], Vec::as_slice)
}

struct Registry {
    by_type: HashMap<String, Vec<SearchParam>>,
    compartments: HashMap<String, Vec<String>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(build_registry);

/// A SearchParameter as stored in the embedded definitions file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Definition {
    pub url: String,
    pub code: String,
    pub base: Vec<String>,
    #[serde(rename = "type")]
    pub param_type: String,
    pub expression: Option<String>,
    #[serde(default)]
    pub target: Vec<String>,
    #[serde(default)]
    pub modifier: Vec<String>,
    #[serde(default)]
    pub comparator: Vec<String>,
    #[serde(default)]
    pub component: Vec<DefinitionComponent>,
    pub multiple_or: Option<bool>,
    pub multiple_and: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DefinitionComponent {
    pub definition: String,
    pub expression: String,
}

/// Parses the embedded SearchParameter definitions: those of the R4 core specification,
/// then the US Core 6.1.0 parameters that R4 lacks (such as Patient `race` and Encounter
/// `discharge-disposition`), which US Core clients search with.
pub(crate) fn definitions() -> Vec<Definition> {
    let mut definitions: Vec<Definition> =
        serde_json::from_str(include_str!("../definitions/r4-search-parameters.json"))
            .expect("the embedded r4-search-parameters.json matches the Definition shape");
    let us_core: Vec<Definition> = serde_json::from_str(include_str!(
        "../definitions/us-core-search-parameters.json"
    ))
    .expect("the embedded us-core-search-parameters.json matches the Definition shape");
    definitions.extend(us_core);
    definitions
}

/// Builds the registry from the embedded definitions.
///
/// # Panics
///
/// Panics when an embedded definition does not compile. The unit tests compile every
/// definition, so this only fires if the definitions file is edited without running them.
fn build_registry() -> Registry {
    let definitions = definitions();
    let by_url: HashMap<&str, &Definition> =
        definitions.iter().map(|d| (d.url.as_str(), d)).collect();
    let mut by_type: HashMap<String, Vec<SearchParam>> = resource_types::all()
        .iter()
        .map(|name| (name.clone(), Vec::new()))
        .collect();

    for definition in &definitions {
        let Some(text) = &definition.expression else {
            continue;
        };
        let expression = compile(&definition.url, text);
        let param_type = ParamType::from_code(&definition.param_type).unwrap_or_else(|| {
            panic!(
                "search parameter {} has unknown type {}",
                definition.url, definition.param_type
            )
        });
        let components = compile_components(definition, &by_url);

        for resource_type in base_types(&definition.base) {
            let Some(path) = expression.for_resource_type(resource_type) else {
                continue;
            };
            let param = SearchParam {
                code: definition.code.clone(),
                url: definition.url.clone(),
                param_type,
                expression: text.clone(),
                path,
                targets: definition.target.clone(),
                modifiers: definition.modifier.clone(),
                comparators: definition.comparator.clone(),
                components: components.clone(),
                multiple_or: definition.multiple_or,
                multiple_and: definition.multiple_and,
            };
            by_type
                .entry(resource_type.to_owned())
                .or_default()
                .push(param);
        }
    }
    for params in by_type.values_mut() {
        params.sort_by(|a, b| a.code.cmp(&b.code));
    }

    let compartments =
        serde_json::from_str(include_str!("../definitions/r4-patient-compartment.json"))
            .expect("the embedded r4-patient-compartment.json maps type names to codes");
    Registry {
        by_type,
        compartments,
    }
}

fn compile(url: &str, text: &str) -> Expression {
    Expression::parse(text)
        .unwrap_or_else(|error| panic!("search parameter {url} does not compile: {error}"))
}

fn compile_components(
    definition: &Definition,
    by_url: &HashMap<&str, &Definition>,
) -> Vec<Component> {
    definition
        .component
        .iter()
        .map(|component| {
            let part = by_url
                .get(component.definition.as_str())
                .unwrap_or_else(|| {
                    panic!(
                        "component {} of {} is not defined",
                        component.definition, definition.url
                    )
                });
            Component {
                definition: component.definition.clone(),
                code: part.code.clone(),
                param_type: ParamType::from_code(&part.param_type)
                    .filter(|t| *t != ParamType::Composite)
                    .unwrap_or_else(|| panic!("component {} has an unusable type", part.url)),
                expression: component.expression.clone(),
                path: compile(&definition.url, &component.expression),
            }
        })
        .collect()
}

/// Expands `Resource` and `DomainResource` into the concrete types they cover.
fn base_types(bases: &[String]) -> Vec<&'static str> {
    let mut types = Vec::new();
    for base in bases {
        for name in resource_types::all() {
            let is_covered = name == base
                || (matches!(base.as_str(), "Resource" | "DomainResource")
                    && crate::fhirpath::is_type(name, base));
            if is_covered && !types.contains(&name.as_str()) {
                types.push(name.as_str());
            }
        }
    }
    types
}

#[cfg(test)]
mod tests;
