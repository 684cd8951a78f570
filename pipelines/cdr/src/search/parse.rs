//! Parsing the parameters of a search request into a [`SearchQuery`].
//!
//! Names arrive decoded and values as received, still percent-encoded, so that paging links
//! can repeat them exactly. A malformed value is an error under any handling. An unknown
//! parameter or an unsupported modifier is an error under strict handling and otherwise
//! ignored and listed in [`SearchQuery::ignored`].

use hearth_fhir_core::resource_types;
use hearth_fhir_core::search_params::{self, ParamType, SearchParam};
use percent_encoding::percent_decode_str;

use super::SearchError;
use super::query::{
    Cursor, Filter, Include, Matcher, SearchQuery, SortField, SortKey, StringMode, Summary, Table,
    Total, UriMode,
};
use super::values::{self, ValueContext, split_unescaped, unescape};
use crate::params;

/// Most filter parameters in one search. SQLite limits the depth of one expression, so a
/// search must stay well below it.
pub const MAX_PARAMETERS: usize = 50;
/// Most comma-separated values of one parameter.
pub const MAX_VALUES: usize = 100;
/// Most links of a chain or of nested `_has`, counted together.
pub const MAX_CHAIN_DEPTH: usize = 4;

/// The paging cursor parameter of searches in storage order: the `rid` of the last match
/// of the previous page.
pub const PAGE_AFTER: &str = "_page_after";
/// The paging cursor parameter of sorted searches: the number of matches before the page.
pub const PAGE_OFFSET: &str = "_page_offset";

/// How to parse a request.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    /// `Prefer: handling=strict`: reject unknown parameters and unsupported modifiers.
    pub strict: bool,
    pub context: ValueContext<'a>,
}

/// Parses the parameters of a search of `resource_type`, given as (decoded name, value as
/// received) pairs in request order.
pub fn parse(
    resource_type: &str,
    pairs: &[(String, String)],
    options: &ParseOptions<'_>,
) -> Result<SearchQuery, SearchError> {
    let mut query = SearchQuery {
        resource_type: resource_type.to_owned(),
        ..SearchQuery::default()
    };
    for (name, raw) in pairs {
        let value = decode(raw)?;
        match parse_pair(&mut query, name, &value, options) {
            Ok(Echo::Yes) => query.echoed.push((name.clone(), raw.clone())),
            Ok(Echo::No) => {}
            Err(SearchError::Unsupported(_)) if !options.strict => {
                query.ignored.push(name.clone());
            }
            Err(error) => return Err(error),
        }
    }
    let filter_count = query.filters.len();
    if filter_count > MAX_PARAMETERS {
        return Err(SearchError::invalid(format!(
            "the search has {filter_count} filter parameters; at most {MAX_PARAMETERS} are allowed"
        )));
    }
    Ok(query)
}

/// Parses filter parameters only, as conditional writes and scope restrictions give them,
/// with strict handling.
pub fn parse_filters(
    resource_type: &str,
    pairs: &[(String, String)],
) -> Result<Vec<Filter>, SearchError> {
    if pairs.len() > MAX_PARAMETERS {
        return Err(SearchError::invalid(format!(
            "the criteria have {} parameters; at most {MAX_PARAMETERS} are allowed",
            pairs.len()
        )));
    }
    let context = ValueContext {
        base_url: "",
        now: now_micros(),
    };
    let mut filters = Vec::with_capacity(pairs.len());
    for (name, raw) in pairs {
        let value = decode(raw)?;
        if name.starts_with('_') && !is_filter_name(name) {
            return Err(SearchError::unsupported(format!(
                "'{name}' is not a search criterion"
            )));
        }
        filters.extend(filter(resource_type, name, &value, context, 0)?);
    }
    Ok(filters)
}

/// Returns the current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

enum Echo {
    Yes,
    No,
}

