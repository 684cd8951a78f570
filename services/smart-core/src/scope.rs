//! SMART scopes: parsing, narrowing and permission checks.
//!
//! [`parse`] splits an OAuth `scope` parameter on spaces. Each token becomes a [`Scope`]
//! or a [`RejectedScope`]; a rejected token is never partly honoured, and
//! [`ScopeSet::to_string`] lists only the accepted tokens, as they were written, in request
//! order, with repeats removed. That string is what the token response's `scope` returns.
//!
//! Accepted forms:
//!
//! - resource scopes `patient/`, `user/` or `system/`, then a FHIR R4 resource type or `*`,
//!   a dot and permissions: v2 letters, a non-empty in-order subsequence of `cruds`
//!   (`rs`, `cud`, `cruds`), or the v1 words `read` (= `rs`), `write` (= `cud`) and `*`
//!   (= `cruds`). A v2 scope may end in `?param=value&...` to restrict it to resources
//!   matching those search parameters; a v1 scope with a query is rejected.
//! - `launch`, `launch/patient`, `launch/encounter`, and `launch/<type>` for another
//!   resource type written in lower case (`launch/imagingstudy`), which requests a resource
//!   of that type in `fhirContext`.
//! - `openid`, `fhirUser`, `profile`, `offline_access`, `online_access`.
//! - Any other token made of the characters RFC 6749 allows in a scope becomes
//!   [`Scope::Other`], so the server can grant or drop it by its own policy. Tokens in the
//!   SMART namespaces (a `patient/`, `user/`, `system/` or `launch/` prefix in any letter
//!   case) that do not parse are rejected, not passed on as `Other`.

mod access;
mod describe;
mod resource;

#[cfg(test)]
mod tests;

use std::fmt;

pub use access::{Access, Grant, Interaction};
pub use resource::{Context, Permissions, ResourceScope, ScopeVersion};

/// One accepted scope token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `patient/...`, `user/...` or `system/...`.
    Resource(ResourceScope),
    /// `launch`: the app takes part in an EHR launch and receives its context.
    Launch,
    /// `launch/patient`: a standalone launch requests that a patient be selected.
    LaunchPatient,
    /// `launch/encounter`: a standalone launch requests that an encounter be selected.
    LaunchEncounter,
    /// `launch/<type>` for another resource type, such as `launch/imagingstudy`, which
    /// requests a resource of that type in `fhirContext`.
    LaunchResource {
        /// The R4 type name, such as `ImagingStudy`.
        resource_type: &'static str,
        /// The token, in lower case as SMART requires.
        text: String,
    },
    /// `openid`: an OpenID Connect id token is requested.
    OpenId,
    /// `fhirUser`: the id token carries the user's FHIR resource URL.
    FhirUser,
    /// `profile`: the OpenID Connect profile claims (kept for SMART v1 clients).
    Profile,
    /// `offline_access`: a refresh token that outlives the user's session.
    OfflineAccess,
    /// `online_access`: a refresh token usable while the user's session lasts.
    OnlineAccess,
    /// A well-formed token outside the SMART grammar, such as `__profilePhoto.manage` or a
    /// full URI. The server decides whether to grant it.
    Other(String),
}

/// A token that [`parse`] rejected, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedScope {
    /// The token as requested.
    pub text: String,
    /// The reason for the rejection.
    pub reason: ScopeError,
}

/// Reasons a scope token is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The token has a character outside RFC 6749's `scope-token` set (printable ASCII
    /// except space, `"` and `\`).
    #[error("contains a character that OAuth scopes do not allow")]
    InvalidCharacter,

    /// The prefix is a SMART prefix in the wrong letter case, such as `Patient/`.
    #[error("invalid prefix `{0}`: SMART prefixes are lower case (patient, user, system, launch)")]
    UnknownContext(String),

    /// A resource scope has no `.` before its permissions.
    #[error("missing permissions: expected `.` followed by letters from cruds")]
    MissingPermissions,

    /// The resource type is neither `*` nor a FHIR R4 resource type.
    #[error("unknown resource type `{0}`: expected `*` or a FHIR R4 resource type")]
    UnknownResourceType(String),

    /// The permissions are neither v1 words nor an in-order subsequence of `cruds`.
    #[error(
        "invalid permissions `{0}`: expected letters from cruds in that order without \
         repeats, or read, write or *"
    )]
    InvalidPermissions(String),

    /// A v1 scope (`.read`, `.write`, `.*`) carries a `?` query.
    #[error("search parameters are allowed only on v2 scopes such as `.rs`")]
    QueryOnV1Scope,

    /// The `?` query of a v2 scope is malformed.
    #[error("invalid query: {0}")]
    InvalidQuery(String),

    /// A `launch/` scope names no known context.
    #[error(
        "unknown launch context `{0}`: expected patient, encounter or a resource type in \
         lower case"
    )]
    UnknownLaunchContext(String),
}

