//! Turning request bodies (Bundles, bare resources, NDJSON) into checked write entries.
//!
//! Everything here runs before anything is appended to the log, so a body that fails a
//! check leaves no trace. The checks are the ones that need no repository: JSON syntax,
//! known resource types, Bundle.type, entry requests that agree with their resources, and
//! `urn:uuid:` references that point at no `fullUrl` of the bundle. The repository resolves
//! conditional references and decides conditional writes when it applies the entries.

use std::collections::HashSet;
use std::fmt;

use serde_json::Value;

use crate::id::is_valid_id;
use crate::reference::{ReferenceKind, classify, for_each_reference};
use crate::resource_types::is_resource_type;

/// The write an entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
    Patch,
    /// A GET or HEAD entry of a batch or transaction; its URL is in `request_url`.
    Read,
}

/// How the ids and methods of a body are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// Import: resources keep the ids they carry (or the UUID of their `urn:uuid:`
    /// fullUrl), so references across separately loaded files resolve. Every kind of
    /// Bundle is applied all or nothing.
    Load,
    /// The FHIR REST rules for a Bundle POSTed to the base: only batch and transaction
    /// Bundles; POST entries create resources with ids the server assigns; PATCH entries
    /// carry a JSON Patch in a Binary; GET and HEAD entries read.
    Rest,
}

/// One checked write.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Position in the bundle (0-based) or line number in NDJSON (1-based).
    pub position: Position,
    pub action: Action,
    pub resource_type: String,
    pub id: Option<String>,
    pub full_url: Option<String>,
    pub resource: Option<Value>,
    pub if_match: Option<String>,
    pub if_none_exist: Option<String>,
    /// Search criteria of a conditional update or delete.
    pub criteria: Option<String>,
    /// The URL of a read entry (`request.url` of a GET or HEAD), relative to the base.
    pub request_url: Option<String>,
}

/// Where in a body an entry or an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The body as a whole, or a bare resource.
    Document,
    /// `Bundle.entry[n]`, 0-based.
    Entry(usize),
    /// Line `n` of an NDJSON body, 1-based.
    Line(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Document => write!(f, "document"),
            Position::Entry(n) => write!(f, "entry {n}"),
            Position::Line(n) => write!(f, "line {n}"),
        }
    }
}

impl Position {
    /// The FHIRPath of the position, for `OperationOutcome.issue.expression`.
    pub fn expression(&self) -> Option<String> {
        match self {
            Position::Entry(n) => Some(format!("Bundle.entry[{n}]")),
            _ => None,
        }
    }
}

/// The kind of problem, mapped to an OperationOutcome issue code by the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not JSON, or not valid UTF-8.
    Syntax,
    /// Valid JSON that breaks a FHIR rule.
    Invalid,
    /// A well-formed resource that breaks a rule of its definition: a mandatory element
    /// is absent or a code is outside its required value set.
    Rule,
    /// A resource type R4 does not define.
    UnknownType,
    /// A `urn:uuid:` reference that no entry defines.
    UnresolvedReference,
    /// Something FHIR allows that this operation does not do.
    NotSupported,
}

/// Why a body was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub position: Position,
    pub full_url: Option<String>,
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.position, &self.full_url) {
            (Position::Document, _) => write!(f, "{}", self.message),
            (position, Some(url)) => write!(f, "{position} ({url}): {}", self.message),
            (position, None) => write!(f, "{position}: {}", self.message),
        }
    }
}

impl std::error::Error for EntryError {}

fn error(position: Position, kind: ErrorKind, message: impl Into<String>) -> EntryError {
    EntryError {
        position,
        full_url: None,
        kind,
        message: message.into(),
    }
}

/// Parses a JSON body holding a Bundle (transaction, batch or collection) or one resource.
pub fn parse_document(body: &[u8], semantics: Semantics) -> Result<Vec<Entry>, EntryError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            Position::Document,
            ErrorKind::Syntax,
            format!("invalid JSON: {e}"),
        )
    })?;
    parse_value(value, semantics)
}

/// Like [`parse_document`], for a body already parsed as JSON.
pub fn parse_value(value: Value, semantics: Semantics) -> Result<Vec<Entry>, EntryError> {
    let resource_type = check_stored_resource(&value, Position::Document, semantics)?;
    let entries = if resource_type == "Bundle" {
        parse_bundle(value, semantics)?
    } else {
        vec![bare_entry(value, resource_type, Position::Document)?]
    };
    check_placeholders(&entries)?;
    Ok(entries)
}

