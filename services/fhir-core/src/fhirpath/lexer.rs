//! Splits a FHIRPath expression into tokens.

use crate::error::{Error, Result};

/// One token and its byte span in the expression.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub kind: TokenKind,
    pub offset: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokenKind {
    /// A plain or backtick-delimited identifier. Keywords such as `and` or `as` are
    /// identifiers here, because after a `.` they name functions or elements.
    Identifier {
        name: String,
        delimited: bool,
    },
    /// A `'...'` string literal with its escapes decoded.
    String(String),
    /// A number literal as written, such as `0` or `1.5`.
    Number(String),
    /// `%name`, an environment variable.
    Environment(String),
    /// `$this`, `$index` or `$total`.
    Special(String),
    Dot,
    Comma,
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    Pipe,
    Equal,
    NotEqual,
    Equivalent,
    NotEquivalent,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Plus,
    Minus,
    Star,
    Slash,
    Ampersand,
    End,
}

/// Splits `text` into tokens, ending with [`TokenKind::End`].
pub(super) fn tokenize(text: &str) -> Result<Vec<Token>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut position = 0;

    while position < bytes.len() {
        let byte = bytes[position];
        if byte.is_ascii_whitespace() {
            position += 1;
            continue;
        }
        if text[position..].starts_with("//") {
            position = text[position..]
                .find('\n')
                .map_or(bytes.len(), |end| position + end);
            continue;
        }
        if text[position..].starts_with("/*") {
            let end = text[position + 2..]
                .find("*/")
                .ok_or_else(|| syntax_error(text, position, "unterminated comment"))?;
            position += end + 4;
            continue;
        }

        let start = position;
        let (kind, length) = match byte {
            b'.' => (TokenKind::Dot, 1),
            b',' => (TokenKind::Comma, 1),
            b'(' => (TokenKind::OpenParen, 1),
            b')' => (TokenKind::CloseParen, 1),
            b'[' => (TokenKind::OpenBracket, 1),
            b']' => (TokenKind::CloseBracket, 1),
            b'|' => (TokenKind::Pipe, 1),
            b'=' => (TokenKind::Equal, 1),
            b'~' => (TokenKind::Equivalent, 1),
            b'+' => (TokenKind::Plus, 1),
            b'-' => (TokenKind::Minus, 1),
            b'*' => (TokenKind::Star, 1),
            b'/' => (TokenKind::Slash, 1),
            b'&' => (TokenKind::Ampersand, 1),
            b'!' if bytes.get(position + 1) == Some(&b'=') => (TokenKind::NotEqual, 2),
            b'!' if bytes.get(position + 1) == Some(&b'~') => (TokenKind::NotEquivalent, 2),
            b'<' if bytes.get(position + 1) == Some(&b'=') => (TokenKind::LessOrEqual, 2),
            b'<' => (TokenKind::Less, 1),
            b'>' if bytes.get(position + 1) == Some(&b'=') => (TokenKind::GreaterOrEqual, 2),
            b'>' => (TokenKind::Greater, 1),
            b'\'' => lex_string(text, position)?,
            b'`' => lex_delimited_identifier(text, position)?,
            b'%' => {
                let length = identifier_length(&bytes[position + 1..]);
                if length == 0 {
                    return Err(syntax_error(text, position, "expected a name after `%`"));
                }
                let name = text[position + 1..position + 1 + length].to_owned();
                (TokenKind::Environment(name), length + 1)
            }
            b'$' => {
                let length = identifier_length(&bytes[position + 1..]);
                let name = text[position + 1..position + 1 + length].to_owned();
                if !matches!(name.as_str(), "this" | "index" | "total") {
                    return Err(syntax_error(
                        text,
                        position,
                        "expected `$this`, `$index` or `$total`",
                    ));
                }
                (TokenKind::Special(name), length + 1)
            }
            b'0'..=b'9' => {
                let length = number_length(&bytes[position..]);
                let literal = text[position..position + length].to_owned();
                (TokenKind::Number(literal), length)
            }
            byte if byte.is_ascii_alphabetic() || byte == b'_' => {
                let length = identifier_length(&bytes[position..]);
                let name = text[position..position + length].to_owned();
                let kind = TokenKind::Identifier {
                    name,
                    delimited: false,
                };
                (kind, length)
            }
            _ => return Err(syntax_error(text, position, "unexpected character")),
        };
        position += length;
        tokens.push(Token {
            kind,
            offset: start,
            end: position,
        });
    }

    tokens.push(Token {
        kind: TokenKind::End,
        offset: text.len(),
        end: text.len(),
    });
    Ok(tokens)
}

fn identifier_length(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

/// Returns the length of `digits` or `digits.digits`. A dot not followed by a digit is left for the
/// parser, so `1.first()` would still tokenize.
fn number_length(bytes: &[u8]) -> usize {
    let integer = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let has_fraction =
        bytes.get(integer) == Some(&b'.') && bytes.get(integer + 1).is_some_and(u8::is_ascii_digit);
    if !has_fraction {
        return integer;
    }
    let fraction = bytes[integer + 1..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    integer + 1 + fraction
}

/// Lexes a `'...'` literal starting at `start`. Returns the token and its length in bytes.
fn lex_string(text: &str, start: usize) -> Result<(TokenKind, usize)> {
    let (content, length) = lex_quoted(text, start, '\'')?;
    Ok((TokenKind::String(content), length))
}

fn lex_delimited_identifier(text: &str, start: usize) -> Result<(TokenKind, usize)> {
    let (name, length) = lex_quoted(text, start, '`')?;
    let kind = TokenKind::Identifier {
        name,
        delimited: true,
    };
    Ok((kind, length))
}

/// Decodes a quoted run with FHIRPath escapes (`\'`, `` \` ``, `\\`, `\/`, `\f`, `\n`,
/// `\r`, `\t`, `\uXXXX`).
fn lex_quoted(text: &str, start: usize, quote: char) -> Result<(String, usize)> {
    let mut content = String::new();
    let mut chars = text[start + 1..].char_indices();

    while let Some((index, c)) = chars.next() {
        if c == quote {
            return Ok((content, index + 2));
        }
        if c != '\\' {
            content.push(c);
            continue;
        }
        let escape_offset = start + 1 + index;
        let decoded = match chars.next().map(|(_, c)| c) {
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let digits: String = (0..4)
                    .filter_map(|_| chars.next().map(|(_, c)| c))
                    .collect();
                u32::from_str_radix(&digits, 16)
                    .ok()
                    .filter(|_| digits.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| syntax_error(text, escape_offset, "invalid \\u escape"))?
            }
            Some(c @ ('\'' | '`' | '"' | '\\' | '/')) => c,
            _ => return Err(syntax_error(text, escape_offset, "invalid escape")),
        };
        content.push(decoded);
    }
    Err(syntax_error(text, start, "unterminated literal"))
}

pub(super) fn syntax_error(text: &str, offset: usize, message: impl Into<String>) -> Error {
    Error::FhirPath {
        expression: text.to_owned(),
        offset,
        message: message.into(),
    }
}
