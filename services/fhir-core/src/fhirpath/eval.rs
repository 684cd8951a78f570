//! Evaluates an expression tree over a JSON resource.

use std::collections::HashSet;

use serde_json::Value;

use super::Node;
use super::parser::{Expr, Function, Logic, TypeOperator};
use super::resolve::target_type;
use super::types::{choice_type, is_type};

static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);

/// Values an evaluation can reach besides its focus.
#[derive(Clone, Copy)]
pub(super) struct Context<'a> {
    /// The resource for `%resource` and for resolving `#id` references.
    pub resource: Node<'a>,
}

impl Expr {
    /// Evaluates the expression with `focus` as the input collection.
    pub(super) fn evaluate<'a>(
        &'a self,
        context: Context<'a>,
        focus: &[Node<'a>],
    ) -> Vec<Node<'a>> {
        match self {
            Expr::This => focus.to_vec(),
            Expr::Resource => vec![context.resource],
            Expr::TypeRoot(name) => focus
                .iter()
                .filter(|node| node.fhir_type().is_some_and(|actual| is_type(actual, name)))
                .copied()
                .collect(),
            Expr::Literal(value) => vec![Node {
                value,
                type_name: super::types::infer_type(value).or(Some("string")),
                element: None,
            }],
            Expr::Member(receiver, name) => {
                let mut out = Vec::new();
                match receiver.as_ref() {
                    // Most paths start here, so reading the focus directly saves building
                    // the receiver's collection.
                    Expr::This => focus
                        .iter()
                        .for_each(|node| navigate(*node, name, &mut out)),
                    Expr::TypeRoot(type_name) => {
                        for node in focus {
                            if node.fhir_type().is_some_and(|t| is_type(t, type_name)) {
                                navigate(*node, name, &mut out);
                            }
                        }
                    }
                    _ => {
                        for node in receiver.evaluate(context, focus) {
                            navigate(node, name, &mut out);
                        }
                    }
                }
                out
            }
            Expr::Index(receiver, index) => {
                let items = receiver.evaluate(context, focus);
                let position = index.evaluate(context, focus);
                match position.as_slice() {
                    [node] => node
                        .value
                        .as_u64()
                        .and_then(|i| usize::try_from(i).ok())
                        .and_then(|i| items.get(i).copied())
                        .into_iter()
                        .collect(),
                    _ => Vec::new(),
                }
            }
            Expr::Call(receiver, function) => {
                let items = receiver.evaluate(context, focus);
                call(function, context, items)
            }
            Expr::TypeOperator(receiver, operator, type_name) => {
                let items = receiver.evaluate(context, focus);
                match operator {
                    TypeOperator::As => items
                        .into_iter()
                        .filter(|node| node.fhir_type().is_none_or(|t| is_type(t, type_name)))
                        .collect(),
                    TypeOperator::Is => match items.as_slice() {
                        [node] => {
                            let matches = node.fhir_type().is_some_and(|t| is_type(t, type_name));
                            boolean(matches)
                        }
                        _ => Vec::new(),
                    },
                }
            }
            Expr::Union(branches) => {
                let mut out = Vec::new();
                for (branch, _) in branches {
                    out.extend(branch.evaluate(context, focus));
                }
                remove_repeated_items(&mut out);
                out
            }
            Expr::Equality(left, negated, right) => {
                let left = left.evaluate(context, focus);
                let right = right.evaluate(context, focus);
                if left.is_empty() || right.is_empty() {
                    return Vec::new();
                }
                let equal = left.len() == right.len()
                    && left
                        .iter()
                        .zip(&right)
                        .all(|(l, r)| values_equal(l.value, r.value));
                boolean(equal != *negated)
            }
            Expr::Logic(left, logic, right) => {
                let left = as_boolean(&left.evaluate(context, focus));
                let right = as_boolean(&right.evaluate(context, focus));
                combine(*logic, left, right)
                    .map(boolean)
                    .unwrap_or_default()
            }
        }
    }
}

