//! Rows of string parameters, and the normalization they are matched with.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::StringRow;
use crate::fhirpath::Node;

/// Parts of a HumanName and an Address that a string parameter on the whole element
/// matches, each indexed separately (R4 search, "string": `name` matches any part).
/// Other complex values contribute their `text`, if any.
const PARTS: &[&str] = &[
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
];

/// Normalizes text for default string matching: lowercase, compatibility-decomposed
/// (NFKD) with combining marks such as accents removed, and whitespace runs collapsed to
/// one space with none at either end. `Ångström  Straße` becomes `angstrom straße`.
///
/// The search engine must normalize search values with this function too.
pub fn normalize(text: &str) -> String {
    let mut normalized = String::with_capacity(text.len());
    if text.is_ascii() {
        push_collapsed(
            &mut normalized,
            text.chars().map(|c| c.to_ascii_lowercase()),
        );
    } else {
        let folded = text
            .chars()
            .flat_map(char::to_lowercase)
            .nfkd()
            .filter(|c| !is_combining_mark(*c))
            .nfc();
        push_collapsed(&mut normalized, folded);
    }
    normalized
}

fn push_collapsed(out: &mut String, chars: impl Iterator<Item = char>) {
    let mut pending_space = false;
    for c in chars {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
}

/// Adds rows for a string, or for each part of a HumanName or Address.
pub(super) fn add_rows(param: &'static str, node: &Node<'_>, out: &mut Vec<StringRow>) {
    match node.value {
        Value::String(text) => push_row(param, text, out),
        Value::Object(map) => {
            for part in PARTS {
                match map.get(*part) {
                    Some(Value::String(text)) => push_row(param, text, out),
                    Some(Value::Array(items)) => {
                        for text in items.iter().filter_map(Value::as_str) {
                            push_row(param, text, out);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn push_row(param: &'static str, text: &str, out: &mut Vec<StringRow>) {
    let value = normalize(text);
    if value.is_empty() {
        return;
    }
    out.push(StringRow {
        param,
        value,
        exact: text.to_owned(),
    });
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalize_folds_case_accents_and_space() {
        assert_eq!(normalize("  John   SMITH "), "john smith");
        assert_eq!(normalize("Ångström\tStraße"), "angstrom straße");
        assert_eq!(normalize("Zoë Çelik-Núñez"), "zoe celik-nunez");
        assert_eq!(normalize("ＡＢＣ ﬁle"), "abc file");
        assert_eq!(normalize("Łódź"), "łodz");
        assert_eq!(normalize("王小明"), "王小明");
        assert_eq!(normalize("\u{a0}\n"), "");
    }
}
