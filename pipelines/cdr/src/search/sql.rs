//! SQL conditions for parsed filters.
//!
//! A filter becomes a condition on one row of `resources` under an alias, usually
//! `alias.rid IN (SELECT rid FROM idx_... WHERE param = ? AND (...))`, with the values of a
//! parameter ORed inside one subquery. Arguments are positional (`?`) and pushed in the
//! order the text uses them.

use hearth_fhir_core::search_params;
use rusqlite::types::Value as SqlValue;

use super::SearchError;
use super::query::{
    ComponentValue, DateValue, Filter, Matcher, NumberValue, Prefix, QuantityValue, ReferenceValue,
    StringMode, Table, TokenValue, UriMode,
};
use crate::params;
use crate::visibility::Visibility;

/// What the caller may see of each resource type; `None` when it may see none.
pub type VisibilityFor<'a> = &'a dyn Fn(&str) -> Option<Visibility>;

/// The largest `char`, appended to a prefix to bound a range of strings that start with it.
const MAX_CHAR: char = char::MAX;

/// SQL text and its arguments, built up filter by filter.
pub struct SqlBuilder<'a> {
    pub sql: String,
    pub args: Vec<SqlValue>,
    aliases: usize,
    /// The caller's visibility for the types that chains and reverse chains read; `None`
    /// reads every resource, for conditional writes and for scope restrictions themselves.
    visibility: Option<VisibilityFor<'a>>,
}

/// The columns that hold a value of each kind, in a table or a composite component.
struct Columns {
    /// Token code, normalized string, reference target id, uri or quantity code.
    key: &'static str,
    /// Token system, exact string, reference target type or quantity system.
    qualifier: &'static str,
    /// Reference url or quantity unit.
    extra: &'static str,
    low: &'static str,
    high: &'static str,
    value: &'static str,
}

const fn table_columns(table: Table) -> Columns {
    let (key, qualifier, extra) = match table {
        Table::Token => ("code", "system", ""),
        Table::String => ("value", "exact", ""),
        Table::Reference => ("target_id", "target_type", "url"),
        Table::Uri => ("value", "", ""),
        Table::Quantity => ("code", "system", "unit"),
        Table::Date | Table::Number | Table::Composite => ("", "", ""),
    };
    Columns {
        key,
        qualifier,
        extra,
        low: "low",
        high: "high",
        value: "value",
    }
}

/// Columns of the components of `idx_composite`, in component order.
const COMPONENT_COLUMNS: [Columns; 3] = [
    Columns {
        key: "c0_text1",
        qualifier: "c0_text2",
        extra: "c0_text3",
        low: "c0_low",
        high: "c0_high",
        value: "c0_value",
    },
    Columns {
        key: "c1_text1",
        qualifier: "c1_text2",
        extra: "c1_text3",
        low: "c1_low",
        high: "c1_high",
        value: "c1_value",
    },
    Columns {
        key: "c2_text1",
        qualifier: "c2_text2",
        extra: "c2_text3",
        low: "c2_low",
        high: "c2_high",
        value: "c2_value",
    },
];

impl<'a> SqlBuilder<'a> {
    pub fn new(visibility: Option<VisibilityFor<'a>>) -> Self {
        SqlBuilder {
            sql: String::new(),
            args: Vec::new(),
            aliases: 0,
            visibility,
        }
    }

