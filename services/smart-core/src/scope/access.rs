//! Permission checks for FHIR interactions.

use super::resource::is_query_subset;
use super::{Context, Permissions, ScopeSet};

/// A FHIR REST interaction as SMART scopes classify it.
///
/// `read`, `vread` and instance `history` are [`Interaction::Read`]; `update` and `patch`
/// are [`Interaction::Update`]; type and system `search` and `history` are
/// [`Interaction::Search`]. Batches and transactions are checked entry by entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    /// Returns the single permission letter this interaction needs.
    pub fn permission(self) -> Permissions {
        match self {
            Interaction::Create => Permissions::CREATE,
            Interaction::Read => Permissions::READ,
            Interaction::Update => Permissions::UPDATE,
            Interaction::Delete => Permissions::DELETE,
            Interaction::Search => Permissions::SEARCH,
        }
    }
}

/// The outcome of [`ScopeSet::access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No granted scope allows the interaction.
    Denied,
    /// At least one scope allows it. A resource is within reach when it matches any one
    /// grant (the grants OR together).
    Allowed { filters: Vec<Grant> },
}

/// One way a resource can be reached: the context of the scope that allowed it and that
/// scope's search parameter restrictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// For [`Context::Patient`], the resource must also be in the patient compartment of
    /// the patient in context.
    pub context: Context,
    /// `param=value` pairs the resource must all match, as in a FHIR search; empty means
    /// no restriction beyond the context.
    pub query: Vec<(String, String)>,
}

impl Grant {
    /// Returns whether this grant has no search parameter restriction.
    pub fn is_unrestricted(&self) -> bool {
        self.query.is_empty()
    }

    /// Returns whether anything this grant reaches is also reached by `other`.
    fn is_subsumed_by(&self, other: &Grant) -> bool {
        self.context == other.context && is_query_subset(&other.query, &self.query)
    }
}

impl Access {
    /// Returns whether any scope allows the interaction.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Access::Allowed { .. })
    }

    /// Returns the grants, empty when denied.
    pub fn grants(&self) -> &[Grant] {
        match self {
            Access::Denied => &[],
            Access::Allowed { filters } => filters,
        }
    }

    /// Returns whether every allowing scope is a `patient/` scope, so every result must
    /// lie in the patient compartment. False when denied.
    pub fn needs_patient_compartment(&self) -> bool {
        self.is_allowed()
            && self
                .grants()
                .iter()
                .all(|grant| grant.context == Context::Patient)
    }

    /// Returns whether some `user/` or `system/` scope allows the interaction without a
    /// query, so no search parameter or compartment filter applies.
    pub fn is_unrestricted(&self) -> bool {
        self.grants()
            .iter()
            .any(|grant| grant.context != Context::Patient && grant.is_unrestricted())
    }

    /// Returns the search parameter restrictions of each alternative, in grant order.
    /// An empty slice is an alternative without restriction.
    pub fn restrictions(&self) -> Vec<&[(String, String)]> {
        self.grants()
            .iter()
            .map(|grant| grant.query.as_slice())
            .collect()
    }
}

impl ScopeSet {
    /// Checks whether the granted scopes allow `interaction` on `resource_type`, taking
    /// only scopes whose context is in `context_allowed`. A token without a patient in
    /// context passes `&[Context::User, Context::System]`, so its `patient/` scopes allow
    /// nothing.
    ///
    /// Grants reached through another grant of the same context with fewer restrictions
    /// are left out, so `patient/Observation.rs?category=laboratory` next to
    /// `patient/*.rs` gives one unrestricted patient grant.
    pub fn access(
        &self,
        context_allowed: &[Context],
        resource_type: &str,
        interaction: Interaction,
    ) -> Access {
        let mut grants: Vec<Grant> = Vec::new();

        let allowing = self.resource_scopes().filter(|scope| {
            context_allowed.contains(&scope.context)
                && scope.applies_to(resource_type)
                && scope.permissions.allows(interaction)
        });
        for scope in allowing {
            grants.push(Grant {
                context: scope.context,
                query: scope.query.clone(),
            });
        }

        if grants.is_empty() {
            return Access::Denied;
        }
        Access::Allowed {
            filters: drop_subsumed(grants),
        }
    }
}

/// Removes each grant that another grant reaches entirely, keeping the first of equal
/// grants.
fn drop_subsumed(grants: Vec<Grant>) -> Vec<Grant> {
    let mut retained: Vec<Grant> = Vec::with_capacity(grants.len());

    for grant in grants {
        if retained
            .iter()
            .any(|existing| grant.is_subsumed_by(existing))
        {
            continue;
        }
        retained.retain(|existing| !existing.is_subsumed_by(&grant));
        retained.push(grant);
    }

    retained
}