/// The scopes of one request or grant, in request order without repeats, plus the tokens
/// that were rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
    rejected: Vec<RejectedScope>,
}

/// Parses a space-separated `scope` parameter. Runs of spaces count as one separator.
/// Malformed tokens go to [`ScopeSet::rejected`], so parsing itself has no error case.
pub fn parse(scope: &str) -> ScopeSet {
    let mut set = ScopeSet::default();

    for token in scope.split(' ').filter(|token| !token.is_empty()) {
        match parse_token(token) {
            Ok(parsed) => set.insert(parsed),
            Err(reason) => set.rejected.push(RejectedScope {
                text: token.to_string(),
                reason,
            }),
        }
    }

    set
}

fn parse_token(token: &str) -> Result<Scope, ScopeError> {
    if !token.bytes().all(is_scope_byte) {
        return Err(ScopeError::InvalidCharacter);
    }

    if let Some(simple) = parse_simple(token) {
        return Ok(simple);
    }

    let Some((prefix, rest)) = token.split_once('/') else {
        return Ok(Scope::Other(token.to_string()));
    };

    match prefix.to_ascii_lowercase().as_str() {
        "launch" if prefix == "launch" => parse_launch(rest),
        "patient" | "user" | "system" => resource::parse(token, prefix, rest).map(Scope::Resource),
        "launch" => Err(ScopeError::UnknownContext(prefix.to_string())),
        _ => Ok(Scope::Other(token.to_string())),
    }
}

/// RFC 6749 section 3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_byte(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

fn parse_simple(token: &str) -> Option<Scope> {
    let scope = match token {
        "launch" => Scope::Launch,
        "openid" => Scope::OpenId,
        "fhirUser" => Scope::FhirUser,
        "profile" => Scope::Profile,
        "offline_access" => Scope::OfflineAccess,
        "online_access" => Scope::OnlineAccess,
        _ => return None,
    };
    Some(scope)
}

fn parse_launch(context: &str) -> Result<Scope, ScopeError> {
    match context {
        "patient" => Ok(Scope::LaunchPatient),
        "encounter" => Ok(Scope::LaunchEncounter),
        _ => match lower_case_resource_type(context) {
            Some(resource_type) => Ok(Scope::LaunchResource {
                resource_type,
                text: format!("launch/{context}"),
            }),
            None => Err(ScopeError::UnknownLaunchContext(context.to_string())),
        },
    }
}

/// Finds the R4 type whose lower-case name is `name`, which must itself be lower case.
fn lower_case_resource_type(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.bytes().any(|byte| byte.is_ascii_uppercase()) {
        return None;
    }

    hearth_fhir_core::resource_types::all()
        .iter()
        .find(|candidate| candidate.eq_ignore_ascii_case(name))
        .map(String::as_str)
}

impl Scope {
    /// Returns the token text: the original text for resource and other scopes, the
    /// SMART spelling for the rest.
    pub fn as_str(&self) -> &str {
        match self {
            Scope::Resource(resource) => &resource.text,
            Scope::Launch => "launch",
            Scope::LaunchPatient => "launch/patient",
            Scope::LaunchEncounter => "launch/encounter",
            Scope::LaunchResource { text, .. } => text,
            Scope::OpenId => "openid",
            Scope::FhirUser => "fhirUser",
            Scope::Profile => "profile",
            Scope::OfflineAccess => "offline_access",
            Scope::OnlineAccess => "online_access",
            Scope::Other(text) => text,
        }
    }

