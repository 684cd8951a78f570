//! Events of the `hearth.resources` topic: writes to the clinical data repository.

use serde::{Deserialize, Serialize};

/// Resource writes that the clinical data repository applies in log order. A TRANSACTION applies
/// all entries or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceTransaction {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub site_id: String,
    pub kind: TransactionKind,
    /// Operations in Bundle order.
    pub entries: Vec<ResourceOperation>,
    /// App that made the request. None for loads by an administrator.
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    /// HTTP request that caused the writes, matching ApiCall.request_id.
    pub request_id: Option<String>,
}

/// One resource write of a transaction, applied by the repository in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceOperation {
    pub action: ResourceAction,
    /// FHIR resource type, e.g. Patient.
    pub resource_type: String,
    /// Logical id of the resource. None for a create whose id the repository assigns, and for
    /// conditional operations.
    pub id: Option<String>,
    /// Bundle entry fullUrl, for example urn:uuid:..., which other entries of the same transaction
    /// use to reference this resource.
    pub full_url: Option<String>,
    /// JSON text of the resource for CREATE and UPDATE, the JSON Patch document for PATCH, None for
    /// DELETE.
    pub resource: Option<String>,
    /// ETag from the If-Match header, e.g. W/"3". The operation fails unless the current version
    /// matches.
    pub if_match: Option<String>,
    /// Search query of a conditional create (If-None-Exist header), e.g.
    /// identifier=http://example.org|123.
    pub if_none_exist: Option<String>,
    /// Search query of a conditional update, patch or delete, which selects the target in place of
    /// id.
    pub criteria: Option<String>,
}

/// Origin of a resource transaction. LOAD is a bulk load or $import. TRANSACTION is an all-or-
/// nothing Bundle. BATCH is a Bundle whose entries succeed or fail one by one. SINGLE is one REST
/// interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionKind {
    Load,
    Transaction,
    Batch,
    Single,
}

/// Write interaction of one resource operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourceAction {
    Create,
    Update,
    Delete,
    Patch,
}
