//! A compiled subset of FHIRPath, enough for every expression of the R4 search parameters.
//!
//! Supported:
//! - paths (`Observation.code.coding`), with arrays flattened and JSON nulls dropped;
//!   primitive extensions (`_name` keys) are never visited;
//! - choice elements: `Observation.value` reaches `valueQuantity`, `valueString`, ... and
//!   each result remembers the type from the key's suffix;
//! - a leading type name (`Observation.`, `Resource.`, `DomainResource.`), which keeps the
//!   focus only when it is of that type;
//! - `|`, `=`, `!=`, `and`, `or`, `xor`, `implies`, `[n]`;
//! - `is T`, `as T`, `.is(T)`, `.as(T)`, `.ofType(T)`, with `FHIR.` or `System.` prefixes;
//! - `where(...)`, `exists()`, `exists(...)`, `empty()`, `not()`, `first()`, `last()`,
//!   `extension('url')`, `resolve()`;
//! - literals `'text'`, `true`, `false`, integers and decimals; `$this`; `%resource`,
//!   `%rootResource` and `%context`, which all mean the resource being evaluated.
//!
//! `resolve()` fetches nothing: it returns the Reference itself, typed with the resource
//! type its `reference` or `type` names, so `where(resolve() is Patient)` works. Anything
//! else (arithmetic, ordering comparisons, other functions) fails to parse with
//! [`Error::FhirPath`](crate::error::Error::FhirPath).

mod eval;
mod lexer;
mod parser;
pub(crate) mod resolve;
mod types;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

use crate::error::Result;
use eval::Context;
use parser::Expr;

pub use types::is_type;

/// One item of an evaluation result, borrowed from the resource (or, for boolean results
/// and literals, from static or expression-owned values).
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pub value: &'a Value,
    /// The FHIR type when the evaluation showed it: a choice suffix (`Quantity` for
    /// `valueQuantity`), the target type after `resolve()`, the type of a literal, or
    /// `boolean` for the result of an operator. `None` for ordinary elements, whose declared
    /// type this crate does not track.
    pub type_name: Option<&'static str>,
    /// The element name the item was read from, without any choice suffix (`value` for
    /// `valueQuantity`). `None` for the resource itself and for computed values.
    pub element: Option<&'a str>,
}

impl<'a> Node<'a> {
    /// Wraps a resource as the root of an evaluation, typed from its `resourceType`.
    pub fn resource(value: &'a Value) -> Self {
        Node {
            value,
            type_name: types::infer_type(value),
            element: None,
        }
    }

    /// Returns the FHIR type: [`Node::type_name`] when known, otherwise what the JSON shows
    /// (booleans, numbers and resources).
    pub fn fhir_type(&self) -> Option<&'static str> {
        self.type_name.or_else(|| types::infer_type(self.value))
    }
}

/// A parsed FHIRPath expression, ready to evaluate any number of times.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    text: String,
    tree: Expr,
}

impl Expression {
    /// Parses `text`, failing on syntax outside the supported subset.
    pub fn parse(text: &str) -> Result<Self> {
        let tree = parser::parse(text)?;
        Ok(Expression {
            text: text.to_owned(),
            tree,
        })
    }

    /// Returns the source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the expression with `resource` as both focus and `%resource`.
    pub fn evaluate<'a>(&'a self, resource: &'a Value) -> Vec<Node<'a>> {
        let root = Node::resource(resource);
        self.evaluate_at(root, root)
    }

    /// Evaluates the expression with `focus` as the input and `resource` as `%resource`.
    /// Composite search parameters use this to evaluate each component relative to the
    /// element the composite selected.
    pub fn evaluate_at<'a>(&'a self, resource: Node<'a>, focus: Node<'a>) -> Vec<Node<'a>> {
        let context = Context { resource };
        self.tree.evaluate(context, &[focus])
    }

    /// Returns the part of the expression that applies to `resource_type`: of the top-level
    /// `|` branches, those that start with that type, with `Resource` or `DomainResource`,
    /// or with no type at all. Returns `None` when no branch applies.
    ///
    /// A search parameter defined for many types writes one branch per type
    /// (`AllergyIntolerance.patient | CarePlan.subject.where(...) | ...`), and a type must
    /// not index the branches written for others.
    pub fn for_resource_type(&self, resource_type: &str) -> Option<Expression> {
        let Expr::Union(branches) = &self.tree else {
            return applies_to(&self.tree, resource_type).then(|| self.clone());
        };
        let kept: Vec<&str> = branches
            .iter()
            .filter(|(branch, _)| applies_to(branch, resource_type))
            .map(|(_, span)| &self.text[span.clone()])
            .collect();
        if kept.len() == branches.len() {
            return Some(self.clone());
        }
        if kept.is_empty() {
            return None;
        }
        // Each branch parsed on its own before, so the joined text parses too.
        Expression::parse(&kept.join(" | ")).ok()
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn applies_to(expr: &Expr, resource_type: &str) -> bool {
    match root_type(expr) {
        Some(name) => is_type(resource_type, name),
        None => true,
    }
}

/// Returns the type name that starts the leftmost path of `expr`, if any.
fn root_type(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::TypeRoot(name) => Some(name),
        Expr::Member(inner, _)
        | Expr::Index(inner, _)
        | Expr::Call(inner, _)
        | Expr::TypeOperator(inner, _, _)
        | Expr::Equality(inner, _, _)
        | Expr::Logic(inner, _, _) => root_type(inner),
        Expr::Union(branches) => branches.first().and_then(|(branch, _)| root_type(branch)),
        Expr::This | Expr::Resource | Expr::Literal(_) => None,
    }
}