/// Parses a batch Bundle for the REST API entry by entry. An entry that does not parse
/// comes back as its error while the others stand, because batch entries succeed or fail
/// alone. Only an error of the Bundle itself fails the whole.
pub fn parse_batch(mut bundle: Value) -> Result<Vec<Result<Entry, EntryError>>, EntryError> {
    if check_resource(&bundle, Position::Document)? != "Bundle" {
        return Err(error(
            Position::Document,
            ErrorKind::Invalid,
            "a batch must be a Bundle",
        ));
    }
    let entries = match bundle.get_mut("entry").map(Value::take) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(error(
                Position::Document,
                ErrorKind::Invalid,
                "Bundle.entry must be an array",
            ));
        }
    };
    let mut parsed = Vec::with_capacity(entries.len());
    let mut full_urls = HashSet::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let position = Position::Entry(index);
        let entry = parse_bundle_entry(entry, position, true, Semantics::Rest)
            .map_err(|mut e| {
                e.position = position;
                e
            })
            .and_then(|entry| match &entry.full_url {
                Some(url) if !full_urls.insert(url.clone()) => Err(EntryError {
                    position,
                    full_url: Some(url.clone()),
                    kind: ErrorKind::Invalid,
                    message: "fullUrl appears in more than one entry".to_string(),
                }),
                _ => Ok(entry),
            });
        parsed.push(entry);
    }
    Ok(parsed)
}

/// Parses an NDJSON body: one resource per line, blank lines ignored.
pub fn parse_ndjson(body: &[u8], semantics: Semantics) -> Result<Vec<Entry>, EntryError> {
    let mut entries = Vec::new();
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let position = Position::Line(index + 1);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(line).map_err(|e| {
            let message = format!(
                "invalid JSON at column {}: {}",
                e.column(),
                json_error_text(&e)
            );
            error(position, ErrorKind::Syntax, message)
        })?;
        let resource_type = check_stored_resource(&value, position, semantics)?;
        if resource_type == "Bundle" {
            return Err(error(
                position,
                ErrorKind::NotSupported,
                "an NDJSON line must hold one resource, not a Bundle",
            ));
        }
        entries.push(bare_entry(value, resource_type, position)?);
    }
    Ok(entries)
}

/// The message of a JSON error without serde_json's " at line L column C" suffix, for
/// callers that state the position themselves.
pub fn json_error_text(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_string(),
        None => text,
    }
}

/// Checks a resource to store: [`check_resource`], then its structure against the R4
/// element definitions. A Bundle stored as a whole is checked entry by entry instead, as
/// its entries are parsed. Returns the type.
fn check_stored_resource(
    value: &Value,
    position: Position,
    semantics: Semantics,
) -> Result<String, EntryError> {
    let resource_type = check_resource(value, position)?;
    if resource_type != "Bundle" {
        let checked = match semantics {
            Semantics::Rest => crate::validate::validate(value),
            Semantics::Load => crate::validate::validate_structure(value),
        };
        checked.map_err(|e| {
            let kind = if e.problem.is_rule() {
                ErrorKind::Rule
            } else {
                ErrorKind::Invalid
            };
            error(position, kind, e.to_string())
        })?;
    }
    Ok(resource_type)
}

/// Checks that `value` is a JSON object with a known `resourceType`, and that every
/// contained resource has one too. Returns the type.
fn check_resource(value: &Value, position: Position) -> Result<String, EntryError> {
    let Some(object) = value.as_object() else {
        return Err(error(
            position,
            ErrorKind::Invalid,
            "a resource must be a JSON object",
        ));
    };
    let resource_type = match object.get("resourceType") {
        Some(Value::String(name)) => name.clone(),
        Some(_) => {
            return Err(error(
                position,
                ErrorKind::Invalid,
                "resourceType must be a string",
            ));
        }
        None => {
            return Err(error(
                position,
                ErrorKind::Invalid,
                "missing resourceType: the JSON is not a FHIR resource",
            ));
        }
    };
    if !is_resource_type(&resource_type) {
        return Err(error(
            position,
            ErrorKind::UnknownType,
            format!("unknown resourceType '{resource_type}': not an R4 resource type"),
        ));
    }
    if let Some(id) = object.get("id") {
        match id.as_str() {
            Some(id) if is_valid_id(id) => {}
            _ => {
                return Err(error(
                    position,
                    ErrorKind::Invalid,
                    format!(
                        "invalid id {}: an id has 1 to 64 characters from A-Z a-z 0-9 - .",
                        crate::id::shown(&id.to_string())
                    ),
                ));
            }
        }
    }
    if let Some(contained) = object.get("contained") {
        let Some(items) = contained.as_array() else {
            return Err(error(
                position,
                ErrorKind::Invalid,
                "contained must be an array",
            ));
        };
        for item in items {
            check_resource(item, position)?;
        }
    }
    Ok(resource_type)
}

