//! Resource scopes: `patient/Observation.rs?category=laboratory` and the v1 forms.

use std::fmt;

use super::ScopeError;
use super::access::Interaction;

/// Whose data a resource scope reaches: the `patient/`, `user/` or `system/` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// `patient/`: the patient in context and that patient's compartment.
    Patient,
    /// `user/`: whatever the signed-in user may access.
    User,
    /// `system/`: whatever the client's own policy allows (backend services).
    System,
}

impl Context {
    /// Returns the scope prefix without the slash.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scope grammar a resource scope was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeVersion {
    /// SMART 1.0: `.read`, `.write` or `.*`.
    V1,
    /// SMART 2.0: letters from `cruds`, optionally with a query.
    V2,
}

/// A set of the interactions `c` (create), `r` (read), `u` (update), `d` (delete) and
/// `s` (search).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

/// The permission letters in the order SMART v2 requires; bit `i` is `LETTERS[i]`.
const LETTERS: &str = "cruds";

impl Permissions {
    pub const CREATE: Permissions = Permissions(1);
    pub const READ: Permissions = Permissions(1 << 1);
    pub const UPDATE: Permissions = Permissions(1 << 2);
    pub const DELETE: Permissions = Permissions(1 << 3);
    pub const SEARCH: Permissions = Permissions(1 << 4);
    /// `cruds`, which v1 `.*` means.
    pub const ALL: Permissions = Permissions(0b1_1111);
    /// `rs`, which v1 `.read` means.
    pub const V1_READ: Permissions = Permissions(Self::READ.0 | Self::SEARCH.0);
    /// `cud`, which v1 `.write` means.
    pub const V1_WRITE: Permissions = Permissions(Self::CREATE.0 | Self::UPDATE.0 | Self::DELETE.0);

    /// Parses v2 letters: a non-empty subsequence of `cruds`, in order, without repeats.
    pub fn from_letters(letters: &str) -> Option<Permissions> {
        let mut bits = 0u8;
        let mut next = 0usize;

        for letter in letters.chars() {
            let offset = LETTERS.get(next..)?.find(letter)?;
            let index = next + offset;
            bits |= 1 << index;
            next = index + 1;
        }

        (bits != 0).then_some(Permissions(bits))
    }

    /// Returns the v2 letters, such as `rs`.
    pub fn letters(self) -> String {
        LETTERS
            .chars()
            .enumerate()
            .filter(|(index, _)| self.0 & (1 << index) != 0)
            .map(|(_, letter)| letter)
            .collect()
    }

    /// Returns whether every permission in `other` is also in `self`.
    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Returns whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Returns the single-permission sets that make up `self`, in `cruds` order.
    pub fn split(self) -> impl Iterator<Item = Permissions> {
        (0..LETTERS.len())
            .map(|index| Permissions(1 << index))
            .filter(move |single| self.contains(*single))
    }

    /// Returns whether these permissions allow `interaction`.
    pub fn allows(self, interaction: Interaction) -> bool {
        self.contains(interaction.permission())
    }
}

impl std::ops::BitOr for Permissions {
    type Output = Permissions;

    fn bitor(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }
}

/// A parsed `patient/`, `user/` or `system/` scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    pub context: Context,
    /// The resource type, or `None` for `*`.
    pub resource_type: Option<String>,
    pub permissions: Permissions,
    /// The percent-decoded `param=value` pairs after `?`, in written order; empty when
    /// the scope has no query. Resources must match every pair.
    pub query: Vec<(String, String)>,
    pub version: ScopeVersion,
    /// The token as requested. It parses back to this same scope, and it is what the
    /// granted `scope` string repeats.
    pub text: String,
}

/// Parses `rest`, the part of `token` after `prefix/`. `prefix` is a context name in any
/// letter case; only lower case is accepted.
pub(super) fn parse(token: &str, prefix: &str, rest: &str) -> Result<ResourceScope, ScopeError> {
    let context = parse_context(prefix)?;

    let (path, query_text) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let (type_text, permission_text) =
        path.split_once('.').ok_or(ScopeError::MissingPermissions)?;

    let resource_type = parse_resource_type(type_text)?;
    let (permissions, version) = parse_permissions(permission_text)?;

    let query = match query_text {
        None => Vec::new(),
        Some(_) if version == ScopeVersion::V1 => return Err(ScopeError::QueryOnV1Scope),
        Some(text) => parse_query(text)?,
    };

    Ok(ResourceScope {
        context,
        resource_type,
        permissions,
        query,
        version,
        text: token.to_string(),
    })
}

