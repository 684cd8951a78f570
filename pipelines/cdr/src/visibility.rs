//! What a caller may see, as conditions that every read and search adds.

use hearth_fhir_core::search_params;
use rusqlite::types::Value as SqlValue;

use crate::criteria::{CriteriaError, build_filter};
use crate::params;

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

    /// Returns ` AND (...)`: the condition on `r` (a row of `resources`) that a visible
    /// resource of `resource_type` meets.
    pub(crate) fn sql(
        &self,
        resource_type: &str,
    ) -> Result<(String, Vec<SqlValue>), CriteriaError> {
        let mut alternatives = Vec::with_capacity(self.alternatives.len());
        let mut args = Vec::new();
        if self.is_everything() {
            return Ok((String::new(), args));
        }
        for alternative in &self.alternatives {
            let mut condition = String::from("1");
            if let Some(patient) = &alternative.patient_compartment {
                let (clause, clause_args) = compartment(resource_type, patient);
                condition.push_str(&clause);
                args.extend(clause_args);
            }
            let (filters, filter_args) = build_filter(resource_type, &alternative.filters)?;
            condition.push_str(&filters);
            args.extend(filter_args);
            alternatives.push(format!("({condition})"));
        }
        if alternatives.is_empty() {
            return Ok((" AND 0".to_string(), args));
        }
        Ok((format!(" AND ({})", alternatives.join(" OR ")), args))
    }
}

/// ` AND ...`: membership of the patient's compartment, from the reference parameters
/// that the Patient compartment definition lists for the type.
fn compartment(resource_type: &str, patient: &str) -> (String, Vec<SqlValue>) {
    if resource_type == "Patient" {
        return (
            " AND r.id = ?".to_string(),
            vec![SqlValue::Text(patient.to_string())],
        );
    }
    let ids: Vec<String> = search_params::compartment_params(resource_type)
        .iter()
        .filter_map(|code| params::id(resource_type, code))
        .map(|id| id.to_string())
        .collect();
    if ids.is_empty() {
        return (" AND 0".to_string(), Vec::new());
    }
    let clause = format!(
        " AND r.rid IN (SELECT rid FROM idx_reference WHERE param IN ({}) AND target_id = ? AND target_type = 'Patient')",
        ids.join(", ")
    );
    (clause, vec![SqlValue::Text(patient.to_string())])
}