    /// Returns a table alias not used so far in this statement.
    pub fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("s{}", self.aliases)
    }

    pub fn push(&mut self, text: &str) {
        self.sql.push_str(text);
    }

    /// Appends a placeholder and its argument.
    pub fn arg(&mut self, value: impl Into<SqlValue>) {
        self.sql.push('?');
        self.args.push(value.into());
    }

    /// Appends ` AND condition` limiting `alias` to what the caller may see of
    /// `resource_type`, if this builder checks visibility.
    pub fn visible(&mut self, resource_type: &str, alias: &str) -> Result<(), SearchError> {
        let Some(visibility_for) = self.visibility else {
            return Ok(());
        };
        match visibility_for(resource_type) {
            None => self.push(" AND 0"),
            Some(visibility) => {
                // Scope restrictions are filters too; their own chains read everything.
                self.visibility = None;
                let result = visibility.push_condition(self, resource_type, alias);
                self.visibility = Some(visibility_for);
                result?;
            }
        }
        Ok(())
    }

    /// Appends the condition that `alias`, a resource of `resource_type`, is in the
    /// compartment of Patient `patient`: the Patient itself, or a resource that refers to
    /// it through a parameter the Patient compartment definition lists for its type.
    pub fn compartment(&mut self, resource_type: &str, alias: &str, patient: &str) {
        if resource_type == "Patient" {
            self.push(&format!("{alias}.id = "));
            self.arg(patient.to_owned());
            return;
        }
        let ids: Vec<String> = search_params::compartment_params(resource_type)
            .iter()
            .filter_map(|code| params::id(resource_type, code))
            .map(|id| id.to_string())
            .collect();
        if ids.is_empty() {
            self.push("0");
            return;
        }
        self.push(&format!(
            "{alias}.rid IN (SELECT rid FROM idx_reference WHERE param IN ({}) AND target_id = ",
            ids.join(", ")
        ));
        self.arg(patient.to_owned());
        self.push(" AND target_type = 'Patient')");
    }

    /// Appends the condition of one filter.
    pub fn filter(
        &mut self,
        resource_type: &str,
        alias: &str,
        filter: &Filter,
    ) -> Result<(), SearchError> {
        match filter {
            Filter::Param {
                param,
                matcher,
                negated,
            } => self.param(alias, *param, matcher, *negated)?,
            Filter::Missing {
                table,
                param,
                missing,
            } => {
                let not = if *missing { "NOT " } else { "" };
                self.push(&format!(
                    "{alias}.rid {not}IN (SELECT rid FROM {} WHERE param = ",
                    table.name()
                ));
                self.arg(*param);
                self.push(")");
            }
            Filter::Id(ids) => {
                self.push(&format!("{alias}.id IN ("));
                for (index, id) in ids.iter().enumerate() {
                    if index > 0 {
                        self.push(", ");
                    }
                    self.arg(id.clone());
                }
                self.push(")");
            }
            Filter::Chain { param, targets } => {
                self.push(&format!(
                    "{alias}.rid IN (SELECT rid FROM idx_reference WHERE param = "
                ));
                self.arg(*param);
                self.push(" AND (");
                for (index, (target_type, inner)) in targets.iter().enumerate() {
                    if index > 0 {
                        self.push(" OR ");
                    }
                    let target = self.alias();
                    self.push("target_type = ");
                    self.arg(target_type.clone());
                    self.push(&format!(
                        " AND target_id IN (SELECT {target}.id FROM resources {target} WHERE {target}.type = "
                    ));
                    self.arg(target_type.clone());
                    self.push(&format!(" AND {target}.deleted = 0 AND "));
                    self.filter(target_type, &target, inner)?;
                    self.visible(target_type, &target)?;
                    self.push(")");
                }
                self.push("))");
            }
            Filter::Has {
                source_type,
                param,
                filter,
            } => {
                let source = self.alias();
                self.push(&format!(
                    "{alias}.id IN (SELECT target_id FROM idx_reference WHERE param = "
                ));
                self.arg(*param);
                self.push(" AND target_type = ");
                self.arg(resource_type.to_owned());
                self.push(&format!(
                    " AND rid IN (SELECT {source}.rid FROM resources {source} WHERE {source}.type = "
                ));
                self.arg(source_type.clone());
                self.push(&format!(" AND {source}.deleted = 0 AND "));
                self.filter(source_type, &source, filter)?;
                self.visible(source_type, &source)?;
                self.push("))");
            }
            Filter::Any(filters) => {
                self.push("(");
                for (index, inner) in filters.iter().enumerate() {
                    if index > 0 {
                        self.push(" OR ");
                    }
                    self.filter(resource_type, alias, inner)?;
                }
                if filters.is_empty() {
                    self.push("0");
                }
                self.push(")");
            }
        }
        Ok(())
    }

    /// Appends the condition of one filter as a check of a row that some other condition
    /// found, so that SQLite never walks this filter's index rows to find candidates.
    /// Filters on a table with an index by resource become a lookup per row
    /// (`EXISTS (... WHERE rid = alias.rid ...)`). The others stay a set that SQLite builds
    /// once, behind a unary `+` that keeps the planner from using it to find rows.
    pub fn check(
        &mut self,
        resource_type: &str,
        alias: &str,
        filter: &Filter,
    ) -> Result<(), SearchError> {
        match filter {
            Filter::Param {
                param,
                matcher,
                negated,
            } if matcher.table().has_resource_index() => {
                let not = if *negated { "NOT " } else { "" };
                self.push(&format!(
                    "{not}EXISTS (SELECT 1 FROM {} WHERE rid = {alias}.rid AND param = ",
                    matcher.table().name()
                ));
                self.arg(*param);
                self.push(" AND (");
                self.param_values(matcher)?;
                self.push("))");
            }
            Filter::Missing {
                table,
                param,
                missing,
            } if table.has_resource_index() => {
                let not = if *missing { "NOT " } else { "" };
                self.push(&format!(
                    "{not}EXISTS (SELECT 1 FROM {} WHERE rid = {alias}.rid AND param = ",
                    table.name()
                ));
                self.arg(*param);
                self.push(")");
            }
            Filter::Any(filters) => {
                self.push("(");
                for (index, inner) in filters.iter().enumerate() {
                    if index > 0 {
                        self.push(" OR ");
                    }
                    self.check(resource_type, alias, inner)?;
                }
                if filters.is_empty() {
                    self.push("0");
                }
                self.push(")");
            }
            _ => {
                self.push("+");
                self.filter(resource_type, alias, filter)?;
            }
        }
        Ok(())
    }

    fn param(
        &mut self,
        alias: &str,
        param: i64,
        matcher: &Matcher,
        negated: bool,
    ) -> Result<(), SearchError> {
        let table = matcher.table();
        let not = if negated { "NOT " } else { "" };
        self.push(&format!(
            "{alias}.rid {not}IN (SELECT rid FROM {} WHERE param = ",
            table.name()
        ));
        self.arg(param);
        self.push(" AND (");
        self.param_values(matcher)?;
        self.push("))");
        Ok(())
    }

    /// Appends the conditions on one index row of the matcher's table, one per value,
    /// joined by OR.
    fn param_values(&mut self, matcher: &Matcher) -> Result<(), SearchError> {
        let columns = table_columns(matcher.table());
        let mut first = true;
        let mut separator = |builder: &mut Self| {
            if !first {
                builder.push(" OR ");
            }
            first = false;
        };
        match matcher {
            Matcher::Token(values) | Matcher::ReferenceIdentifier(values) => {
                for value in values {
                    separator(self);
                    self.token(&columns, value);
                }
            }
            Matcher::TokenText(values) => {
                for value in values {
                    separator(self);
                    self.push("(text >= ");
                    self.arg(value.clone());
                    self.push(" AND text < ");
                    self.arg(format!("{value}{MAX_CHAR}"));
                    self.push(" OR instr(text, ");
                    self.arg(format!(" {value}"));
                    self.push(") > 0)");
                }
            }
            Matcher::OfType(values) => {
                let [identifier_type, identifier, _] = &COMPONENT_COLUMNS;
                for value in values {
                    separator(self);
                    self.push(&format!("({} = ", identifier_type.key));
                    self.arg(value.type_code.clone());
                    self.push(&format!(" AND {} = ", identifier_type.qualifier));
                    self.arg(value.type_system.clone());
                    self.push(&format!(" AND {} = ", identifier.key));
                    self.arg(value.value.clone());
                    self.push(")");
                }
            }
            Matcher::String(mode, values) => {
                for value in values {
                    separator(self);
                    self.string(&columns, *mode, value);
                }
            }
            Matcher::Reference(values) => {
                for value in values {
                    separator(self);
                    self.reference(&columns, value);
                }
            }
            Matcher::Date(values) => {
                for value in values {
                    separator(self);
                    self.date(&columns, value);
                }
            }
            Matcher::Number(values) => {
                for value in values {
                    separator(self);
                    self.number(&columns, value);
                }
            }
            Matcher::Quantity(values) => {
                for value in values {
                    separator(self);
                    self.quantity(&columns, value);
                }
            }
            Matcher::Uri(mode, values) => {
                for value in values {
                    separator(self);
                    self.uri(&columns, *mode, value);
                }
            }
            Matcher::Composite(alternatives) => {
                for components in alternatives {
                    separator(self);
                    self.composite(components)?;
                }
            }
        }
        Ok(())
    }

    fn token(&mut self, columns: &Columns, value: &TokenValue) {
        match (&value.system, &value.code) {
            (None, Some(code)) => {
                self.push(&format!("{} = ", columns.key));
                self.arg(code.clone());
            }
            (Some(system), Some(code)) => {
                self.push(&format!("({} = ", columns.key));
                self.arg(code.clone());
                self.push(&format!(" AND {} = ", columns.qualifier));
                self.arg(system.clone());
                self.push(")");
            }
            (Some(system), None) => {
                self.push(&format!("{} = ", columns.qualifier));
                self.arg(system.clone());
            }
            (None, None) => self.push("0"),
        }
    }

    fn string(&mut self, columns: &Columns, mode: StringMode, value: &str) {
        match mode {
            StringMode::StartsWith => {
                self.push(&format!("({} >= ", columns.key));
                self.arg(value.to_owned());
                self.push(&format!(" AND {} < ", columns.key));
                self.arg(format!("{value}{MAX_CHAR}"));
                self.push(")");
            }
            StringMode::Exact => {
                self.push(&format!("({} = ", columns.key));
                self.arg(hearth_fhir_core::index::normalize(value));
                self.push(&format!(" AND {} = ", columns.qualifier));
                self.arg(value.to_owned());
                self.push(")");
            }
            StringMode::Contains => {
                self.push(&format!("instr({}, ", columns.key));
                self.arg(value.to_owned());
                self.push(") > 0");
            }
        }
    }

    fn reference(&mut self, columns: &Columns, value: &ReferenceValue) {
        match value {
            ReferenceValue { url: Some(url), .. } => {
                self.push(&format!("{} = ", columns.extra));
                self.arg(url.clone());
            }
            ReferenceValue {
                target_type: Some(target_type),
                id: Some(id),
                ..
            } => {
                self.push(&format!("({} = ", columns.key));
                self.arg(id.clone());
                self.push(&format!(" AND {} = ", columns.qualifier));
                self.arg(target_type.clone());
                self.push(")");
            }
            ReferenceValue { id: Some(id), .. } => {
                self.push(&format!("{} = ", columns.key));
                self.arg(id.clone());
            }
            ReferenceValue { .. } => self.push("0"),
        }
    }

    /// Appends the condition of a date prefix, comparing the stored range [low, high]
    /// with the search range as the R4 search page defines each prefix.
    fn date(&mut self, columns: &Columns, value: &DateValue) {
        let (low, high) = (columns.low, columns.high);
        let (search_low, search_high) = (value.range.low, value.range.high);
        match value.prefix {
            // The search range contains the stored range. The redundant bound on `low`
            // lets the index limit the scan from both sides.
            Prefix::Eq => {
                self.push(&format!("({low} >= "));
                self.arg(search_low);
                self.push(&format!(" AND {low} <= "));
                self.arg(search_high);
                self.push(&format!(" AND {high} <= "));
                self.arg(search_high);
                self.push(")");
            }
            Prefix::Ne => {
                self.push(&format!("({low} < "));
                self.arg(search_low);
                self.push(&format!(" OR {high} > "));
                self.arg(search_high);
                self.push(")");
            }
            // The range above the search value overlaps the stored range.
            Prefix::Gt => {
                self.push(&format!("{high} > "));
                self.arg(search_high);
            }
            Prefix::Lt => {
                self.push(&format!("{low} < "));
                self.arg(search_low);
            }
            // `gt`, or the search range contains the stored range.
            Prefix::Ge => {
                self.push(&format!("({high} > "));
                self.arg(search_high);
                self.push(&format!(" OR ({low} >= "));
                self.arg(search_low);
                self.push(&format!(" AND {high} <= "));
                self.arg(search_high);
                self.push("))");
            }
            Prefix::Le => {
                self.push(&format!("({low} < "));
                self.arg(search_low);
                self.push(&format!(" OR ({low} >= "));
                self.arg(search_low);
                self.push(&format!(" AND {high} <= "));
                self.arg(search_high);
                self.push("))");
            }
            // Starts after the search range ends; ends before it starts.
            Prefix::Sa => {
                self.push(&format!("{low} > "));
                self.arg(search_high);
            }
            Prefix::Eb => {
                self.push(&format!("{high} < "));
                self.arg(search_low);
            }
            // The widened search range overlaps the stored range.
            Prefix::Ap => {
                self.push(&format!("({low} <= "));
                self.arg(search_high);
                self.push(&format!(" AND {high} >= "));
                self.arg(search_low);
                self.push(")");
            }
        }
    }

    /// Appends the condition of a number prefix on the stored value. `eq`, `ne` and `ap`
    /// use the range the search value's precision implies; the others compare with the
    /// value as if it were exact, as the R4 search page says of `gt`, `lt`, `ge` and `le`.
    // NOTE: a Range or a quantity with a comparator (`<5`) is matched by its stored value,
    // the midpoint or the given end, not by its range.
    fn number(&mut self, columns: &Columns, value: &NumberValue) {
        let stored = columns.value;
        let number = value.number;
        let comparison = |operator: &str| format!("{stored} {operator} ");
        match value.prefix {
            Prefix::Eq | Prefix::Ap => {
                self.push(&format!("({stored} >= "));
                self.arg(number.low);
                self.push(&format!(" AND {stored} < "));
                self.arg(number.high);
                self.push(")");
            }
            Prefix::Ne => {
                self.push(&format!("({stored} < "));
                self.arg(number.low);
                self.push(&format!(" OR {stored} >= "));
                self.arg(number.high);
                self.push(")");
            }
            Prefix::Gt | Prefix::Sa => {
                self.push(&comparison(">"));
                self.arg(number.value);
            }
            Prefix::Lt | Prefix::Eb => {
                self.push(&comparison("<"));
                self.arg(number.value);
            }
            Prefix::Ge => {
                self.push(&comparison(">="));
                self.arg(number.value);
            }
            Prefix::Le => {
                self.push(&comparison("<="));
                self.arg(number.value);
            }
        }
    }

    /// Appends a quantity condition: the number, and the units when given. Without a
    /// system, the code matches either the coded unit or the unit as written.
    // NOTE: units are compared as written; no UCUM conversion, so `1000|...|g` does not
    // match a stored `1|...|kg`.
    fn quantity(&mut self, columns: &Columns, value: &QuantityValue) {
        self.push("(");
        self.number(columns, &value.number);
        match (&value.system, &value.code) {
            (Some(system), Some(code)) => {
                self.push(&format!(" AND {} = ", columns.qualifier));
                self.arg(system.clone());
                self.push(&format!(" AND {} = ", columns.key));
                self.arg(code.clone());
            }
            (None, Some(code)) => {
                self.push(&format!(" AND ({} = ", columns.key));
                self.arg(code.clone());
                self.push(&format!(" OR {} = ", columns.extra));
                self.arg(code.clone());
                self.push(")");
            }
            (Some(system), None) => {
                self.push(&format!(" AND {} = ", columns.qualifier));
                self.arg(system.clone());
            }
            (None, None) => {}
        }
        self.push(")");
    }

    fn uri(&mut self, columns: &Columns, mode: UriMode, value: &str) {
        let stored = columns.key;
        match mode {
            UriMode::Exact => {
                self.push(&format!("{stored} = "));
                self.arg(value.to_owned());
            }
            UriMode::Below => {
                self.push(&format!("({stored} >= "));
                self.arg(value.to_owned());
                self.push(&format!(" AND {stored} < "));
                self.arg(format!("{value}{MAX_CHAR}"));
                self.push(")");
            }
            UriMode::Above => {
                self.push(&format!("({stored} <= "));
                self.arg(value.to_owned());
                self.push(" AND substr(");
                self.arg(value.to_owned());
                self.push(&format!(", 1, length({stored})) = {stored})"));
            }
        }
    }

    fn composite(&mut self, components: &[ComponentValue]) -> Result<(), SearchError> {
        if components.len() > COMPONENT_COLUMNS.len() {
            return Err(SearchError::unsupported(format!(
                "composite values with {} components are not stored",
                components.len()
            )));
        }
        self.push("(");
        for (index, (component, columns)) in components.iter().zip(&COMPONENT_COLUMNS).enumerate() {
            if index > 0 {
                self.push(" AND ");
            }
            match component {
                ComponentValue::Token(value) => self.token(columns, value),
                ComponentValue::String(value) => {
                    self.string(columns, StringMode::StartsWith, value)
                }
                ComponentValue::Reference(value) => self.reference(columns, value),
                ComponentValue::Date(value) => self.date(columns, value),
                ComponentValue::Number(value) => self.number(columns, value),
                ComponentValue::Quantity(value) => self.quantity(columns, value),
                ComponentValue::Uri(value) => self.uri(columns, UriMode::Exact, value),
            }
        }
        self.push(")");
        Ok(())
    }
}