fn parse_pair(
    query: &mut SearchQuery,
    name: &str,
    value: &str,
    options: &ParseOptions<'_>,
) -> Result<Echo, SearchError> {
    match name {
        "_count" => {
            let count = value.trim().parse().map_err(|_| {
                SearchError::invalid(format!("_count must be a whole number, not '{value}'"))
            })?;
            query.count = Some(count);
        }
        "_sort" => query.sort = sort_keys(&query.resource_type, value)?,
        "_summary" => query.summary = Some(summary(value)?),
        "_total" => query.total = Some(total(value)?),
        "_elements" => query.elements = Some(elements(value)),
        "_format" | "_pretty" => {}
        PAGE_AFTER => {
            let after = value.parse().map_err(|_| invalid_cursor(name))?;
            query.cursor = Some(Cursor::After(after));
            return Ok(Echo::No);
        }
        PAGE_OFFSET => {
            let offset = value.parse().map_err(|_| invalid_cursor(name))?;
            query.cursor = Some(Cursor::Offset(offset));
            return Ok(Echo::No);
        }
        _ => {
            if let Some(modifier) = name.strip_prefix("_include") {
                let include = include(value, modifier, IncludeKind::Include)?;
                query.includes.push(include);
            } else if let Some(modifier) = name.strip_prefix("_revinclude") {
                let include = include(value, modifier, IncludeKind::Revinclude)?;
                query.revincludes.push(include);
            } else {
                let resource_type = query.resource_type.clone();
                match filter(&resource_type, name, value, options.context, 0)? {
                    Some(parsed) => query.filters.push(parsed),
                    None => return Ok(Echo::No),
                }
            }
        }
    }
    Ok(Echo::Yes)
}

fn invalid_cursor(name: &str) -> SearchError {
    SearchError::invalid(format!(
        "{name} is not a valid page cursor; follow the links of a search Bundle"
    ))
}

/// Decodes a query value: `+` is a space and `%XX` a byte of UTF-8.
fn decode(raw: &str) -> Result<String, SearchError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|value| value.into_owned())
        .map_err(|_| SearchError::invalid(format!("'{raw}' is not percent-encoded UTF-8")))
}

/// Returns whether `name` names a filter rather than a result parameter.
fn is_filter_name(name: &str) -> bool {
    let code = name.split([':', '.']).next().unwrap_or(name);
    !code.starts_with('_')
        || matches!(
            code,
            "_has" | "_id" | "_lastUpdated" | "_tag" | "_profile" | "_security" | "_source"
        )
}

/// Parses one filter parameter of `resource_type`. Returns `None` for an empty value,
/// which filters nothing.
fn filter(
    resource_type: &str,
    name: &str,
    value: &str,
    context: ValueContext<'_>,
    depth: usize,
) -> Result<Option<Filter>, SearchError> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(SearchError::invalid(format!(
            "'{name}' chains more than {MAX_CHAIN_DEPTH} links"
        )));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        return reverse_chain(resource_type, rest, value, context, depth);
    }
    let (head, chain) = match name.split_once('.') {
        Some((head, chain)) => (head, Some(chain)),
        None => (name, None),
    };
    let (code, modifier) = match head.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (head, None),
    };
    let param = search_params::get(resource_type, code).ok_or_else(|| {
        SearchError::unsupported(format!(
            "unknown search parameter '{code}' for {resource_type}"
        ))
    })?;
    let param_id = param_id(resource_type, code)?;
    if let Some(chain) = chain {
        return forward_chain(
            resource_type,
            param,
            param_id,
            modifier,
            chain,
            value,
            context,
            depth,
        );
    }
    if value.is_empty() {
        return Ok(None);
    }
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(SearchError::invalid(format!(
                    "{name} takes true or false, not '{value}'"
                )));
            }
        };
        let table = table_of(param, name)?;
        return Ok(Some(Filter::Missing {
            table,
            param: param_id,
            missing,
        }));
    }

    let parts = split_unescaped(value, ',');
    if parts.len() > MAX_VALUES {
        return Err(SearchError::invalid(format!(
            "{name} has {} values; at most {MAX_VALUES} are allowed",
            parts.len()
        )));
    }
    let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Ok(None);
    }
    if code == "_id" && modifier.is_none() {
        return Ok(Some(Filter::Id(
            parts.iter().map(|p| unescape(p)).collect(),
        )));
    }
    let (matcher, negated) = matcher(param, name, modifier, &parts, context)?;
    Ok(Some(Filter::Param {
        param: param_id,
        matcher,
        negated,
    }))
}