fn bare_entry(
    value: Value,
    resource_type: String,
    position: Position,
) -> Result<Entry, EntryError> {
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    Ok(Entry {
        position,
        action: Action::Update,
        resource_type,
        id,
        full_url: None,
        resource: Some(value),
        if_match: None,
        if_none_exist: None,
        criteria: None,
        request_url: None,
    })
}

fn parse_bundle(mut bundle: Value, semantics: Semantics) -> Result<Vec<Entry>, EntryError> {
    let bundle_type = bundle.get("type").and_then(Value::as_str).unwrap_or("");
    let has_requests = match bundle_type {
        "transaction" | "batch" => true,
        "collection" if semantics == Semantics::Rest => {
            return Err(error(
                Position::Document,
                ErrorKind::NotSupported,
                "a Bundle POSTed to the base must be a transaction or a batch, not a collection",
            ));
        }
        "collection" => false,
        "" => {
            return Err(error(
                Position::Document,
                ErrorKind::Invalid,
                "Bundle.type is missing",
            ));
        }
        other => {
            return Err(error(
                Position::Document,
                ErrorKind::NotSupported,
                format!(
                    "Bundle.type '{other}' cannot be stored: expected transaction, batch or collection"
                ),
            ));
        }
    };
    let entries = match bundle.get_mut("entry").map(Value::take) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(error(
                Position::Document,
                ErrorKind::Invalid,
                "Bundle.entry must be an array",
            ));
        }
    };

    let mut parsed = Vec::with_capacity(entries.len());
    let mut full_urls = HashSet::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let position = Position::Entry(index);
        let entry =
            parse_bundle_entry(entry, position, has_requests, semantics).map_err(|mut e| {
                e.position = position;
                e
            })?;
        if let Some(url) = &entry.full_url
            && !full_urls.insert(url.clone())
        {
            return Err(EntryError {
                position,
                full_url: Some(url.clone()),
                kind: ErrorKind::Invalid,
                message: "fullUrl appears in more than one entry".to_string(),
            });
        }
        parsed.push(entry);
    }
    Ok(parsed)
}

fn parse_bundle_entry(
    mut entry: Value,
    position: Position,
    has_requests: bool,
    semantics: Semantics,
) -> Result<Entry, EntryError> {
    let Some(object) = entry.as_object_mut() else {
        return Err(error(
            position,
            ErrorKind::Invalid,
            "a Bundle entry must be a JSON object",
        ));
    };
    let full_url = object
        .get("fullUrl")
        .and_then(Value::as_str)
        .map(str::to_string);
    let with_url = |mut e: EntryError| {
        e.full_url = full_url.clone();
        e
    };
    let resource = object.remove("resource");
    let request = object.remove("request");
    if semantics == Semantics::Rest
        && let Some(read) = read_entry(request.as_ref(), position)
    {
        return Ok(Entry { full_url, ..read });
    }

    let resource_type = match &resource {
        Some(resource) => {
            Some(check_stored_resource(resource, position, semantics).map_err(with_url)?)
        }
        None => None,
    };
    let request = match (has_requests, request) {
        (true, Some(request)) => Some(parse_request(&request, position).map_err(with_url)?),
        (true, None) => {
            return Err(with_url(error(
                position,
                ErrorKind::Invalid,
                "entry.request is missing",
            )));
        }
        (false, _) => None,
    };

    let mut parsed =
        build_entry(resource, resource_type, request, position, semantics).map_err(with_url)?;
    parsed.full_url = full_url;
    if semantics == Semantics::Load && parsed.id.is_none() && parsed.action != Action::Delete {
        parsed.id = parsed
            .full_url
            .as_deref()
            .and_then(|url| url.strip_prefix("urn:uuid:"))
            .filter(|uuid| is_valid_id(uuid))
            .map(str::to_string);
    }
    Ok(parsed)
}

