//! What a caller may see, as conditions that every read and search adds.

use rusqlite::types::Value as SqlValue;

use crate::criteria::CriteriaError;
use crate::search::{SearchError, SqlBuilder, parse_filters};

/// The resources a caller may see of one type: those matching any alternative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visibility {
    pub alternatives: Vec<Alternative>,
}

/// One way a resource is visible: inside a patient's compartment (when set) and matching
/// every search restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alternative {
    /// The id of the patient whose compartment the resource must belong to.
    pub patient_compartment: Option<String>,
    /// `(name, encoded value)` search restrictions, as in a query string.
    pub filters: Vec<(String, String)>,
}

impl Visibility {
    /// Every resource, for the admin credential and internal readers.
    pub fn everything() -> Self {
        Visibility {
            alternatives: vec![Alternative::default()],
        }
    }

    /// Returns whether some alternative has no restriction at all, so every resource is
    /// visible and no condition is needed.
    pub fn is_everything(&self) -> bool {
        self.alternatives
            .iter()
            .any(|a| a.patient_compartment.is_none() && a.filters.is_empty())
    }

    /// Returns whether every visible resource is in one patient's compartment, so that a
    /// search can find them through that patient's references.
    pub fn confines_to_patient(&self) -> bool {
        matches!(
            self.alternatives.as_slice(),
            [Alternative {
                patient_compartment: Some(_),
                ..
            }]
        )
    }

    /// Returns ` AND (...)`: the condition on `r` (a row of `resources`) that a visible
    /// resource of `resource_type` meets.
    pub(crate) fn sql(
        &self,
        resource_type: &str,
    ) -> Result<(String, Vec<SqlValue>), CriteriaError> {
        let mut builder = SqlBuilder::new(None);
        self.push_condition(&mut builder, resource_type, "r")
            .map_err(|error| CriteriaError::Invalid {
                criteria: format!("the scope restrictions on {resource_type}"),
                reason: error.to_string(),
            })?;
        Ok((builder.sql, builder.args))
    }

    /// Appends ` AND (...)`, the condition a visible resource of `resource_type` meets, on
    /// `alias`, a row of `resources`. Appends nothing when everything is visible.
    pub(crate) fn push_condition(
        &self,
        builder: &mut SqlBuilder<'_>,
        resource_type: &str,
        alias: &str,
    ) -> Result<(), SearchError> {
        if self.is_everything() {
            return Ok(());
        }
        if self.alternatives.is_empty() {
            builder.push(" AND 0");
            return Ok(());
        }
        builder.push(" AND (");
        for (index, alternative) in self.alternatives.iter().enumerate() {
            if index > 0 {
                builder.push(" OR ");
            }
            builder.push("(1");
            if let Some(patient) = &alternative.patient_compartment {
                builder.push(" AND ");
                builder.compartment(resource_type, alias, patient);
            }
            // Checks of the rows a search finds by other means, so that a broad scope
            // restriction never becomes the set SQLite starts from.
            for filter in parse_filters(resource_type, &alternative.filters)? {
                builder.push(" AND ");
                builder.check(resource_type, alias, &filter)?;
            }
            builder.push(")");
        }
        builder.push(")");
        Ok(())
    }
}