fn param_id(resource_type: &str, code: &str) -> Result<i64, SearchError> {
    params::id(resource_type, code).ok_or_else(|| {
        SearchError::unsupported(format!(
            "unknown search parameter '{code}' for {resource_type}"
        ))
    })
}

/// Returns the table that stores the values of `param`.
fn table_of(param: &SearchParam, name: &str) -> Result<Table, SearchError> {
    let table = match param.param_type {
        ParamType::Token => Table::Token,
        ParamType::String => Table::String,
        ParamType::Reference => Table::Reference,
        ParamType::Date => Table::Date,
        ParamType::Number => Table::Number,
        ParamType::Quantity => Table::Quantity,
        ParamType::Uri => Table::Uri,
        ParamType::Composite => Table::Composite,
        ParamType::Special => {
            return Err(SearchError::unsupported(format!(
                "'{name}' is a special parameter, which this server does not search"
            )));
        }
    };
    Ok(table)
}

/// Builds the matcher of a parameter's values under `modifier`; the flag is `:not`.
fn matcher(
    param: &SearchParam,
    name: &str,
    modifier: Option<&str>,
    parts: &[&str],
    context: ValueContext<'_>,
) -> Result<(Matcher, bool), SearchError> {
    let unsupported = || {
        SearchError::unsupported(format!(
            "the modifier in '{name}' is not supported for {} parameters",
            param.param_type
        ))
    };
    let matcher = match (param.param_type, modifier) {
        (ParamType::Token, None | Some("not")) => {
            let tokens = parts.iter().map(|part| values::token(part)).collect();
            return Ok((Matcher::Token(tokens), modifier == Some("not")));
        }
        (ParamType::Token, Some("text")) => {
            Matcher::TokenText(parts.iter().map(|part| values::string(part)).collect())
        }
        (ParamType::Token, Some("of-type")) => Matcher::OfType(each(parts, values::of_type)?),
        (ParamType::String, None) => Matcher::String(
            StringMode::StartsWith,
            parts.iter().map(|p| values::string(p)).collect(),
        ),
        (ParamType::String, Some("contains")) => Matcher::String(
            StringMode::Contains,
            parts.iter().map(|p| values::string(p)).collect(),
        ),
        (ParamType::String, Some("exact")) => Matcher::String(
            StringMode::Exact,
            parts.iter().map(|p| unescape(p)).collect(),
        ),
        (ParamType::Reference, Some("identifier")) => {
            Matcher::ReferenceIdentifier(parts.iter().map(|part| values::token(part)).collect())
        }
        (ParamType::Reference, modifier) => {
            let type_modifier = match modifier {
                None => None,
                Some(target) if accepts_target(param, target) => Some(target),
                Some(target) if resource_types::is_resource_type(target) => {
                    return Err(SearchError::invalid(format!(
                        "{} cannot refer to a {target}",
                        param.code
                    )));
                }
                Some(_) => return Err(unsupported()),
            };
            Matcher::Reference(each(parts, |part| {
                values::reference(part, type_modifier, context)
            })?)
        }
        (ParamType::Date, None) => Matcher::Date(each(parts, |part| values::date(part, context))?),
        (ParamType::Number, None) => Matcher::Number(each(parts, values::number)?),
        (ParamType::Quantity, None) => Matcher::Quantity(each(parts, values::quantity)?),
        (ParamType::Uri, None) => {
            Matcher::Uri(UriMode::Exact, parts.iter().map(|p| unescape(p)).collect())
        }
        (ParamType::Uri, Some("below")) => {
            Matcher::Uri(UriMode::Below, parts.iter().map(|p| unescape(p)).collect())
        }
        (ParamType::Uri, Some("above")) => {
            Matcher::Uri(UriMode::Above, parts.iter().map(|p| unescape(p)).collect())
        }
        (ParamType::Composite, None) => {
            Matcher::Composite(each(parts, |part| values::composite(param, part, context))?)
        }
        (ParamType::Special, _) => {
            return Err(SearchError::unsupported(format!(
                "'{name}' is a special parameter, which this server does not search"
            )));
        }
        _ => return Err(unsupported()),
    };
    Ok((matcher, false))
}

