//! Rows of `idx_composite`: composite parameter values, and identifier types for
//! `:of-type`.
//!
//! A composite value pairs the values its components take from one element (one
//! Observation, or one `Observation.component`). A component can yield several rows (a
//! CodeableConcept with two codings), so one composite value becomes one table row per
//! combination of its components' rows. Each component fills six columns, named by slot
//! rather than by meaning because the component's type decides what they hold; see
//! [`crate::schema`] for the mapping.

use std::cmp::Ordering;

use hearth_fhir_core::index::{CompositePart, CompositeRow, TokenRow};
use rusqlite::types::Value as SqlValue;

/// Components of the widest R4 composite parameter (MolecularSequence
/// `chromosome-variant-coordinate` has three). Parameters with more are not stored.
pub const MAX_COMPONENTS: usize = 3;

/// The columns one component fills.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentColumns {
    pub text: [String; 3],
    /// `low`, `high` and `value`: INTEGER microseconds for dates, REAL for numbers and
    /// quantities, 0 for other types.
    pub numbers: [SqlValue; 3],
}

impl ComponentColumns {
    fn empty() -> Self {
        ComponentColumns {
            text: Default::default(),
            numbers: [
                SqlValue::Integer(0),
                SqlValue::Integer(0),
                SqlValue::Integer(0),
            ],
        }
    }

    fn texts(first: Option<&str>, second: Option<&str>, third: Option<&str>) -> Self {
        let owned = |text: Option<&str>| text.unwrap_or_default().to_owned();
        ComponentColumns {
            text: [owned(first), owned(second), owned(third)],
            ..Self::empty()
        }
    }
}

/// One row of `idx_composite` without its `rid`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeKey {
    pub param: i64,
    /// Exactly [`MAX_COMPONENTS`] entries; components a parameter does not have are empty.
    pub components: Vec<ComponentColumns>,
}