/// The version id of a weak or strong ETag: `W/"3"` or `"3"` gives `3`. A bare number is
/// taken as the version id too.
pub fn version_of_etag(etag: &str) -> Option<String> {
    let etag = etag.trim();
    let quoted = etag.strip_prefix("W/").unwrap_or(etag);
    let version = quoted
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(quoted);
    (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
        .then(|| version.to_string())
}

/// A GET or HEAD entry: a read, whose URL is checked when it runs.
fn read_entry(request: Option<&Value>, position: Position) -> Option<Entry> {
    let request = request?;
    let method = request.get("method").and_then(Value::as_str)?;
    if !matches!(method, "GET" | "HEAD") {
        return None;
    }
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(Entry {
        position,
        action: Action::Read,
        resource_type: String::new(),
        id: None,
        full_url: None,
        resource: None,
        if_match: None,
        if_none_exist: None,
        criteria: None,
        request_url: Some(url.to_string()),
    })
}

/// An entry's `request`, split into its parts.
struct Request {
    method: String,
    resource_type: String,
    id: Option<String>,
    query: Option<String>,
    if_match: Option<String>,
    if_none_exist: Option<String>,
}

fn parse_request(request: &Value, position: Position) -> Result<Request, EntryError> {
    let text = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let method = text("method").ok_or_else(|| {
        error(
            position,
            ErrorKind::Invalid,
            "entry.request.method is missing",
        )
    })?;
    let url = text("url")
        .ok_or_else(|| error(position, ErrorKind::Invalid, "entry.request.url is missing"))?;

    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (url.as_str(), None),
    };
    let mut segments = path.trim_start_matches('/').split('/');
    let resource_type = segments.next().unwrap_or("").to_string();
    let id = segments.next().map(str::to_string);
    if segments.next().is_some() || !is_resource_type(&resource_type) {
        return Err(error(
            position,
            ErrorKind::Invalid,
            format!("entry.request.url '{url}' is not of the form Type, Type/id or Type?criteria"),
        ));
    }
    Ok(Request {
        method,
        resource_type,
        id,
        query,
        if_match: match text("ifMatch") {
            Some(etag) => Some(version_of_etag(&etag).ok_or_else(|| {
                error(
                    position,
                    ErrorKind::Invalid,
                    format!("entry.request.ifMatch '{etag}' is not an ETag such as W/\"3\""),
                )
            })?),
            None => None,
        },
        if_none_exist: text("ifNoneExist"),
    })
}

fn build_entry(
    resource: Option<Value>,
    resource_type: Option<String>,
    request: Option<Request>,
    position: Position,
    semantics: Semantics,
) -> Result<Entry, EntryError> {
    let resource_id = resource
        .as_ref()
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut entry = Entry {
        position,
        action: Action::Update,
        resource_type: resource_type.clone().unwrap_or_default(),
        id: resource_id.clone(),
        full_url: None,
        resource,
        if_match: None,
        if_none_exist: None,
        criteria: None,
        request_url: None,
    };
    let Some(request) = request else {
        if entry.resource.is_none() {
            return Err(error(
                position,
                ErrorKind::Invalid,
                "entry.resource is missing",
            ));
        }
        return Ok(entry);
    };

    if let Some(resource_type) = &resource_type
        && *resource_type != request.resource_type
        && request.method != "PATCH"
    {
        return Err(error(
            position,
            ErrorKind::Invalid,
            format!(
                "entry.request.url names {} but the resource is a {resource_type}",
                request.resource_type
            ),
        ));
    }
    entry.resource_type = request.resource_type.clone();
    entry.if_match = request.if_match;

    match request.method.as_str() {
        "POST" => {
            require_resource(&entry, position)?;
            if request.id.is_some() || request.query.is_some() {
                return Err(error(
                    position,
                    ErrorKind::Invalid,
                    "a POST entry's request.url must be the resource type alone",
                ));
            }
            if semantics == Semantics::Rest {
                // FHIR ignores the id of a resource that is created: the server assigns one.
                entry.action = Action::Create;
                entry.id = None;
            }
            if let Some(criteria) = request.if_none_exist {
                entry.action = Action::Create;
                entry.if_none_exist = Some(criteria);
            }
        }
        "PATCH" if semantics == Semantics::Rest => {
            let Some(id) = request.id.filter(|_| request.query.is_none()) else {
                return Err(error(
                    position,
                    ErrorKind::NotSupported,
                    "a PATCH entry's request.url must be Type/id",
                ));
            };
            entry.action = Action::Patch;
            entry.id = Some(id);
            entry.resource = Some(json_patch_of(entry.resource.as_ref(), position)?);
        }
        "PUT" => {
            require_resource(&entry, position)?;
            match (request.id, request.query) {
                (Some(id), None) => {
                    if resource_id.as_ref().is_some_and(|rid| *rid != id) {
                        return Err(error(
                            position,
                            ErrorKind::Invalid,
                            format!(
                                "entry.request.url names id {id} but the resource has another id"
                            ),
                        ));
                    }
                    if !is_valid_id(&id) {
                        return Err(error(
                            position,
                            ErrorKind::Invalid,
                            format!("invalid id '{}'", crate::id::shown(&id)),
                        ));
                    }
                    entry.id = Some(id);
                }
                (None, Some(criteria)) => entry.criteria = Some(criteria),
                _ => {
                    return Err(error(
                        position,
                        ErrorKind::Invalid,
                        "a PUT entry's request.url must be Type/id or Type?criteria",
                    ));
                }
            }
        }
        "DELETE" => {
            entry.action = Action::Delete;
            entry.resource = None;
            match (request.id, request.query) {
                (Some(id), None) => entry.id = Some(id),
                (None, Some(criteria)) => entry.criteria = Some(criteria),
                _ => {
                    return Err(error(
                        position,
                        ErrorKind::Invalid,
                        "a DELETE entry's request.url must be Type/id or Type?criteria",
                    ));
                }
            }
        }
        "GET" | "HEAD" | "PATCH" if semantics == Semantics::Load => {
            return Err(error(
                position,
                ErrorKind::NotSupported,
                format!(
                    "{} entries cannot be loaded; only POST, PUT and DELETE store data",
                    request.method
                ),
            ));
        }
        other => {
            return Err(error(
                position,
                ErrorKind::Invalid,
                format!("unknown request method '{other}'"),
            ));
        }
    }
    Ok(entry)
}

