//! Case B5 and the file formats: whole lines for large resources and for text with
//! U+2028, U+2029 and emoji, and Parquet rows that equal the NDJSON lines.

use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array, StringArray};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

use crate::client::{BulkClient, entries};
use crate::fixture::{Hearth, observation, patient};

/// Text with the two JSON-legal characters that JavaScript treats as line breaks, and
/// characters outside the Basic Multilingual Plane.
const TRICKY: &str = "line\u{2028}separator\u{2029}paragraph 🧬🩺 👩🏽‍⚕️ end";

fn large_patient(id: &str, bytes: usize) -> Value {
    let mut text = String::with_capacity(bytes + 64);
    while text.len() < bytes {
        text.push_str(TRICKY);
        text.push(' ');
    }
    let mut resource = patient(id, "female");
    resource["extension"] = json!([{
        "url": "http://example.org/fhir/StructureDefinition/long-note",
        "valueString": text,
    }]);
    resource
}

#[test]
fn large_resource_is_one_whole_line() {
    let hearth = Hearth::start();
    let large = large_patient("large", 8 * 1024 * 1024 + 4096);
    assert!(large.to_string().len() > 8 * 1024 * 1024);
    hearth.put(&large);
    let mut small = patient("tricky", "other");
    small["name"][0]["text"] = json!(TRICKY);
    hearth.put(&small);
    let client = hearth.client();

    let manifest = client.export("$export?_type=Patient");
    let lines = client.lines_of(&manifest, "output");
    let by_id: BTreeMap<String, &Value> = lines
        .iter()
        .map(|(_, line)| (line["id"].as_str().unwrap_or_default().to_string(), line))
        .collect();
    assert_eq!(by_id.len(), lines.len(), "a resource was exported twice");
    let exported = by_id["large"];
    assert_eq!(
        exported["extension"][0]["valueString"], large["extension"][0]["valueString"],
        "the large resource changed"
    );
    assert_eq!(by_id["tricky"]["name"][0]["text"], TRICKY);

    let count: u64 = entries(&manifest, "output").iter().map(|e| e.2).sum();
    assert_eq!(count, lines.len() as u64, "count equals lines");

    let parquet = client.export("$export?_type=Patient&_outputFormat=parquet");
    let rows = parquet_rows(&client, &parquet);
    assert_eq!(rows.len(), lines.len(), "Parquet rows equal NDJSON lines");
    let parquet_count: u64 = entries(&parquet, "output").iter().map(|e| e.2).sum();
    assert_eq!(parquet_count, rows.len() as u64, "count equals rows");
}

/// Downloads the Parquet files of a manifest and returns their rows, each as column name
/// to text value (numbers as their decimal text).
fn parquet_rows(client: &BulkClient, manifest: &Value) -> Vec<BTreeMap<String, String>> {
    let mut rows = Vec::new();
    for (resource_type, url, count) in entries(manifest, "output") {
        let reply = client.download(&url);
        assert_eq!(reply.status, 200, "{url}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/vnd.apache.parquet")
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(reply.bytes.clone()))
            .expect("a Parquet file")
            .build()
            .expect("a Parquet reader");
        let mut file_rows = 0;
        for batch in reader {
            let batch = batch.expect("a record batch");
            let schema = batch.schema();
            for row in 0..batch.num_rows() {
                let mut values = BTreeMap::new();
                values.insert("type".to_string(), resource_type.clone());
                for (index, field) in schema.fields().iter().enumerate() {
                    let column = batch.column(index);
                    if column.is_null(row) {
                        continue;
                    }
                    let any = column.as_any();
                    let text = if let Some(strings) = any.downcast_ref::<StringArray>() {
                        strings.value(row).to_string()
                    } else if let Some(numbers) = any.downcast_ref::<Float64Array>() {
                        numbers.value(row).to_string()
                    } else {
                        continue;
                    };
                    values.insert(field.name().clone(), text);
                }
                rows.push(values);
            }
            file_rows += batch.num_rows();
        }
        assert_eq!(file_rows as u64, count, "count of {url} equals its rows");
    }
    rows
}

#[test]
fn parquet_rows_equal_ndjson_lines() {
    let hearth = Hearth::start();
    hearth.put(&patient("pq", "female"));
    hearth.put(&observation("pq-glucose", "pq", "2345-7", 123.5));
    let client = hearth.client();

    let ndjson = client.export("$export?_type=Patient,Observation,Encounter,Claim");
    let parquet =
        client.export("$export?_type=Patient,Observation,Encounter,Claim&_outputFormat=parquet");
    let lines = client.lines_of(&ndjson, "output");
    let rows = parquet_rows(&client, &parquet);
    assert_eq!(rows.len(), lines.len());

    let mut line_keys: Vec<String> = lines
        .iter()
        .map(|(t, l)| format!("{t}/{}", l["id"].as_str().unwrap_or_default()))
        .collect();
    let mut row_keys: Vec<String> = rows
        .iter()
        .map(|r| format!("{}/{}", r["type"], r.get("id").map_or("", String::as_str)))
        .collect();
    line_keys.sort();
    row_keys.sort();
    assert_eq!(row_keys, line_keys, "the same resources in both formats");

    let glucose = rows
        .iter()
        .find(|r| r.get("id").map(String::as_str) == Some("pq-glucose"))
        .expect("the created Observation has a row");
    assert_eq!(glucose["value_quantity"], "123.5");
    assert_eq!(glucose["code_code"], "2345-7");
    assert_eq!(glucose["patient"], "Patient/pq");
}