impl CompositeKey {
    /// Returns the table rows of one composite value of parameter `param`: one per
    /// combination of its components' rows. Returns none for a parameter with more than
    /// [`MAX_COMPONENTS`] components.
    pub fn from_composite(param: i64, row: &CompositeRow) -> Vec<CompositeKey> {
        if row.components.len() > MAX_COMPONENTS {
            return Vec::new();
        }
        let mut combinations: Vec<Vec<ComponentColumns>> = vec![Vec::new()];
        for part in &row.components {
            let choices = part_columns(part);
            let mut next = Vec::with_capacity(combinations.len() * choices.len());
            for prefix in &combinations {
                for choice in &choices {
                    let mut combination = prefix.clone();
                    combination.push(choice.clone());
                    next.push(combination);
                }
            }
            combinations = next;
        }
        let mut keys: Vec<CompositeKey> = Vec::with_capacity(combinations.len());
        for mut components in combinations {
            components.resize_with(MAX_COMPONENTS, ComponentColumns::empty);
            let key = CompositeKey { param, components };
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// Returns the row that pairs an identifier's type coding with its value, for
    /// `:of-type` searches of token parameter `param`; `None` when the identifier has no
    /// type coding.
    pub fn from_identifier_type(param: i64, row: &TokenRow) -> Option<CompositeKey> {
        let type_code = row.identifier_type_code.as_deref()?;
        let identifier_type =
            ComponentColumns::texts(Some(type_code), row.identifier_type_system.as_deref(), None);
        let value = ComponentColumns::texts(row.code.as_deref(), row.system.as_deref(), None);
        Some(CompositeKey {
            param,
            components: vec![identifier_type, value, ComponentColumns::empty()],
        })
    }

    /// Returns the values to bind, in the column order of `idx_composite` without `rid`.
    pub fn values(&self) -> Vec<SqlValue> {
        let mut values = Vec::with_capacity(1 + 6 * MAX_COMPONENTS);
        values.push(SqlValue::Integer(self.param));
        for component in &self.components {
            values.extend(component.text.iter().cloned().map(SqlValue::Text));
            values.extend(component.numbers.iter().cloned());
        }
        values
    }

    /// Orders keys as the table's primary key does, closely enough to batch inserts.
    pub fn key_order(&self, other: &CompositeKey) -> Ordering {
        self.param.cmp(&other.param).then_with(|| {
            for (mine, theirs) in self.components.iter().zip(&other.components) {
                let order = mine
                    .text
                    .cmp(&theirs.text)
                    .then_with(|| compare_numbers(&mine.numbers, &theirs.numbers));
                if order != Ordering::Equal {
                    return order;
                }
            }
            Ordering::Equal
        })
    }
}

fn compare_numbers(a: &[SqlValue; 3], b: &[SqlValue; 3]) -> Ordering {
    let number = |value: &SqlValue| match value {
        SqlValue::Integer(n) => *n as f64,
        SqlValue::Real(n) => *n,
        _ => 0.0,
    };
    a.iter()
        .zip(b)
        .map(|(x, y)| number(x).total_cmp(&number(y)))
        .find(|order| *order != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}

/// Returns the columns of each row of one component.
fn part_columns(part: &CompositePart) -> Vec<ComponentColumns> {
    match part {
        CompositePart::Token(rows) => rows
            .iter()
            .map(|row| ComponentColumns::texts(row.code.as_deref(), row.system.as_deref(), None))
            .collect(),
        CompositePart::String(rows) => rows
            .iter()
            .map(|row| ComponentColumns::texts(Some(&row.value), Some(&row.exact), None))
            .collect(),
        CompositePart::Reference(rows) => rows
            .iter()
            .map(|row| {
                ComponentColumns::texts(
                    row.target_id.as_deref(),
                    row.target_type.as_deref(),
                    row.url.as_deref(),
                )
            })
            .collect(),
        CompositePart::Uri(rows) => rows
            .iter()
            .map(|row| ComponentColumns::texts(Some(&row.value), None, None))
            .collect(),
        CompositePart::Date(rows) => rows
            .iter()
            .map(|row| ComponentColumns {
                numbers: [
                    SqlValue::Integer(row.low),
                    SqlValue::Integer(row.high),
                    SqlValue::Integer(0),
                ],
                ..ComponentColumns::empty()
            })
            .collect(),
        CompositePart::Number(rows) => rows
            .iter()
            .map(|row| ComponentColumns {
                numbers: [
                    SqlValue::Real(row.low),
                    SqlValue::Real(row.high),
                    SqlValue::Real(row.value),
                ],
                ..ComponentColumns::empty()
            })
            .collect(),
        CompositePart::Quantity(rows) => rows
            .iter()
            .map(|row| ComponentColumns {
                numbers: [
                    SqlValue::Real(row.low),
                    SqlValue::Real(row.high),
                    SqlValue::Real(row.value),
                ],
                ..ComponentColumns::texts(
                    row.code.as_deref(),
                    row.system.as_deref(),
                    row.unit.as_deref(),
                )
            })
            .collect(),
    }
}

/// Column names of `idx_composite` in table order, without `rid`.
pub fn column_names() -> Vec<String> {
    let mut names = vec!["param".to_owned()];
    for index in 0..MAX_COMPONENTS {
        for slot in ["text1", "text2", "text3", "low", "high", "value"] {
            names.push(format!("c{index}_{slot}"));
        }
    }
    names
}

/// SQL of the insert into `idx_composite`, and of the delete by the whole key.
pub fn statements() -> [String; 2] {
    let names = column_names();
    let count = names.len() + 1;
    let placeholders: Vec<String> = (1..=count).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT OR IGNORE INTO idx_composite ({}, rid) VALUES ({})",
        names.join(", "),
        placeholders.join(", ")
    );
    let conditions: Vec<String> = names
        .iter()
        .chain(std::iter::once(&"rid".to_owned()))
        .enumerate()
        .map(|(i, name)| format!("{name} = ?{}", i + 1))
        .collect();
    let delete = format!(
        "DELETE FROM idx_composite WHERE {}",
        conditions.join(" AND ")
    );
    [insert, delete]
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_fhir_core::index::{QuantityRow, TokenRow};

    fn token(system: &str, code: &str) -> TokenRow {
        TokenRow {
            param: "code",
            system: Some(system.to_owned()),
            code: Some(code.to_owned()),
            text: None,
            identifier_type_system: None,
            identifier_type_code: None,
        }
    }

    #[test]
    fn composite_rows_are_combinations() {
        let quantity = QuantityRow {
            param: "value-quantity",
            value: 150.0,
            low: 149.5,
            high: 150.5,
            system: Some("http://unitsofmeasure.org".to_owned()),
            code: Some("cm".to_owned()),
            unit: Some("cm".to_owned()),
        };
        let row = CompositeRow {
            param: "code-value-quantity",
            components: vec![
                CompositePart::Token(vec![token("http://loinc.org", "8302-2"), token("s", "c")]),
                CompositePart::Quantity(vec![quantity]),
            ],
        };
        let keys = CompositeKey::from_composite(7, &row);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].components.len(), MAX_COMPONENTS);
        assert_eq!(keys[0].components[0].text[0], "8302-2");
        assert_eq!(keys[1].components[0].text[1], "s");
        assert_eq!(keys[0].components[1].numbers[2], SqlValue::Real(150.0));
        assert_eq!(keys[0].values().len(), column_names().len());
    }

    #[test]
    fn identifier_type_row_pairs_type_and_value() {
        let mut row = token("urn:mrn", "12345");
        assert!(CompositeKey::from_identifier_type(3, &row).is_none());
        row.identifier_type_system = Some("http://terminology.hl7.org/CodeSystem/v2-0203".into());
        row.identifier_type_code = Some("MR".to_owned());
        let key = CompositeKey::from_identifier_type(3, &row).unwrap();
        assert_eq!(key.components[0].text[0], "MR");
        assert_eq!(key.components[1].text[0], "12345");
        assert_eq!(key.components[1].text[1], "urn:mrn");
    }

    #[test]
    fn statements_bind_every_column() {
        let [insert, delete] = statements();
        let columns = column_names().len() + 1;
        assert!(insert.contains(&format!("?{columns})")));
        assert!(delete.ends_with(&format!("rid = ?{columns}")));
    }
}