fn parse_context(prefix: &str) -> Result<Context, ScopeError> {
    match prefix {
        "patient" => Ok(Context::Patient),
        "user" => Ok(Context::User),
        "system" => Ok(Context::System),
        _ => Err(ScopeError::UnknownContext(prefix.to_string())),
    }
}

fn parse_resource_type(text: &str) -> Result<Option<String>, ScopeError> {
    if text == "*" {
        return Ok(None);
    }

    if hearth_fhir_core::resource_types::is_resource_type(text) {
        Ok(Some(text.to_string()))
    } else {
        Err(ScopeError::UnknownResourceType(text.to_string()))
    }
}

fn parse_permissions(text: &str) -> Result<(Permissions, ScopeVersion), ScopeError> {
    let v1 = match text {
        "read" => Some(Permissions::V1_READ),
        "write" => Some(Permissions::V1_WRITE),
        "*" => Some(Permissions::ALL),
        _ => None,
    };
    if let Some(permissions) = v1 {
        return Ok((permissions, ScopeVersion::V1));
    }

    Permissions::from_letters(text)
        .map(|permissions| (permissions, ScopeVersion::V2))
        .ok_or_else(|| ScopeError::InvalidPermissions(text.to_string()))
}

/// Parses `param=value&...`. Names and values are percent-decoded (`+` stays a plus
/// sign, because the scope parameter was already form-decoded once). Every pair needs a
/// non-empty name and value.
fn parse_query(text: &str) -> Result<Vec<(String, String)>, ScopeError> {
    text.split('&').map(parse_query_pair).collect()
}

fn parse_query_pair(pair: &str) -> Result<(String, String), ScopeError> {
    let invalid = |reason: &str| ScopeError::InvalidQuery(format!("`{pair}` {reason}"));

    let (name, value) = pair
        .split_once('=')
        .ok_or_else(|| invalid("is not of the form param=value"))?;
    if name.is_empty() {
        return Err(invalid("has an empty parameter name"));
    }
    if value.is_empty() {
        return Err(invalid("has an empty value"));
    }

    let name = percent_decode(name).ok_or_else(|| invalid("has invalid percent-encoding"))?;
    let value = percent_decode(value).ok_or_else(|| invalid("has invalid percent-encoding"))?;
    Ok((name, value))
}

/// Decodes `%XX` escapes. Returns `None` for a `%` without two hex digits after it, or
/// for bytes that do not decode to UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let escapes_valid = bytes.iter().enumerate().all(|(index, byte)| {
        *byte != b'%'
            || bytes
                .get(index + 1..index + 3)
                .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_valid {
        return None;
    }

    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

impl ResourceScope {
    /// Returns whether this scope reaches resources of `resource_type`.
    pub fn applies_to(&self, resource_type: &str) -> bool {
        self.resource_type
            .as_deref()
            .is_none_or(|own| own == resource_type)
    }

    /// Returns the v2 spelling: the original text for v2 scopes, and `.rs`, `.cud` or
    /// `.cruds` in place of `.read`, `.write` or `.*` for v1 scopes.
    pub fn to_v2_text(&self) -> String {
        match self.version {
            ScopeVersion::V2 => self.text.clone(),
            ScopeVersion::V1 => format!(
                "{}/{}.{}",
                self.context,
                self.resource_type.as_deref().unwrap_or("*"),
                self.permissions.letters()
            ),
        }
    }

    /// Returns whether scopes from `allowed` together grant every permission of `self`
    /// (see [`super::ScopeSet::narrow`]).
    pub(super) fn is_covered_by<'a>(
        &self,
        allowed: impl Iterator<Item = &'a ResourceScope> + Clone,
    ) -> bool {
        self.permissions.split().all(|permission| {
            allowed
                .clone()
                .any(|candidate| candidate.grants(self, permission))
        })
    }

    /// Returns whether `self` grants `permission` on everything `requested` reaches.
    fn grants(&self, requested: &ResourceScope, permission: Permissions) -> bool {
        let type_covered = match (&self.resource_type, &requested.resource_type) {
            (None, _) => true,
            (Some(own), Some(other)) => own == other,
            (Some(_), None) => false,
        };

        self.context == requested.context
            && type_covered
            && self.permissions.contains(permission)
            && is_query_subset(&self.query, &requested.query)
    }
}

/// Returns whether every pair of `fewer` is in `more`: a scope restricted by `more`
/// reaches only resources that a scope restricted by `fewer` also reaches.
pub(super) fn is_query_subset(fewer: &[(String, String)], more: &[(String, String)]) -> bool {
    fewer.iter().all(|pair| more.contains(pair))
}
