//! Plain-language descriptions of scopes for the approval page.

use super::{Context, Permissions, ResourceScope, Scope};

impl Scope {
    /// Describes what granting this scope lets the app do, in one sentence without a
    /// final period, such as "Read and search Observation records of the selected patient,
    /// only where category is laboratory". Resource scopes name the FHIR type as it is;
    /// no clinical wording is invented for it.
    pub fn describe(&self) -> String {
        let text = match self {
            Scope::Resource(resource) => return describe_resource(resource),
            Scope::Launch => {
                "Receive the context the EHR opens it with, such as the current patient"
            }
            Scope::LaunchPatient => "Ask for a patient to be selected when it starts",
            Scope::LaunchEncounter => "Ask for an encounter to be selected when it starts",
            Scope::LaunchResource { resource_type, .. } => {
                return format!(
                    "Ask for a resource of type {resource_type} to be selected when it starts"
                );
            }
            Scope::OpenId => "Confirm who you are when you sign in",
            Scope::FhirUser => "Know which FHIR record (such as Patient or Practitioner) is you",
            Scope::Profile => "See your name and basic profile",
            Scope::OfflineAccess => "Keep its access after you sign out, until it is revoked",
            Scope::OnlineAccess => "Keep its access while you stay signed in",
            Scope::Other(text) => return format!("Use the additional permission `{text}`"),
        };
        text.to_string()
    }
}

fn describe_resource(scope: &ResourceScope) -> String {
    format!(
        "{} {}{}",
        permission_phrase(scope.permissions),
        records_phrase(scope),
        restriction_phrase(&scope.query)
    )
}

/// Returns, for example, "Read and search" or "Create, update and delete".
fn permission_phrase(permissions: Permissions) -> String {
    let verbs: Vec<&str> = permissions.split().map(verb).collect();

    let phrase = match verbs.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };

    capitalize(&phrase)
}

fn verb(permission: Permissions) -> &'static str {
    match permission {
        Permissions::CREATE => "create",
        Permissions::READ => "read",
        Permissions::UPDATE => "update",
        Permissions::DELETE => "delete",
        _ => "search",
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn records_phrase(scope: &ResourceScope) -> String {
    let records = match &scope.resource_type {
        Some(resource_type) => format!("{resource_type} records"),
        None => "all records".to_string(),
    };

    match scope.context {
        Context::Patient => format!("{records} of the selected patient"),
        Context::User => format!("{records} you have access to"),
        Context::System => format!("{records} this app is allowed to use"),
    }
}

/// Returns ", only where category is laboratory and status is final", or nothing for an
/// unrestricted scope. A token value `system|code` is shown by its code.
fn restriction_phrase(query: &[(String, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }

    let conditions: Vec<String> = query
        .iter()
        .map(|(name, value)| format!("{name} is {}", display_value(value)))
        .collect();
    format!(", only where {}", conditions.join(" and "))
}

fn display_value(value: &str) -> &str {
    match value.rsplit_once('|') {
        Some((_, code)) if !code.is_empty() => code,
        _ => value,
    }
}