/// The JSON Patch document of a PATCH entry: a Binary whose `contentType` is
/// `application/json-patch+json` and whose `data` is the base64 of the patch.
fn json_patch_of(resource: Option<&Value>, position: Position) -> Result<Value, EntryError> {
    let invalid = |message: &str| error(position, ErrorKind::Invalid, message);
    let Some(binary) =
        resource.filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Binary"))
    else {
        return Err(error(
            position,
            ErrorKind::NotSupported,
            "a PATCH entry's resource must be a Binary holding a JSON Patch (FHIRPath Patch is not supported)",
        ));
    };
    let content_type = binary
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !content_type.starts_with("application/json-patch+json") {
        return Err(invalid(
            "the PATCH entry's Binary must have contentType application/json-patch+json",
        ));
    }
    let data = binary
        .get("data")
        .and_then(Value::as_str)
        .unwrap_or_default();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| invalid("the PATCH entry's Binary.data is not base64"))?;
    let patch: Value = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("the PATCH entry's Binary.data is not a JSON document"))?;
    if !patch.is_array() {
        return Err(invalid(
            "a JSON Patch document must be an array of operations",
        ));
    }
    Ok(patch)
}

fn require_resource(entry: &Entry, position: Position) -> Result<(), EntryError> {
    if entry.resource.is_none() {
        return Err(error(
            position,
            ErrorKind::Invalid,
            "entry.resource is missing",
        ));
    }
    Ok(())
}

/// `urn:uuid:` references that name no `fullUrl` of these entries, with the entry that
/// holds each. Under load semantics they may still name a resource stored earlier, whose
/// id is the UUID; the caller checks those against the repository.
pub fn unresolved_placeholders(entries: &[Entry]) -> Vec<(usize, String)> {
    let defined: HashSet<&str> = entries
        .iter()
        .filter_map(|e| e.full_url.as_deref())
        .collect();
    let mut unresolved = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if let Some(resource) = &entry.resource {
            for_each_reference(resource, &mut |reference| {
                if let ReferenceKind::Placeholder(url) = classify(reference)
                    && !defined.contains(url)
                {
                    unresolved.push((index, url.to_string()));
                }
            });
        }
    }
    unresolved
}

/// Rejects placeholders that are not even shaped like a UUID, which no later lookup can
/// resolve.
fn check_placeholders(entries: &[Entry]) -> Result<(), EntryError> {
    for (index, url) in unresolved_placeholders(entries) {
        let uuid = url.trim_start_matches("urn:uuid:");
        if !is_valid_id(uuid) {
            let entry = &entries[index];
            return Err(EntryError {
                position: entry.position,
                full_url: entry.full_url.clone(),
                kind: ErrorKind::UnresolvedReference,
                message: format!("reference {url} matches no entry of the bundle"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
