//! The index rows, one struct per search parameter type.
//!
//! Every row carries `param`, the code of the search parameter it belongs to. Rows holding
//! `f64` compare and hash by bit pattern; extraction never stores NaN and turns `-0.0`
//! into `0.0`, so this agrees with numeric equality.

use std::hash::{Hash, Hasher};

use serde::Serialize;

use crate::reference::LocalBases;
use crate::search_params::ParamType;

/// Every index row of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexRows {
    pub strings: Vec<StringRow>,
    pub tokens: Vec<TokenRow>,
    pub references: Vec<ReferenceRow>,
    pub dates: Vec<DateRow>,
    pub numbers: Vec<NumberRow>,
    pub quantities: Vec<QuantityRow>,
    pub uris: Vec<UriRow>,
    pub composites: Vec<CompositeRow>,
    /// Rows of the one R4 `special` parameter with an expression, Location `near`.
    pub positions: Vec<PositionRow>,
}

impl IndexRows {
    /// Returns the number of rows of all types.
    pub fn len(&self) -> usize {
        self.strings.len()
            + self.tokens.len()
            + self.references.len()
            + self.dates.len()
            + self.numbers.len()
            + self.quantities.len()
            + self.uris.len()
            + self.composites.len()
            + self.positions.len()
    }

    /// Returns whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Clears the target id of every reference row whose absolute URL lies outside
    /// `bases`, so that only relative references and URLs of this server name a local
    /// resource. The URL and the target type stay, so such a reference still matches a
    /// search by its URL.
    pub fn drop_foreign_targets(&mut self, bases: &LocalBases) {
        for row in &mut self.references {
            row.drop_foreign_target(bases);
        }
        for composite in &mut self.composites {
            for part in &mut composite.components {
                if let CompositePart::Reference(rows) = part {
                    rows.iter_mut()
                        .for_each(|row| row.drop_foreign_target(bases));
                }
            }
        }
    }
}

/// A string parameter value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct StringRow {
    pub param: &'static str,
    /// The text as [`normalize`](super::normalize) leaves it, for default (starts-with) and
    /// `:contains` matching.
    pub value: String,
    /// The text as written, for `:exact`.
    pub exact: String,
}

/// A token parameter value: a code in a system, plus text for `:text`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TokenRow {
    pub param: &'static str,
    /// Coding.system or Identifier.system; `None` for plain codes, booleans and
    /// ContactPoints.
    pub system: Option<String>,
    /// Coding.code, Identifier.value, ContactPoint.value, or the primitive value
    /// (`true`/`false` for booleans).
    pub code: Option<String>,
    /// Normalized display or text for `:text` matching: Coding.display, a row of its own
    /// for CodeableConcept.text, Identifier.type.text.
    pub text: Option<String>,
    /// One coding of Identifier.type, for `:of-type`. An Identifier with several type
    /// codings gets one row per coding.
    pub identifier_type_system: Option<String>,
    pub identifier_type_code: Option<String>,
}

/// A reference parameter value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ReferenceRow {
    pub param: &'static str,
    /// The target's resource type, from `Type/id`, from the end of an absolute URL, or from
    /// Reference.type.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// An absolute or canonical URL (without `|version`) or another URI such as
    /// `urn:uuid:...`; `None` for relative references.
    pub url: Option<String>,
    /// `_history` version of a literal reference, or `|version` of a canonical.
    pub version: Option<String>,
    /// Reference.identifier, for `:identifier`.
    pub identifier_system: Option<String>,
    pub identifier_value: Option<String>,
}

impl ReferenceRow {
    /// Clears `target_id` when the row has both a target and a URL that is not under one
    /// of `bases`. URNs and relative references are left as they are.
    pub fn drop_foreign_target(&mut self, bases: &LocalBases) {
        let foreign = self.url.as_deref().is_some_and(|url| !bases.is_local(url));
        if foreign && self.target_id.is_some() {
            self.target_id = None;
        }
    }
}

/// A date parameter value as an inclusive range of microseconds since the Unix epoch;
/// `i64::MIN`/`i64::MAX` for an open Period end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct DateRow {
    pub param: &'static str,
    pub low: i64,
    pub high: i64,
}

/// A number parameter value and the range its written precision implies (`high`
/// exclusive). A Range stores its bounds, with infinities for open ends.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NumberRow {
    pub param: &'static str,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// A quantity parameter value from Quantity (and Age, Duration, ...), Money or Range.