    /// Returns whether a grant containing `allowed` covers this scope. Resource scopes
    /// compare by context, type, permissions and query; every other scope only by
    /// equality.
    fn is_covered_by(&self, allowed: &ScopeSet) -> bool {
        match self {
            Scope::Resource(requested) => requested.is_covered_by(allowed.resource_scopes()),
            other => allowed.scopes.contains(other),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ScopeSet {
    /// Builds a set from already parsed scopes, dropping repeats (equal token text).
    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> ScopeSet {
        let mut set = ScopeSet::default();
        for scope in scopes {
            set.insert(scope);
        }
        set
    }

    fn insert(&mut self, scope: Scope) {
        let text = scope.as_str();
        if !self.scopes.iter().any(|existing| existing.as_str() == text) {
            self.scopes.push(scope);
        }
    }

    /// Returns the accepted scopes in request order.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Returns the rejected tokens in request order.
    pub fn rejected(&self) -> &[RejectedScope] {
        &self.rejected
    }

    /// Iterates over the accepted scopes.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.scopes.iter()
    }

    /// Iterates over the accepted resource scopes.
    pub fn resource_scopes(&self) -> impl Iterator<Item = &ResourceScope> + Clone {
        self.scopes.iter().filter_map(|scope| match scope {
            Scope::Resource(resource) => Some(resource),
            _ => None,
        })
    }

    /// Returns the number of accepted scopes.
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Returns whether no scope was accepted.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Returns whether `scope` is one of the accepted scopes, compared by token text.
    /// `contains(&Scope::OfflineAccess)` tests for a plain scope.
    pub fn contains(&self, scope: &Scope) -> bool {
        let text = scope.as_str();
        self.scopes.iter().any(|existing| existing.as_str() == text)
    }

    /// Returns whether any `patient/` scope was accepted, in which case SMART requires the
    /// server to establish a patient in context before it grants them.
    pub fn needs_patient_context(&self) -> bool {
        self.resource_scopes()
            .any(|scope| scope.context == Context::Patient)
    }

    /// Returns the scopes of `self` that `allowed` covers, in the order of `self`. The
    /// rejected tokens of `self` are kept as they are.
    ///
    /// A requested resource scope is covered when each of its permissions comes from an
    /// allowed scope with the same context, the same type or `*`, and a query whose every
    /// `param=value` pair the requested scope also has. So `patient/Observation.rs` is
    /// covered by `patient/*.cruds`, or by `patient/Observation.r` together with
    /// `patient/Observation.s`, but `patient/*.rs` is not covered by
    /// `patient/Observation.rs`, and `user/` scopes do not cover `patient/` ones. A scope
    /// is kept or dropped whole; a partly covered scope is dropped. Other scopes are
    /// covered only by an equal scope.
    pub fn narrow(&self, allowed: &ScopeSet) -> ScopeSet {
        ScopeSet {
            scopes: self
                .scopes
                .iter()
                .filter(|scope| scope.is_covered_by(allowed))
                .cloned()
                .collect(),
            rejected: self.rejected.clone(),
        }
    }

    /// Returns what a client may be granted of `self` (the request) under `allowed` (its
    /// registered scopes): each requested scope that `allowed` covers, as in
    /// [`ScopeSet::narrow`], and in place of a requested resource scope that it does not
    /// cover, the allowed resource scopes that the requested one covers. So a client
    /// registered for `system/Patient.rs` that requests `system/*.rs` or
    /// `system/Patient.cruds` gets `system/Patient.rs`. A requested scope that only
    /// overlaps an allowed one, neither covering the other, gets nothing from it. Order
    /// follows the request, and rejected tokens of `self` are kept as they are.
    pub fn grantable(&self, allowed: &ScopeSet) -> ScopeSet {
        let mut granted = ScopeSet {
            scopes: Vec::new(),
            rejected: self.rejected.clone(),
        };
        for scope in &self.scopes {
            if scope.is_covered_by(allowed) {
                granted.insert(scope.clone());
                continue;
            }
            let Scope::Resource(requested) = scope else {
                continue;
            };
            for candidate in allowed.resource_scopes() {
                if candidate.is_covered_by(std::iter::once(requested)) {
                    granted.insert(Scope::Resource(candidate.clone()));
                }
            }
        }
        granted
    }

    /// Returns whether `other` covers every accepted scope of `self`, with coverage as in
    /// [`ScopeSet::narrow`]. At refresh, a requested scope that is not a subset of the
    /// grant gets `invalid_scope`.
    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.scopes.iter().all(|scope| scope.is_covered_by(other))
    }
}

impl fmt::Display for ScopeSet {
    /// Writes the accepted scopes as an OAuth `scope` value: token texts joined by single
    /// spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, scope) in self.scopes.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.scopes.iter()
    }
}
