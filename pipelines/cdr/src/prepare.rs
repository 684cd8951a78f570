//! The work on a resource event that needs no repository, done before the writer applies it.
//!
//! [`prepare`] decodes the event. For each entry whose outcome it can foresee, it then does
//! what the writer would otherwise do: parse the resource, rewrite its references to other
//! entries, set `id` and `meta` as for version 1, extract its index rows, then serialize and
//! compress it.
//! The writer uses that work when the entry turns out to create a new resource, which is
//! what loads do; otherwise it starts again from the prepared JSON.
//!
//! An entry is prepared only when the writer would resolve every reference in it from the
//! event alone: no entry of the event has search criteria (which can change the `Type/id`
//! an entry writes), and no reference is conditional or a placeholder that names no entry.
//! Such references need the repository and are left to the writer.

use std::collections::HashMap;

use hearth_fhir_core::index::{self, IndexRows};
use hearth_fhir_core::reference::{ReferenceKind, classify, rewrite_references};
use hearth_log::Record;
use hearth_schemas::{ResourceAction, ResourceOperation, ResourceTransaction, TransactionKind};
use serde_json::Value;

use crate::body;
use crate::write::set_identity;

/// A decoded resource event and the work done ahead on its entries.
pub struct PreparedEvent {
    pub(crate) decoded: Result<DecodedEvent, String>,
}

pub(crate) struct DecodedEvent {
    pub event: ResourceTransaction,
    /// One slot per entry of the event; `None` for entries left to the writer.
    pub entries: Vec<Option<PreparedEntry>>,
}

/// An entry's resource as it is stored when the entry creates it.
#[derive(Debug)]
pub(crate) struct PreparedEntry {
    /// The compressed resource JSON with references rewritten, `id` set, and
    /// `meta.versionId` 1 and `meta.lastUpdated` from the event.
    pub body: Vec<u8>,
    /// The index rows of that JSON as [`index::extract`] makes them. The writer drops the
    /// targets of absolute references to other servers, because which bases are local
    /// is a setting of the projection, which preparing cannot see.
    pub index: Box<IndexRows>,
}

/// Events with fewer entries are prepared on one thread, because starting threads would
/// cost more than it saves.
const MIN_ENTRIES_TO_SPLIT: usize = 64;

/// Threads that prepare the entries of one event, at most.
const MAX_THREADS_PER_EVENT: usize = 4;

/// Decodes `record` and prepares what can be prepared of its entries.
pub fn prepare(record: &Record) -> PreparedEvent {
    let decoded = match hearth_schemas::decode::<ResourceTransaction>(&record.value) {
        Ok(event) => {
            let entries = prepare_entries(&event);
            Ok(DecodedEvent { event, entries })
        }
        Err(error) => Err(error.to_string()),
    };
    PreparedEvent { decoded }
}

pub(crate) fn prepare_entries(event: &ResourceTransaction) -> Vec<Option<PreparedEntry>> {
    // Entries are independent of each other here, so a large event is split across cores:
    // the writer waits for it, and a load request waits for the writer.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_THREADS_PER_EVENT);
    prepare_entries_on(event, threads)
}

/// Prepares the entries of `event` on up to `threads` threads.
fn prepare_entries_on(event: &ResourceTransaction, threads: usize) -> Vec<Option<PreparedEntry>> {
    let has_criteria = event
        .entries
        .iter()
        .any(|entry| entry.if_none_exist.is_some() || entry.criteria.is_some());
    if has_criteria {
        return event.entries.iter().map(|_| None).collect();
    }

    let last_updated = crate::apply::last_updated(event);
    let batch = matches!(event.kind, TransactionKind::Batch);
    // A batch applies each entry on its own, so an entry's placeholders resolve only to its
    // own `fullUrl`.
    let event_urls = if batch {
        HashMap::new()
    } else {
        full_urls(&event.entries)
    };
    let prepare_all = |entries: &[ResourceOperation]| -> Vec<Option<PreparedEntry>> {
        entries
            .iter()
            .map(|entry| {
                if batch {
                    let urls = full_urls(std::slice::from_ref(entry));
                    prepare_entry(entry, &urls, last_updated)
                } else {
                    prepare_entry(entry, &event_urls, last_updated)
                }
            })
            .collect()
    };

    if threads < 2 || event.entries.len() < MIN_ENTRIES_TO_SPLIT {
        return prepare_all(&event.entries);
    }
    let chunk = event.entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = event
            .entries
            .chunks(chunk)
            .map(|entries| scope.spawn(|| prepare_all(entries)))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| {
                part.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Maps each entry's `fullUrl` to the `Type/id` it writes, a later entry replacing an
/// earlier one with the same `fullUrl`, as the writer does.
fn full_urls(entries: &[ResourceOperation]) -> HashMap<&str, String> {
    let mut urls = HashMap::with_capacity(entries.len());
    for entry in entries {
        if let (Some(url), Some(id)) = (entry.full_url.as_deref(), entry.id.as_deref()) {
            urls.insert(url, format!("{}/{id}", entry.resource_type));
        }
    }
    urls
}

fn prepare_entry(
    entry: &ResourceOperation,
    full_urls: &HashMap<&str, String>,
    last_updated: i64,
) -> Option<PreparedEntry> {
    if !matches!(
        entry.action,
        ResourceAction::Create | ResourceAction::Update
    ) {
        return None;
    }
    let id = entry.id.as_deref()?;
    let mut resource: Value = serde_json::from_str(entry.resource.as_deref()?).ok()?;
    if resource.get("resourceType").and_then(Value::as_str) != Some(entry.resource_type.as_str()) {
        return None;
    }
    rewrite_references(&mut resource, &mut |reference: &mut String| {
        if let Some(target) = full_urls.get(reference.as_str()) {
            reference.clone_from(target);
            return Ok(());
        }
        match classify(reference) {
            ReferenceKind::Placeholder(_) | ReferenceKind::Conditional { .. } => Err(()),
            _ => Ok(()),
        }
    })
    .ok()?;

    set_identity(&mut resource, id, 1, last_updated);
    let json = serde_json::to_string(&resource).ok()?;
    let index = Box::new(index::extract(&entry.resource_type, &resource));
    Some(PreparedEntry {
        body: body::compress(&json),
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_event_prepares_like_one_thread() {
        let entries = (0..150)
            .map(|n| ResourceOperation {
                action: ResourceAction::Update,
                resource_type: "Observation".to_string(),
                id: Some(format!("o{n}")),
                full_url: Some(format!("urn:uuid:o{n}")),
                resource: Some(format!(
                    r#"{{"resourceType":"Observation","status":"final","code":{{"text":"n{n}"}},"hasMember":[{{"reference":"urn:uuid:o{}"}}]}}"#,
                    (n + 1) % 150
                )),
                if_match: None,
                if_none_exist: None,
                criteria: None,
            })
            .collect();
        let event = ResourceTransaction {
            event_id: "e1".to_string(),
            occurred_at: 1_780_000_000_000_000,
            site_id: "default".to_string(),
            kind: TransactionKind::Load,
            entries,
            client_id: None,
            user_id: None,
            request_id: None,
        };

        let one = prepare_entries_on(&event, 1);
        let three = prepare_entries_on(&event, 3);
        assert_eq!(one.len(), 150);
        assert!(one.iter().all(Option::is_some));
        assert_eq!(format!("{one:?}"), format!("{three:?}"));
    }
}