/// Parses each of `parts` with `parse`.
fn each<T>(
    parts: &[&str],
    parse: impl Fn(&str) -> Result<T, SearchError>,
) -> Result<Vec<T>, SearchError> {
    parts.iter().map(|part| parse(part)).collect()
}

/// Returns whether reference parameter `param` may point at `target_type`.
fn accepts_target(param: &SearchParam, target_type: &str) -> bool {
    resource_types::is_resource_type(target_type)
        && (param.targets.is_empty() || param.targets.iter().any(|t| t == target_type))
}

/// Parses `param[:Type].rest`: the resources `param` points at meet the filter `rest`.
#[allow(clippy::too_many_arguments)]
fn forward_chain(
    resource_type: &str,
    param: &SearchParam,
    param_id: i64,
    modifier: Option<&str>,
    rest: &str,
    value: &str,
    context: ValueContext<'_>,
    depth: usize,
) -> Result<Option<Filter>, SearchError> {
    if param.param_type != ParamType::Reference {
        return Err(SearchError::invalid(format!(
            "'{}' of {resource_type} is not a reference parameter, so it cannot be chained",
            param.code
        )));
    }
    let chained_code = rest.split([':', '.']).next().unwrap_or(rest);
    let candidates: Vec<&str> = match modifier {
        Some(target) if accepts_target(param, target) => vec![target],
        Some(target) => {
            return Err(SearchError::invalid(format!(
                "{} of {resource_type} cannot refer to '{target}'",
                param.code
            )));
        }
        None if param.targets.is_empty() => {
            return Err(SearchError::invalid(format!(
                "{} of {resource_type} can refer to any type; name one, as in {}:Patient.{rest}",
                param.code, param.code
            )));
        }
        None => param.targets.iter().map(String::as_str).collect(),
    };
    let mut targets = Vec::new();
    for target in candidates {
        let known = chained_code == "_has" || search_params::get(target, chained_code).is_some();
        if !known {
            continue;
        }
        if let Some(inner) = filter(target, rest, value, context, depth + 1)? {
            targets.push((target.to_owned(), Box::new(inner)));
        }
    }
    if targets.is_empty() && !value.is_empty() {
        return Err(SearchError::unsupported(format!(
            "no type that {} of {resource_type} refers to has a search parameter '{chained_code}'",
            param.code
        )));
    }
    if targets.is_empty() {
        return Ok(None);
    }
    Ok(Some(Filter::Chain {
        param: param_id,
        targets,
    }))
}

/// Parses `Type:param:rest` after `_has:`: some `Type` meeting `rest` refers to the
/// resource through its reference parameter `param`.
fn reverse_chain(
    resource_type: &str,
    spec: &str,
    value: &str,
    context: ValueContext<'_>,
    depth: usize,
) -> Result<Option<Filter>, SearchError> {
    let mut parts = spec.splitn(3, ':');
    let (Some(source_type), Some(code), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SearchError::invalid(format!(
            "'_has:{spec}' is not a reverse chain; expected _has:Type:reference:parameter"
        )));
    };
    if !resource_types::is_resource_type(source_type) {
        return Err(SearchError::invalid(format!(
            "'_has:{spec}' names '{source_type}', which is not a resource type"
        )));
    }
    let param = search_params::get(source_type, code)
        .filter(|p| p.param_type == ParamType::Reference)
        .ok_or_else(|| {
            SearchError::invalid(format!(
                "'{code}' is not a reference parameter of {source_type}"
            ))
        })?;
    if !accepts_target(param, resource_type) {
        return Err(SearchError::invalid(format!(
            "{code} of {source_type} cannot refer to a {resource_type}"
        )));
    }
    let param_id = param_id(source_type, code)?;
    let Some(inner) = filter(source_type, rest, value, context, depth + 1)? else {
        return Ok(None);
    };
    Ok(Some(Filter::Has {
        source_type: source_type.to_owned(),
        param: param_id,
        filter: Box::new(inner),
    }))
}