#[derive(Debug, Clone, Serialize)]
pub struct QuantityRow {
    pub param: &'static str,
    /// The value; for a Range, the midpoint, or the bound given when one end is open.
    pub value: f64,
    /// Lower and upper ends: the implicit precision range of `value`, open on the side a
    /// comparator (`<`, `>=`, ...) leaves open, or a Range's bounds. Open ends are
    /// infinite.
    pub low: f64,
    pub high: f64,
    /// Quantity.system; `urn:iso:std:iso:4217` for Money.
    pub system: Option<String>,
    /// Quantity.code; the currency for Money.
    pub code: Option<String>,
    /// Quantity.unit as written.
    pub unit: Option<String>,
}

/// A uri parameter value as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UriRow {
    pub param: &'static str,
    pub value: String,
}

/// A composite parameter value: the rows of each component, in the definition's order,
/// all taken from one element (one Observation, or one of its components).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CompositeRow {
    pub param: &'static str,
    pub components: Vec<CompositePart>,
}

/// The rows one component of a composite yields; never empty. Their `param` is the
/// component's own parameter code (such as `code` or `value-quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", content = "rows", rename_all = "lowercase")]
pub enum CompositePart {
    String(Vec<StringRow>),
    Token(Vec<TokenRow>),
    Reference(Vec<ReferenceRow>),
    Date(Vec<DateRow>),
    Number(Vec<NumberRow>),
    Quantity(Vec<QuantityRow>),
    Uri(Vec<UriRow>),
}

impl CompositePart {
    /// Takes the rows of `param_type` out of `rows`; `None` when there are none.
    pub(super) fn take(param_type: ParamType, rows: IndexRows) -> Option<CompositePart> {
        let part = match param_type {
            ParamType::String => CompositePart::String(rows.strings),
            ParamType::Token => CompositePart::Token(rows.tokens),
            ParamType::Reference => CompositePart::Reference(rows.references),
            ParamType::Date => CompositePart::Date(rows.dates),
            ParamType::Number => CompositePart::Number(rows.numbers),
            ParamType::Quantity => CompositePart::Quantity(rows.quantities),
            ParamType::Uri => CompositePart::Uri(rows.uris),
            ParamType::Composite | ParamType::Special => return None,
        };
        (!part.is_empty()).then_some(part)
    }

    /// Returns whether the part has no rows.
    pub fn is_empty(&self) -> bool {
        match self {
            CompositePart::String(rows) => rows.is_empty(),
            CompositePart::Token(rows) => rows.is_empty(),
            CompositePart::Reference(rows) => rows.is_empty(),
            CompositePart::Date(rows) => rows.is_empty(),
            CompositePart::Number(rows) => rows.is_empty(),
            CompositePart::Quantity(rows) => rows.is_empty(),
            CompositePart::Uri(rows) => rows.is_empty(),
        }
    }
}

/// A Location.position, for the `near` parameter.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PositionRow {
    pub param: &'static str,
    /// Degrees north (WGS84).
    pub latitude: f64,
    /// Degrees east (WGS84).
    pub longitude: f64,
}

impl PartialEq for NumberRow {
    fn eq(&self, other: &Self) -> bool {
        self.param == other.param
            && bits([self.value, self.low, self.high]) == bits([other.value, other.low, other.high])
    }
}

impl Eq for NumberRow {}

impl Hash for NumberRow {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.param.hash(state);
        bits([self.value, self.low, self.high]).hash(state);
    }
}

impl PartialEq for QuantityRow {
    fn eq(&self, other: &Self) -> bool {
        self.param == other.param
            && bits([self.value, self.low, self.high]) == bits([other.value, other.low, other.high])
            && self.system == other.system
            && self.code == other.code
            && self.unit == other.unit
    }
}

impl Eq for QuantityRow {}

impl Hash for QuantityRow {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.param.hash(state);
        bits([self.value, self.low, self.high]).hash(state);
        self.system.hash(state);
        self.code.hash(state);
        self.unit.hash(state);
    }
}

impl PartialEq for PositionRow {
    fn eq(&self, other: &Self) -> bool {
        self.param == other.param
            && bits([self.latitude, self.longitude]) == bits([other.latitude, other.longitude])
    }
}

impl Eq for PositionRow {}

impl Hash for PositionRow {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.param.hash(state);
        bits([self.latitude, self.longitude]).hash(state);
    }
}

fn bits<const N: usize>(values: [f64; N]) -> [u64; N] {
    values.map(f64::to_bits)
}
