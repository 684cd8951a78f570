//! Events of the `hearth.auth` topic about users who sign in to Hearth itself.

use serde::{Deserialize, Serialize};

/// A user was registered or replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Stable identifier of the user, the `sub` claim of its tokens.
    pub user_id: String,
    /// Name typed on the sign-in page, unique among users.
    pub username: String,
    /// Argon2id hash of the password in PHC string format.
    pub password_hash: String,
    /// Relative URL of the FHIR resource that is this user, such as `Practitioner/123`.
    pub fhir_user: Option<String>,
    pub display_name: Option<String>,
    /// Console roles: `platform-admin`, `site-admin` or `app-vendor`.
    pub roles: Vec<String>,
    /// Site a site-admin governs.
    pub site_id: Option<String>,
    /// Vendor whose apps an app-vendor user may see.
    pub vendor: Option<String>,
    /// User id of the administrator who made the change, or `cli`.
    pub actor: String,
}

/// A user may no longer sign in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDisabled {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub user_id: String,
    /// User id of the administrator who made the change, or `cli`.
    pub actor: String,
}
