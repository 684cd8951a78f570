//! Parsing one search value by parameter type: prefixes, escapes, and the forms of token,
//! reference, date, number, quantity and composite values.

use hearth_fhir_core::datetime::{self, DateRange};
use hearth_fhir_core::index::normalize;
use hearth_fhir_core::number::{self, DecimalRange};
use hearth_fhir_core::resource_types;
use hearth_fhir_core::search_params::{ParamType, SearchParam};

use super::SearchError;
use super::query::{
    ComponentValue, DateValue, NumberValue, OfTypeValue, Prefix, QuantityValue, ReferenceValue,
    TokenValue,
};

/// What value parsing needs besides the value.
#[derive(Debug, Clone, Copy)]
pub struct ValueContext<'a> {
    /// The server's FHIR base URL, so that absolute references to this server match
    /// `Type/id` values.
    pub base_url: &'a str,
    /// The current time in microseconds since the Unix epoch, which `ap` dates are
    /// measured from.
    pub now: i64,
}

/// Splits `text` at each `separator` not escaped with `\`. Escapes stay in the parts, so
/// a part can be split again; [`unescape`] removes them.
pub fn split_unescaped(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(&text[start..index]);
            start = index + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Removes the search escapes: `\,`, `\$`, `\|` and `\\` become the character escaped. A
/// trailing lone `\` is kept.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next) => out.push(next),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits a leading prefix (`ge2020`) off a date, number or quantity value; `eq` when
/// there is none.
pub fn split_prefix(value: &str) -> (Prefix, &str) {
    let prefix = match value.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, value),
    };
    (prefix, &value[2..])
}

pub fn token(value: &str) -> TokenValue {
    let parts = split_unescaped(value, '|');
    match parts.as_slice() {
        [code] => TokenValue {
            system: None,
            code: Some(unescape(code)),
        },
        [system, code @ ..] => {
            let code = unescape(&code.join("|"));
            TokenValue {
                system: Some(unescape(system)),
                code: (!code.is_empty()).then_some(code),
            }
        }
        [] => TokenValue {
            system: None,
            code: None,
        },
    }
}

pub fn of_type(value: &str) -> Result<OfTypeValue, SearchError> {
    match split_unescaped(value, '|').as_slice() {
        [type_system, type_code, identifier] if !type_code.is_empty() => Ok(OfTypeValue {
            type_system: unescape(type_system),
            type_code: unescape(type_code),
            value: unescape(identifier),
        }),
        _ => Err(SearchError::invalid(format!(
            "'{value}' is not an :of-type value; expected type-system|type-code|value"
        ))),
    }
}

/// Parses a string search value, normalized as the index stores strings.
pub fn string(value: &str) -> String {
    normalize(&unescape(value))
}

/// Parses a reference value: `Type/id`, `Type/id/_history/n`, a bare id, or an absolute
/// URL. `type_modifier` is the `:Type` modifier, which fixes the type of a bare id.
pub fn reference(
    value: &str,
    type_modifier: Option<&str>,
    context: ValueContext<'_>,
) -> Result<ReferenceValue, SearchError> {
    let value = unescape(value);
    let local = context
        .base_url
        .strip_suffix('/')
        .unwrap_or(context.base_url);
    let relative = value
        .strip_prefix(local)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|_| !local.is_empty());
    let value = relative.map(str::to_owned).unwrap_or(value);

    if value.contains(':') {
        // An absolute URL or URN, matched as stored; a canonical's `|version` is ignored.
        let url = value.split('|').next().unwrap_or_default().to_owned();
        return Ok(ReferenceValue {
            target_type: None,
            id: None,
            url: Some(url),
        });
    }
    let mut parts = value.split('/');
    let reference = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(id), None, ..) => ReferenceValue {
            target_type: type_modifier.map(str::to_owned),
            id: Some(id.to_owned()),
            url: None,
        },
        (Some(resource_type), Some(id), None, None)
        | (Some(resource_type), Some(id), Some("_history"), Some(_)) => {
            if !resource_types::is_resource_type(resource_type) {
                return Err(SearchError::invalid(format!(
                    "'{value}' is not a reference: '{resource_type}' is not a resource type"
                )));
            }
            if type_modifier.is_some_and(|t| t != resource_type) {
                return Err(SearchError::invalid(format!(
                    "'{value}' does not name a {}",
                    type_modifier.unwrap_or_default()
                )));
            }
            ReferenceValue {
                target_type: Some(resource_type.to_owned()),
                id: Some(id.to_owned()),
                url: None,
            }
        }
        _ => {
            return Err(SearchError::invalid(format!(
                "'{value}' is not a reference; expected Type/id, an id or an absolute URL"
            )));
        }
    };
    if reference.id.as_deref().is_some_and(str::is_empty) {
        return Err(SearchError::invalid(format!(
            "'{value}' is not a reference: the id is empty"
        )));
    }
    Ok(reference)
}

