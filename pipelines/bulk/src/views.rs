//! Table shapes of the Parquet export: SQL-on-FHIR v2 style ViewDefinitions.
//!
//! Each view in `views/` gives one resource type a fixed list of columns, each a FHIRPath
//! expression evaluated against the resource with the subset in `hearth-fhir-core`. The
//! schema therefore stays the same whatever extensions the data carries. A view yields
//! exactly one row per resource, so the rows of a Parquet file equal the lines of the
//! NDJSON file of the same export: views with `forEach`, `forEachOrNull`, `unionAll` or a
//! `where` filter are rejected. Types without a view get the generic shape: `id`,
//! `last_updated` and the whole resource as JSON text.
//!
//! A column that is not a collection takes the first value when the expression returns
//! several (SQL-on-FHIR calls that an error); `collection: true` columns hold a JSON array.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use hearth_fhir_core::fhirpath::{Expression, Node};
use serde_json::Value;

use crate::{Error, Result};

/// The ViewDefinitions kept in the repository, by resource type.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "AllergyIntolerance",
        include_str!("../views/AllergyIntolerance.json"),
    ),
    ("Claim", include_str!("../views/Claim.json")),
    ("Condition", include_str!("../views/Condition.json")),
    ("Encounter", include_str!("../views/Encounter.json")),
    (
        "ExplanationOfBenefit",
        include_str!("../views/ExplanationOfBenefit.json"),
    ),
    ("Immunization", include_str!("../views/Immunization.json")),
    (
        "MedicationRequest",
        include_str!("../views/MedicationRequest.json"),
    ),
    ("Observation", include_str!("../views/Observation.json")),
    ("Patient", include_str!("../views/Patient.json")),
    ("Procedure", include_str!("../views/Procedure.json")),
];

static VIEWS: LazyLock<HashMap<&'static str, Arc<View>>> = LazyLock::new(|| {
    BUILT_IN
        .iter()
        .map(|(resource_type, text)| {
            let view = View::parse(text).unwrap_or_else(|error| {
                panic!("the built-in view of {resource_type} is invalid: {error}")
            });
            (*resource_type, Arc::new(view))
        })
        .collect()
});

/// Column value types, from the ViewDefinition column `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Text,
    Boolean,
    Integer,
    Decimal,
    /// The whole resource as JSON text, for the generic shape.
    Resource,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    expression: Option<Expression>,
    kind: ColumnKind,
    collection: bool,
}

/// One compiled view: the columns of one resource type.
#[derive(Debug, Clone)]
pub struct View {
    pub resource_type: String,
    pub name: String,
    columns: Vec<Column>,
    schema: SchemaRef,
}

impl View {
    /// Returns the view of a resource type: a built-in ViewDefinition, or the generic shape.
    pub fn for_type(resource_type: &str) -> Arc<View> {
        match VIEWS.get(resource_type) {
            Some(view) => view.clone(),
            None => Arc::new(View::generic(resource_type)),
        }
    }

    /// Compiles a ViewDefinition.
    pub fn parse(text: &str) -> Result<View> {
        let definition: Value =
            serde_json::from_str(text).map_err(|e| Error::View(format!("not JSON: {e}")))?;
        if definition.get("resourceType").and_then(Value::as_str) != Some("ViewDefinition") {
            return Err(Error::View(
                "resourceType is not ViewDefinition".to_string(),
            ));
        }
        let resource_type = definition
            .get("resource")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::View("resource is missing".to_string()))?
            .to_string();
        let name = definition
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&resource_type)
            .to_string();
        if definition.get("where").is_some() {
            return Err(Error::View(format!(
                "view {name}: where would drop resources, so rows would not match the NDJSON lines"
            )));
        }
        let mut columns = Vec::new();
        for select in definition
            .get("select")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect_columns(&name, select, &mut columns)?;
        }
        if columns.is_empty() {
            return Err(Error::View(format!("view {name} has no columns")));
        }
        Ok(View::new(resource_type, name, columns))
    }

    fn generic(resource_type: &str) -> View {
        let column = |name: &str, path: Option<&str>, kind| Column {
            name: name.to_string(),
            expression: path.map(|p| Expression::parse(p).expect("generic view paths parse")),
            kind,
            collection: false,
        };
        let columns = vec![
            column("id", Some("id"), ColumnKind::Text),
            column("last_updated", Some("meta.lastUpdated"), ColumnKind::Text),
            column("resource", None, ColumnKind::Resource),
        ];
        View::new(
            resource_type.to_string(),
            resource_type.to_lowercase(),
            columns,
        )
    }

    fn new(resource_type: String, name: String, columns: Vec<Column>) -> View {
        let fields: Vec<Field> = columns
            .iter()
            .map(|column| Field::new(&column.name, data_type(column), true))
            .collect();
        View {
            resource_type,
            name,
            columns,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }
}

fn collect_columns(view: &str, select: &Value, columns: &mut Vec<Column>) -> Result<()> {
    for key in ["forEach", "forEachOrNull", "unionAll"] {
        if select.get(key).is_some() {
            return Err(Error::View(format!(
                "view {view}: {key} yields other than one row per resource, which the export does not allow"
            )));
        }
    }
    for column in select
        .get("column")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = column
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::View(format!("view {view}: a column has no name")))?;
        let path = column
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::View(format!("view {view}: column {name} has no path")))?;
        let expression = Expression::parse(path)
            .map_err(|e| Error::View(format!("view {view}: column {name}: path '{path}': {e}")))?;
        let kind = match column.get("type").and_then(Value::as_str) {
            Some("boolean") => ColumnKind::Boolean,
            Some("integer" | "positiveInt" | "unsignedInt" | "integer64") => ColumnKind::Integer,
            Some("decimal") => ColumnKind::Decimal,
            _ => ColumnKind::Text,
        };
        columns.push(Column {
            name: name.to_string(),
            expression: Some(expression),
            kind,
            collection: column.get("collection").and_then(Value::as_bool) == Some(true),
        });
    }
    for nested in select
        .get("select")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_columns(view, nested, columns)?;
    }
    Ok(())
}