fn sort_keys(resource_type: &str, value: &str) -> Result<Vec<SortKey>, SearchError> {
    let mut keys = Vec::new();
    for key in value.split(',').map(str::trim) {
        let (code, descending) = match key.strip_prefix('-') {
            Some(code) => (code, true),
            None => (key, false),
        };
        if code.is_empty() {
            return Err(SearchError::invalid(format!(
                "_sort={value} has an empty sort key"
            )));
        }
        let field = match code {
            "_id" => SortField::Id,
            "_lastUpdated" => SortField::LastUpdated,
            code => {
                let param = search_params::get(resource_type, code).ok_or_else(|| {
                    SearchError::unsupported(format!(
                        "cannot sort by '{code}': {resource_type} has no such search parameter"
                    ))
                })?;
                let table = match param.param_type {
                    ParamType::Composite | ParamType::Special => {
                        return Err(SearchError::unsupported(format!(
                            "cannot sort by '{code}', a {} parameter",
                            param.param_type
                        )));
                    }
                    _ => table_of(param, code)?,
                };
                SortField::Param {
                    table,
                    param: param_id(resource_type, code)?,
                }
            }
        };
        keys.push(SortKey { field, descending });
    }
    Ok(keys)
}

fn summary(value: &str) -> Result<Summary, SearchError> {
    let summary = match value {
        "true" => Summary::True,
        "text" => Summary::Text,
        "data" => Summary::Data,
        "count" => Summary::Count,
        "false" => Summary::False,
        _ => {
            return Err(SearchError::invalid(format!(
                "_summary takes true, text, data, count or false, not '{value}'"
            )));
        }
    };
    Ok(summary)
}

fn total(value: &str) -> Result<Total, SearchError> {
    let total = match value {
        "none" => Total::None,
        "estimate" => Total::Estimate,
        "accurate" => Total::Accurate,
        _ => {
            return Err(SearchError::invalid(format!(
                "_total takes none, estimate or accurate, not '{value}'"
            )));
        }
    };
    Ok(total)
}

/// Parses `_elements`, accepting `Type.element` as well as `element`.
fn elements(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| name.rsplit('.').next().unwrap_or(name).to_owned())
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IncludeKind {
    Include,
    Revinclude,
}

/// Parses an `_include` or `_revinclude` value (`Source:param[:Target]`, `Source:*` or
/// `*`), with the modifier after the parameter name (`:iterate`, or R3's `:recurse`).
fn include(value: &str, modifier: &str, kind: IncludeKind) -> Result<Include, SearchError> {
    let name = match kind {
        IncludeKind::Include => "_include",
        IncludeKind::Revinclude => "_revinclude",
    };
    let iterate = match modifier {
        "" => false,
        ":iterate" | ":recurse" => true,
        _ => {
            return Err(SearchError::unsupported(format!(
                "{name}{modifier} is not supported; use {name} or {name}:iterate"
            )));
        }
    };
    if value == "*" {
        return Ok(Include {
            source_type: None,
            param: None,
            target_type: None,
            iterate,
        });
    }
    let parts: Vec<&str> = value.split(':').collect();
    let (source_type, code, target_type) = match parts.as_slice() {
        [source, code] => (*source, *code, None),
        [source, code, target] => (*source, *code, Some(*target)),
        _ => {
            return Err(SearchError::invalid(format!(
                "{name}={value} is not Type:parameter, Type:parameter:Target or *"
            )));
        }
    };
    if !resource_types::is_resource_type(source_type) {
        return Err(SearchError::invalid(format!(
            "{name}={value} names '{source_type}', which is not a resource type"
        )));
    }
    let param = if code == "*" {
        None
    } else {
        let param = search_params::get(source_type, code)
            .filter(|p| p.param_type == ParamType::Reference)
            .ok_or_else(|| {
                SearchError::unsupported(format!(
                    "{name}={value}: {source_type} has no reference parameter '{code}'"
                ))
            })?;
        if let Some(target) = target_type
            && !accepts_target(param, target)
        {
            return Err(SearchError::invalid(format!(
                "{name}={value}: {code} of {source_type} cannot refer to '{target}'"
            )));
        }
        Some(code.to_owned())
    };
    if let Some(target) = target_type
        && !resource_types::is_resource_type(target)
    {
        return Err(SearchError::invalid(format!(
            "{name}={value} names '{target}', which is not a resource type"
        )));
    }
    Ok(Include {
        source_type: Some(source_type.to_owned()),
        param,
        target_type: target_type.map(str::to_owned),
        iterate,
    })
}