pub fn date(value: &str, context: ValueContext<'_>) -> Result<DateValue, SearchError> {
    let (prefix, text) = split_prefix(value);
    // A `+` of a time zone that was sent unencoded arrives as a space.
    let text = text.replace(' ', "+");
    let range = datetime::parse_search_value(&text)
        .map_err(|e| SearchError::invalid(format!("invalid date '{value}': {e}")))?;
    let range = if prefix == Prefix::Ap {
        widen_date(range, context.now)
    } else {
        range
    };
    Ok(DateValue { prefix, range })
}

/// Widens a date range for `ap` by a tenth of the time between it and now, the
/// approximation the R4 search page recommends for dates.
fn widen_date(range: DateRange, now: i64) -> DateRange {
    let middle = range.low / 2 + range.high / 2;
    let margin = (i128::from(now) - i128::from(middle)).abs() / 10;
    let margin = i64::try_from(margin).unwrap_or(i64::MAX);
    DateRange {
        low: range.low.saturating_sub(margin),
        high: range.high.saturating_add(margin),
    }
}

pub fn number(value: &str) -> Result<NumberValue, SearchError> {
    let (prefix, text) = split_prefix(value);
    let parsed = number::parse(text)
        .map_err(|_| SearchError::invalid(format!("invalid number '{value}'")))?;
    let number = if prefix == Prefix::Ap {
        widen_number(parsed)
    } else {
        parsed
    };
    Ok(NumberValue { prefix, number })
}

/// Widens a number for `ap` to 10% of its value on each side, the approximation the R4
/// search page recommends, or to its precision range when that is wider.
fn widen_number(number: DecimalRange) -> DecimalRange {
    let margin = number.value.abs() / 10.0;
    DecimalRange {
        value: number.value,
        low: number.low.min(number.value - margin),
        high: number.high.max(number.value + margin),
    }
}

pub fn quantity(value: &str) -> Result<QuantityValue, SearchError> {
    let parts = split_unescaped(value, '|');
    let (number_text, system, code) = match parts.as_slice() {
        [number] => (*number, None, None),
        [number, system, code] => {
            let system = unescape(system);
            let code = unescape(code);
            (
                *number,
                (!system.is_empty()).then_some(system),
                (!code.is_empty()).then_some(code),
            )
        }
        _ => {
            return Err(SearchError::invalid(format!(
                "invalid quantity '{value}'; expected number, number|system|code or number||unit"
            )));
        }
    };
    Ok(QuantityValue {
        number: number(number_text)?,
        system,
        code,
    })
}