fn data_type(column: &Column) -> DataType {
    if column.collection {
        return DataType::Utf8;
    }
    match column.kind {
        ColumnKind::Boolean => DataType::Boolean,
        ColumnKind::Integer => DataType::Int64,
        ColumnKind::Decimal => DataType::Float64,
        ColumnKind::Text | ColumnKind::Resource => DataType::Utf8,
    }
}

/// Rows of one view being collected into Arrow arrays.
pub struct RowBuilder {
    view: Arc<View>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    rows: usize,
}

impl RowBuilder {
    pub fn new(view: Arc<View>) -> Self {
        let builders = view
            .columns
            .iter()
            .map(|column| -> Box<dyn ArrayBuilder> {
                match data_type(column) {
                    DataType::Boolean => Box::new(BooleanBuilder::new()),
                    DataType::Int64 => Box::new(Int64Builder::new()),
                    DataType::Float64 => Box::new(Float64Builder::new()),
                    _ => Box::new(StringBuilder::new()),
                }
            })
            .collect();
        RowBuilder {
            view,
            builders,
            rows: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds the row of one resource; `text` is its JSON as exported.
    pub fn append(&mut self, resource: &Value, text: &str) {
        for (column, builder) in self.view.columns.iter().zip(self.builders.iter_mut()) {
            let values = match &column.expression {
                Some(expression) => expression.evaluate(resource),
                None => Vec::new(),
            };
            append_value(column, &values, text, builder.as_mut());
        }
        self.rows += 1;
    }

    /// Takes the rows collected so far as a record batch.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        self.rows = 0;
        RecordBatch::try_new(self.view.schema(), arrays)
            .map_err(|e| Error::View(format!("view {}: {e}", self.view.name)))
    }
}

fn append_value(column: &Column, values: &[Node<'_>], text: &str, builder: &mut dyn ArrayBuilder) {
    let any = builder.as_any_mut();
    if column.kind == ColumnKind::Resource {
        if let Some(strings) = any.downcast_mut::<StringBuilder>() {
            strings.append_value(text);
        }
        return;
    }
    if column.collection {
        if let Some(strings) = any.downcast_mut::<StringBuilder>() {
            if values.is_empty() {
                strings.append_null();
            } else {
                let array: Vec<&Value> = values.iter().map(|node| node.value).collect();
                strings.append_value(serde_json::to_string(&array).unwrap_or_default());
            }
        }
        return;
    }
    let first = values.first().map(|node| node.value);
    if let Some(strings) = any.downcast_mut::<StringBuilder>() {
        match first {
            None | Some(Value::Null) => strings.append_null(),
            Some(Value::String(text)) => strings.append_value(text),
            Some(other) => strings.append_value(other.to_string()),
        }
    } else if let Some(booleans) = any.downcast_mut::<BooleanBuilder>() {
        booleans.append_option(first.and_then(Value::as_bool));
    } else if let Some(integers) = any.downcast_mut::<Int64Builder>() {
        integers.append_option(first.and_then(Value::as_i64));
    } else if let Some(decimals) = any.downcast_mut::<Float64Builder>() {
        let number = first.and_then(|value| match value {
            Value::String(text) => text.parse().ok(),
            other => other.as_f64(),
        });
        decimals.append_option(number);
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Float64Array, StringArray};
    use serde_json::json;

    use super::*;

    #[test]
    fn built_in_views_compile() {
        for (resource_type, _) in BUILT_IN {
            let view = View::for_type(resource_type);
            assert_eq!(view.resource_type, *resource_type);
            assert!(view.column_names().contains(&"id"), "{resource_type}");
        }
    }

    #[test]
    fn observation_row_has_typed_values() {
        let observation = json!({
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
            "subject": {"reference": "Patient/p1"},
            "valueQuantity": {"value": 7.5, "unit": "mmol/L"},
            "extension": [{"url": "http://example.org/x", "valueString": "ignored"}]
        });
        let view = View::for_type("Observation");
        let mut rows = RowBuilder::new(view.clone());
        rows.append(&observation, &observation.to_string());
        let batch = rows.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), view.schema());

        let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
        let code = column("code_code");
        let code = code.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(code.value(0), "2339-0");
        let value = column("value_quantity");
        let value = value.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(value.value(0), 7.5);
        let patient = column("patient");
        let patient = patient.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(patient.value(0), "Patient/p1");
        assert!(column("value_string").is_null(0));
    }

    #[test]
    fn generic_view_keeps_the_resource() {
        let device = json!({"resourceType": "Device", "id": "d1"});
        let mut rows = RowBuilder::new(View::for_type("Device"));
        rows.append(&device, "{\"resourceType\":\"Device\",\"id\":\"d1\"}");
        let batch = rows.finish().unwrap();
        let resource = batch
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert!(resource.value(0).contains("\"d1\""));
    }

    #[test]
    fn views_that_change_row_counts_are_rejected() {
        let text = r#"{"resourceType": "ViewDefinition", "resource": "Patient",
            "select": [{"forEach": "name", "column": [{"name": "f", "path": "family"}]}]}"#;
        assert!(View::parse(text).is_err());
    }
}
