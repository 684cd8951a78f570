//! A search as parsed: the filters, sort keys, includes and result parameters of one
//! request, checked against the search parameter registry.

use hearth_fhir_core::datetime::DateRange;
use hearth_fhir_core::number::DecimalRange;

/// One parsed search request of type-level search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    pub resource_type: String,
    /// Conditions every match meets.
    pub filters: Vec<Filter>,
    /// `_sort` keys, most significant first. Empty means storage order.
    pub sort: Vec<SortKey>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    /// `_count`; `None` leaves the page size to the server.
    pub count: Option<usize>,
    pub total: Option<Total>,
    pub summary: Option<Summary>,
    /// `_elements`, as element names of the resource's top level.
    pub elements: Option<Vec<String>>,
    /// The paging cursor of a `next` link.
    pub cursor: Option<Cursor>,
    /// The parameters to repeat in paging links, in request order, as (decoded name,
    /// value as received). Ignored parameters and the cursor are left out.
    pub echoed: Vec<(String, String)>,
    /// Names of parameters left out under lenient handling: unknown names and
    /// unsupported modifiers.
    pub ignored: Vec<String>,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// After the resource with this storage position (`rid`), for searches in storage order.
    After(i64),
    /// After this many matches, for sorted searches.
    Offset(usize),
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Estimate,
    Accurate,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

/// One condition on the resources of a type.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// A parameter's values, of which a match has at least one (or, negated, none).
    Param {
        param: i64,
        matcher: Matcher,
        /// `:not`: the resource has no value that matches.
        negated: bool,
    },
    /// `:missing`: whether the resource has no value of the parameter at all.
    Missing {
        table: Table,
        param: i64,
        missing: bool,
    },
    /// `_id` without modifiers, matched on the resource row itself.
    Id(Vec<String>),
    /// A chain (`subject:Patient.name=peter`): the reference parameter `param` points at
    /// a resource of one of the target types that meets that type's filter.
    Chain {
        param: i64,
        targets: Vec<(String, Box<Filter>)>,
    },
    /// A reverse chain (`_has:Observation:patient:code=1234`): some resource of
    /// `source_type` meeting `filter` refers to this one through `param`.
    Has {
        source_type: String,
        param: i64,
        filter: Box<Filter>,
    },
    /// Any of the filters.
    Any(Vec<Filter>),
}

/// The index table a filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Token,
    String,
    Reference,
    Date,
    Number,
    Quantity,
    Uri,
    Composite,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Token => "idx_token",
            Table::String => "idx_string",
            Table::Reference => "idx_reference",
            Table::Date => "idx_date",
            Table::Number => "idx_number",
            Table::Quantity => "idx_quantity",
            Table::Uri => "idx_uri",
            Table::Composite => "idx_composite",
        }
    }

    /// Whether the table has the index by (`rid`, `param`), which makes a per-resource
    /// lookup cheap.
    pub fn has_resource_index(self) -> bool {
        matches!(
            self,
            Table::Date | Table::String | Table::Reference | Table::Token
        )
    }
}

/// How the values of one parameter are matched, one variant per kind of value.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    Token(Vec<TokenValue>),
    /// `:text`: normalized text that the display or text of a code starts with, or that
    /// starts a word of it.
    TokenText(Vec<String>),
    /// `:of-type`: an identifier with this type coding and value.
    OfType(Vec<OfTypeValue>),
    String(StringMode, Vec<String>),
    Reference(Vec<ReferenceValue>),
    /// `:identifier`: `Reference.identifier`, matched as a token.
    ReferenceIdentifier(Vec<TokenValue>),
    Date(Vec<DateValue>),
    Number(Vec<NumberValue>),
    Quantity(Vec<QuantityValue>),
    Uri(UriMode, Vec<String>),
    /// One list of component values per alternative, in component order.
    Composite(Vec<Vec<ComponentValue>>),
}

impl Matcher {
    pub fn table(&self) -> Table {
        match self {
            Matcher::Token(_) | Matcher::TokenText(_) | Matcher::ReferenceIdentifier(_) => {
                Table::Token
            }
            Matcher::OfType(_) | Matcher::Composite(_) => Table::Composite,
            Matcher::String(..) => Table::String,
            Matcher::Reference(_) => Table::Reference,
            Matcher::Date(_) => Table::Date,
            Matcher::Number(_) => Table::Number,
            Matcher::Quantity(_) => Table::Quantity,
            Matcher::Uri(..) => Table::Uri,
        }
    }
}

/// A token search value. `system: None` matches any system and `Some("")` only codes
/// without one; `code: None` (`system|`) matches any code of the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValue {
    pub system: Option<String>,
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfTypeValue {
    pub type_system: String,
    pub type_code: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    /// The default: the normalized value starts with the normalized search value.
    StartsWith,
    /// `:exact`: the value as written equals the search value.
    Exact,
    /// `:contains`: the normalized value contains the normalized search value.
    Contains,
}

/// A reference search value: a type and id, an id of any type, or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceValue {
    pub target_type: Option<String>,
    pub id: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMode {
    Exact,
    /// `:below`: the value starts with the search value.
    Below,
    /// `:above`: the search value starts with the value.
    Above,
}

/// A search prefix (R4 `search-comparator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// A date search value: its prefix and the inclusive range its precision covers. For
/// `ap` the range is already widened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateValue {
    pub prefix: Prefix,
    pub range: DateRange,
}

/// A number search value: its prefix and its value with the range its precision implies
/// (`high` exclusive). For `ap` the range is already widened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberValue {
    pub prefix: Prefix,
    pub number: DecimalRange,
}

/// A quantity search value: a number with optional units. `system: None` with a `code`
/// (`5.4||mg`) matches the code or the unit as written.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityValue {
    pub number: NumberValue,
    pub system: Option<String>,
    pub code: Option<String>,
}

/// The value of one component of a composite search value.
#[derive(Debug, Clone, PartialEq)]
pub enum ComponentValue {
    Token(TokenValue),
    String(String),
    Reference(ReferenceValue),
    Date(DateValue),
    Number(NumberValue),
    Quantity(QuantityValue),
    Uri(String),
}

/// One `_sort` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub field: SortField,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortField {
    Id,
    LastUpdated,
    Param { table: Table, param: i64 },
}

/// One `_include` or `_revinclude`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The type of the resources holding the references; `None` for `*`.
    pub source_type: Option<String>,
    /// The reference parameter; `None` for every reference parameter (`*` or `Type:*`).
    pub param: Option<String>,
    /// Only references to this type.
    pub target_type: Option<String>,
    /// `:iterate`: also applied to the resources included so far.
    pub iterate: bool,
}