/// Parses a composite value (`http://loinc.org|8302-2$gt150`) into one value per
/// component of `param`.
pub fn composite(
    param: &SearchParam,
    value: &str,
    context: ValueContext<'_>,
) -> Result<Vec<ComponentValue>, SearchError> {
    let parts = split_unescaped(value, '$');
    if parts.len() != param.components.len() {
        return Err(SearchError::invalid(format!(
            "'{value}' has {} parts, but {} takes {} joined by $",
            parts.len(),
            param.code,
            param.components.len()
        )));
    }
    let mut values = Vec::with_capacity(parts.len());
    for (component, part) in param.components.iter().zip(parts) {
        let value = match component.param_type {
            ParamType::Token => ComponentValue::Token(token(part)),
            ParamType::String => ComponentValue::String(string(part)),
            ParamType::Reference => ComponentValue::Reference(reference(part, None, context)?),
            ParamType::Date => ComponentValue::Date(date(part, context)?),
            ParamType::Number => ComponentValue::Number(number(part)?),
            ParamType::Quantity => ComponentValue::Quantity(quantity(part)?),
            ParamType::Uri => ComponentValue::Uri(unescape(part)),
            ParamType::Composite | ParamType::Special => {
                return Err(SearchError::unsupported(format!(
                    "{} has a component of type {}, which search does not support",
                    param.code, component.param_type
                )));
            }
        };
        values.push(value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: ValueContext<'static> = ValueContext {
        base_url: "http://h/fhir",
        now: 0,
    };

    #[test]
    fn split_keeps_escaped_separators() {
        assert_eq!(split_unescaped(r"a,b\,c,d", ','), vec!["a", r"b\,c", "d"]);
        assert_eq!(unescape(r"b\,c\\d\$e\|f"), r"b,c\d$e|f");
        assert_eq!(split_unescaped("", ','), vec![""]);
    }

    #[test]
    fn token_forms() {
        let value = token("http://loinc.org|8302-2");
        assert_eq!(value.system.as_deref(), Some("http://loinc.org"));
        assert_eq!(value.code.as_deref(), Some("8302-2"));
        let no_system = token("|8302-2");
        assert_eq!(no_system.system.as_deref(), Some(""));
        let system_only = token("http://loinc.org|");
        assert_eq!(system_only.code, None);
        let code_only = token(r"a\|b");
        assert_eq!(code_only.system, None);
        assert_eq!(code_only.code.as_deref(), Some("a|b"));
    }

    #[test]
    fn reference_forms() {
        let typed = reference("Patient/p1", None, CONTEXT).unwrap();
        assert_eq!(typed.target_type.as_deref(), Some("Patient"));
        assert_eq!(typed.id.as_deref(), Some("p1"));
        let local = reference("http://h/fhir/Patient/p1", None, CONTEXT).unwrap();
        assert_eq!(local, typed);
        let versioned = reference("Patient/p1/_history/3", None, CONTEXT).unwrap();
        assert_eq!(versioned, typed);
        let remote = reference("http://other/fhir/Patient/p1", None, CONTEXT).unwrap();
        assert_eq!(remote.url.as_deref(), Some("http://other/fhir/Patient/p1"));
        let bare = reference("p1", Some("Patient"), CONTEXT).unwrap();
        assert_eq!(bare, typed);
        assert!(reference("Nope/p1", None, CONTEXT).is_err());
        assert!(reference("Patient/p1", Some("Group"), CONTEXT).is_err());
        assert!(reference("a/b/c", None, CONTEXT).is_err());
    }

    #[test]
    fn date_prefixes_and_zone_space() {
        let value = date("ge2020-01-01T00:00:00 00:00", CONTEXT).unwrap();
        assert_eq!(value.prefix, Prefix::Ge);
        assert_eq!(
            value.range,
            datetime::parse("2020-01-01T00:00:00+00:00").unwrap()
        );
        assert!(date("xx2020", CONTEXT).is_err());
        assert!(date("2020-13", CONTEXT).is_err());
    }

    #[test]
    fn approximate_date_widens_by_tenth_of_gap() {
        let value = date("ap2020", CONTEXT).unwrap();
        let year = datetime::parse("2020").unwrap();
        assert!(value.range.low < year.low);
        assert!(value.range.high > year.high);
    }

    #[test]
    fn quantity_forms() {
        let full = quantity("gt5.4|http://unitsofmeasure.org|mg").unwrap();
        assert_eq!(full.number.prefix, Prefix::Gt);
        assert_eq!(full.system.as_deref(), Some("http://unitsofmeasure.org"));
        assert_eq!(full.code.as_deref(), Some("mg"));
        let unit = quantity("5.4||mg").unwrap();
        assert_eq!(unit.system, None);
        assert_eq!(unit.code.as_deref(), Some("mg"));
        assert!(quantity("5.4|mg").is_err());
        assert!(quantity("five").is_err());
    }

    #[test]
    fn approximate_number_widens_by_tenth() {
        let value = number("ap100").unwrap();
        assert_eq!(value.number.low, 90.0);
        assert_eq!(value.number.high, 110.0);
    }
}