fn call<'a>(function: &'a Function, context: Context<'a>, items: Vec<Node<'a>>) -> Vec<Node<'a>> {
    match function {
        Function::Where(criteria) => items
            .into_iter()
            .filter(|node| as_boolean(&criteria.evaluate(context, &[*node])) == Some(true))
            .collect(),
        Function::Exists(None) => boolean(!items.is_empty()),
        Function::Exists(Some(criteria)) => boolean(
            items
                .iter()
                .any(|node| as_boolean(&criteria.evaluate(context, &[*node])) == Some(true)),
        ),
        Function::Empty => boolean(items.is_empty()),
        Function::Not => match as_boolean(&items) {
            Some(value) => boolean(!value),
            None => Vec::new(),
        },
        Function::First => items.first().copied().into_iter().collect(),
        Function::Last => items.last().copied().into_iter().collect(),
        Function::Resolve => items
            .into_iter()
            .filter_map(|node| {
                let resolved = target_type(node.value, context.resource.value)?;
                Some(Node {
                    type_name: Some(resolved),
                    ..node
                })
            })
            .collect(),
        Function::OfType(type_name) => items
            .into_iter()
            .filter(|node| node.fhir_type().is_some_and(|t| is_type(t, type_name)))
            .collect(),
        Function::Extension(url) => {
            let mut extensions = Vec::new();
            for node in items {
                navigate(node, "extension", &mut extensions);
            }
            extensions.retain(|node| node.value.get("url").and_then(Value::as_str) == Some(url));
            extensions
        }
    }
}

/// Appends the children of `node` named `name`, flattening arrays and dropping JSON nulls
/// (the placeholders R4 JSON uses where only a primitive's `_name` extension exists).
/// When `name` itself is absent it looks for a choice element `name[x]`, such as
/// `valueQuantity` for `value`, and records the type from the key's suffix.
fn navigate<'a>(node: Node<'a>, name: &'a str, out: &mut Vec<Node<'a>>) {
    let Value::Object(map) = node.value else {
        return;
    };
    if let Some(child) = map.get(name) {
        push_flattened(child, None, name, out);
        return;
    }
    let first_byte = name.as_bytes().first();
    for (key, child) in map {
        // Comparing the first byte first skips most keys without a string comparison.
        if key.as_bytes().first() != first_byte {
            continue;
        }
        let Some(suffix) = key.strip_prefix(name) else {
            continue;
        };
        if let Some(type_name) = choice_type(suffix) {
            push_flattened(child, Some(type_name), name, out);
        }
    }
}

fn push_flattened<'a>(
    value: &'a Value,
    type_name: Option<&'static str>,
    element: &'a str,
    out: &mut Vec<Node<'a>>,
) {
    let node = |value| Node {
        value,
        type_name,
        element: Some(element),
    };
    match value {
        Value::Null => {}
        Value::Array(items) => out.extend(items.iter().filter(|v| !v.is_null()).map(node)),
        _ => out.push(node(value)),
    }
}

/// Removes later occurrences of an item reached twice, as `|` does. Items are the same
/// when they are the same place in the JSON with the same type.
fn remove_repeated_items(nodes: &mut Vec<Node<'_>>) {
    let mut seen = HashSet::with_capacity(nodes.len());
    nodes.retain(|node| seen.insert((std::ptr::from_ref(node.value), node.type_name)));
}

fn boolean<'a>(value: bool) -> Vec<Node<'a>> {
    vec![Node {
        value: if value { &TRUE } else { &FALSE },
        type_name: Some("boolean"),
        element: None,
    }]
}

/// Converts a collection to a boolean the way FHIRPath's boolean operators do: empty is
/// unknown, a single boolean is itself, any other single item is true. More than one item
/// is an error in FHIRPath, treated as unknown here.
fn as_boolean(items: &[Node<'_>]) -> Option<bool> {
    match items {
        [node] => Some(node.value.as_bool().unwrap_or(true)),
        _ => None,
    }
}

/// Three-valued logic, with `None` as the empty collection.
fn combine(logic: Logic, left: Option<bool>, right: Option<bool>) -> Option<bool> {
    match logic {
        Logic::And => match (left, right) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Logic::Or => match (left, right) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Logic::Xor => Some(left? != right?),
        Logic::Implies => match (left, right) {
            (Some(false), _) | (_, Some(true)) => Some(true),
            (Some(true), Some(false)) => Some(false),
            _ => None,
        },
    }
}

/// FHIRPath `=` on single items: numbers compare by value, other values by JSON equality.
fn values_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(l), Value::Number(r)) => l.as_f64() == r.as_f64(),
        _ => left == right,
    }
}
