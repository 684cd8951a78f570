//! Index extraction: the search index rows the clinical data repository stores for a
//! resource, one set per search parameter of its type.
//!
//! [`extract`] evaluates every parameter of the type (see [`crate::search_params`]) and
//! turns the resulting elements into rows by parameter type. Elements of a shape the type
//! cannot index (a Quantity under a token parameter, an unparsable date) are skipped, so
//! extraction accepts any JSON and never fails. Identical rows of one parameter are stored
//! once.

mod dates;
mod numeric;
mod references;
mod rows;
mod strings;
mod tokens;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::hash::Hash;

use serde_json::Value;

use crate::fhirpath::Node;
use crate::reference::LocalBases;
use crate::resource_types;
use crate::search_params::{self, ParamType, SearchParam};

pub use rows::{
    CompositePart, CompositeRow, DateRow, IndexRows, NumberRow, PositionRow, QuantityRow,
    ReferenceRow, StringRow, TokenRow, UriRow,
};
pub use strings::normalize;

/// Extracts the index rows of `resource`, a resource of type `resource_type`, with the
/// target type and id of absolute references filled in only for this server's `bases`.
pub fn extract_local(resource_type: &str, resource: &Value, bases: &LocalBases) -> IndexRows {
    let mut rows = extract(resource_type, resource);
    rows.drop_foreign_targets(bases);
    rows
}

/// Extracts the index rows of `resource`, a resource of type `resource_type`.
///
/// Parameters are those of [`search_params::for_type`]; a type that is not an R4 resource
/// type yields no rows. `resource_type` decides which parameters apply, whatever the
/// resource's own `resourceType` contains.
///
/// The reference rows of absolute URLs ending in `Type/id` carry that type and id whatever
/// server the URL names. Use [`extract_local`], or [`IndexRows::drop_foreign_targets`]
/// on the result, before treating them as resources of this server.
pub fn extract(resource_type: &str, resource: &Value) -> IndexRows {
    let mut rows = IndexRows::default();
    let Some(type_name) = resource_types::lookup(resource_type) else {
        return rows;
    };
    let root = Node {
        value: resource,
        type_name: Some(type_name),
        element: None,
    };

    for param in search_params::for_type(type_name) {
        let nodes = param.path.evaluate_at(root, root);
        if nodes.is_empty() {
            continue;
        }
        match param.param_type {
            ParamType::Composite => add_composite_rows(&mut rows, param, root, &nodes),
            param_type => add_rows(&mut rows, param_type, &param.code, &nodes),
        }
    }
    rows
}

/// Converts `nodes` into rows of `param_type` for the parameter `code`.
fn add_rows(rows: &mut IndexRows, param_type: ParamType, code: &'static str, nodes: &[Node<'_>]) {
    match param_type {
        ParamType::String => {
            let start = rows.strings.len();
            for node in nodes {
                strings::add_rows(code, node, &mut rows.strings);
            }
            remove_repeated(&mut rows.strings, start);
        }
        ParamType::Token => {
            let start = rows.tokens.len();
            for node in nodes {
                tokens::add_rows(code, node, &mut rows.tokens);
            }
            remove_repeated(&mut rows.tokens, start);
        }
        ParamType::Reference => {
            let start = rows.references.len();
            for node in nodes {
                references::add_rows(code, node, &mut rows.references);
            }
            remove_repeated(&mut rows.references, start);
        }
        ParamType::Uri => {
            let start = rows.uris.len();
            for node in nodes {
                references::add_uri_rows(code, node, &mut rows.uris);
            }
            remove_repeated(&mut rows.uris, start);
        }
        ParamType::Date => {
            let start = rows.dates.len();
            for node in nodes {
                dates::add_rows(code, node, &mut rows.dates);
            }
            remove_repeated(&mut rows.dates, start);
        }
        ParamType::Number => {
            let start = rows.numbers.len();
            for node in nodes {
                numeric::add_number_rows(code, node, &mut rows.numbers);
            }
            remove_repeated(&mut rows.numbers, start);
        }
        ParamType::Quantity => {
            let start = rows.quantities.len();
            for node in nodes {
                numeric::add_quantity_rows(code, node, &mut rows.quantities);
            }
            remove_repeated(&mut rows.quantities, start);
        }
        ParamType::Special => {
            let start = rows.positions.len();
            for node in nodes {
                numeric::add_position_rows(code, node, &mut rows.positions);
            }
            remove_repeated(&mut rows.positions, start);
        }
        // Composites nest other types and are handled by `add_composite_rows`.
        ParamType::Composite => {}
    }
}

/// Adds one composite row per element the composite's expression selects (the Observation
/// itself, or each `component`), pairing the rows its components yield from that element
/// only. An element that lacks any component yields no row.
fn add_composite_rows(
    rows: &mut IndexRows,
    param: &'static SearchParam,
    root: Node<'_>,
    focuses: &[Node<'_>],
) {
    let start = rows.composites.len();
    for focus in focuses {
        let mut components = Vec::with_capacity(param.components.len());
        for component in &param.components {
            let nodes = component.path.evaluate_at(root, *focus);
            let mut part_rows = IndexRows::default();
            add_rows(
                &mut part_rows,
                component.param_type,
                &component.code,
                &nodes,
            );
            match CompositePart::take(component.param_type, part_rows) {
                Some(part) => components.push(part),
                None => break,
            }
        }
        if components.len() == param.components.len() {
            rows.composites.push(CompositeRow {
                param: &param.code,
                components,
            });
        }
    }
    remove_repeated(&mut rows.composites, start);
}

/// Removes rows from `rows[start..]` that repeat an earlier row of that range, keeping the
/// first of each and the order.
fn remove_repeated<T: Eq + Hash + Clone>(rows: &mut Vec<T>, start: usize) {
    let added = rows.len() - start;
    if added < 2 {
        return;
    }
    if added <= 8 {
        let mut index = start + 1;
        while index < rows.len() {
            if rows[start..index].contains(&rows[index]) {
                rows.remove(index);
            } else {
                index += 1;
            }
        }
        return;
    }
    let mut seen = HashSet::with_capacity(added);
    let mut index = 0;
    rows.retain(|row| {
        index += 1;
        index <= start || seen.insert(row.clone())
    });
}
