//! Parses the supported FHIRPath subset into an expression tree.
//!
//! Operator precedence follows the FHIRPath specification (N1, as used by FHIR R4), from
//! loosest to tightest: `implies`, `or`/`xor`, `and`, `=`/`!=`, `|`, `is`/`as`, then
//! invocation (`.`) and indexing (`[]`). Arithmetic, ordering comparisons, `in` and
//! `contains` fail to parse.

use std::ops::Range;

use serde_json::Value;

use super::lexer::{Token, TokenKind, syntax_error, tokenize};
use crate::error::Result;

/// A node of the expression tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// The focus: `$this`, or the implicit start of a relative path.
    This,
    /// `%resource`, `%rootResource` or `%context`: the resource being evaluated.
    Resource,
    /// A type name that starts a path, such as `Observation` in `Observation.code`. It
    /// keeps the focus items of that type.
    TypeRoot(String),
    Literal(Value),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(Box<Expr>, Function),
    TypeOperator(Box<Expr>, TypeOperator, String),
    /// `a | b | ...`, with the source span of each branch so a branch can be printed on
    /// its own.
    Union(Vec<(Expr, Range<usize>)>),
    Equality(Box<Expr>, bool, Box<Expr>),
    Logic(Box<Expr>, Logic, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeOperator {
    Is,
    As,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logic {
    And,
    Or,
    Xor,
    Implies,
}

/// The supported functions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Function {
    Where(Box<Expr>),
    Exists(Option<Box<Expr>>),
    Empty,
    Not,
    First,
    Last,
    Resolve,
    OfType(String),
    Extension(String),
}

pub(crate) const SUPPORTED_FUNCTIONS: &str = "where, exists, empty, not, first, last, resolve, \
     ofType, as, is, extension";

/// Parses `text` into an expression tree.
pub(crate) fn parse(text: &str) -> Result<Expr> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        text,
        tokens,
        position: 0,
        depth: 0,
    };
    let expr = parser.parse_implies()?;
    let token = parser.peek();
    if token.kind == TokenKind::End {
        return Ok(expr);
    }
    let message = match &token.kind {
        TokenKind::Identifier { name, .. } => format!("unsupported operator or token `{name}`"),
        _ => {
            let source = &text[token.offset..token.end];
            format!("unsupported operator or token `{source}`")
        }
    };
    Err(syntax_error(text, token.offset, message))
}

/// Deepest nesting of parentheses and function arguments accepted, so a hostile
/// expression cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    position: usize,
    /// Current nesting of `parse_implies` calls.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.position]
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.position].clone();
        if token.kind != TokenKind::End {
            self.position += 1;
        }
        token
    }

    /// Returns the offset just past the previous token, for branch spans.
    fn previous_end(&self) -> usize {
        self.position
            .checked_sub(1)
            .map_or(0, |previous| self.tokens[previous].end)
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Identifier { name, delimited: false } if name == keyword)
    }

    fn expect(&mut self, kind: TokenKind, what: &str) -> Result<()> {
        let token = self.advance();
        if token.kind == kind {
            Ok(())
        } else {
            Err(self.error_at(&token, format!("expected {what}")))
        }
    }

    fn error_at(&self, token: &Token, message: impl Into<String>) -> crate::error::Error {
        syntax_error(self.text, token.offset, message)
    }

    fn parse_implies(&mut self) -> Result<Expr> {
        if self.depth == MAX_DEPTH {
            let offset = self.peek().offset;
            return Err(syntax_error(
                self.text,
                offset,
                "expression is nested too deeply",
            ));
        }
        self.depth += 1;
        let mut left = self.parse_or()?;
        while self.peek_keyword("implies") {
            self.advance();
            let right = self.parse_or()?;
            left = Expr::Logic(Box::new(left), Logic::Implies, Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn parse_or(&mut self) -> Result<Expr> {
        let mut left = self.parse_and()?;
        loop {
            let logic = if self.peek_keyword("or") {
                Logic::Or
            } else if self.peek_keyword("xor") {
                Logic::Xor
            } else {
                return Ok(left);
            };
            self.advance();
            let right = self.parse_and()?;
            left = Expr::Logic(Box::new(left), logic, Box::new(right));
        }
    }

    fn parse_and(&mut self) -> Result<Expr> {
        let mut left = self.parse_equality()?;
        while self.peek_keyword("and") {
            self.advance();
            let right = self.parse_equality()?;
            left = Expr::Logic(Box::new(left), Logic::And, Box::new(right));
        }
        Ok(left)
    }

    fn parse_equality(&mut self) -> Result<Expr> {
        let mut left = self.parse_union()?;
        loop {
            let negated = match self.peek().kind {
                TokenKind::Equal => false,
                TokenKind::NotEqual => true,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.parse_union()?;
            left = Expr::Equality(Box::new(left), negated, Box::new(right));
        }
    }

    fn parse_union(&mut self) -> Result<Expr> {
        let start = self.peek().offset;
        let first = self.parse_type_operation()?;
        if self.peek().kind != TokenKind::Pipe {
            return Ok(first);
        }

        let mut branches = vec![(first, start..self.previous_end())];
        while self.peek().kind == TokenKind::Pipe {
            self.advance();
            let start = self.peek().offset;
            let branch = self.parse_type_operation()?;
            branches.push((branch, start..self.previous_end()));
        }
        Ok(Expr::Union(branches))
    }

    fn parse_type_operation(&mut self) -> Result<Expr> {
        let mut left = self.parse_postfix()?;
        loop {
            let operator = if self.peek_keyword("is") {
                TypeOperator::Is
            } else if self.peek_keyword("as") {
                TypeOperator::As
            } else {
                return Ok(left);
            };
            self.advance();
            let type_name = self.parse_type_specifier()?;
            left = Expr::TypeOperator(Box::new(left), operator, type_name);
        }
    }

    /// Parses `Type`, `FHIR.Type` or `System.Type`, returning the unqualified name.
    fn parse_type_specifier(&mut self) -> Result<String> {
        let token = self.advance();
        let TokenKind::Identifier { name, .. } = token.kind else {
            return Err(self.error_at(&token, "expected a type name"));
        };
        let is_namespace = name == "FHIR" || name == "System";
        if !is_namespace || self.peek().kind != TokenKind::Dot {
            return Ok(name);
        }
        self.advance();
        let token = self.advance();
        match token.kind {
            TokenKind::Identifier { name, .. } => Ok(name),
            _ => Err(self.error_at(&token, "expected a type name after the namespace")),
        }
    }

    fn parse_postfix(&mut self) -> Result<Expr> {
        let mut expr = self.parse_term()?;
        loop {
            match self.peek().kind {
                TokenKind::Dot => {
                    self.advance();
                    expr = self.parse_invocation(expr)?;
                }
                TokenKind::OpenBracket => {
                    self.advance();
                    let index = self.parse_implies()?;
                    self.expect(TokenKind::CloseBracket, "`]`")?;
                    expr = Expr::Index(Box::new(expr), Box::new(index));
                }
                _ => return Ok(expr),
            }
        }
    }

    fn parse_term(&mut self) -> Result<Expr> {
        let token = self.advance();
        match &token.kind {
            TokenKind::String(text) => Ok(Expr::Literal(Value::String(text.clone()))),
            TokenKind::Number(literal) => parse_number(literal)
                .map(Expr::Literal)
                .ok_or_else(|| self.error_at(&token, "invalid number")),
            TokenKind::Environment(name) => match name.as_str() {
                "resource" | "rootResource" | "context" => Ok(Expr::Resource),
                _ => Err(self.error_at(&token, format!("unsupported variable `%{name}`"))),
            },
            TokenKind::Special(name) if name == "this" => Ok(Expr::This),
            TokenKind::Special(name) => {
                Err(self.error_at(&token, format!("unsupported variable `${name}`")))
            }
            TokenKind::OpenParen => {
                let expr = self.parse_implies()?;
                self.expect(TokenKind::CloseParen, "`)`")?;
                Ok(expr)
            }
            TokenKind::Identifier { name, delimited } => {
                if !*delimited && (name == "true" || name == "false") {
                    return Ok(Expr::Literal(Value::Bool(name == "true")));
                }
                let starts_upper = name.starts_with(|c: char| c.is_ascii_uppercase());
                if starts_upper && self.peek().kind != TokenKind::OpenParen {
                    return Ok(Expr::TypeRoot(name.clone()));
                }
                self.position -= 1;
                self.parse_invocation(Expr::This)
            }
            TokenKind::Minus | TokenKind::Plus => {
                Err(self.error_at(&token, "unary operators are not supported"))
            }
            TokenKind::End => Err(self.error_at(&token, "unexpected end of expression")),
            _ => Err(self.error_at(&token, "expected a path, literal or `(`")),
        }
    }

    /// Parses `name` or `name(arguments)` applied to `receiver`.
    fn parse_invocation(&mut self, receiver: Expr) -> Result<Expr> {
        let token = self.advance();
        let TokenKind::Identifier { name, .. } = &token.kind else {
            return Err(self.error_at(&token, "expected a name after `.`"));
        };
        if self.peek().kind != TokenKind::OpenParen {
            return Ok(Expr::Member(Box::new(receiver), name.clone()));
        }
        self.advance();
        let receiver = Box::new(receiver);

        let expr = match name.as_str() {
            "where" => {
                let criteria = self.parse_implies()?;
                Expr::Call(receiver, Function::Where(Box::new(criteria)))
            }
            "exists" if self.peek().kind == TokenKind::CloseParen => {
                Expr::Call(receiver, Function::Exists(None))
            }
            "exists" => {
                let criteria = self.parse_implies()?;
                Expr::Call(receiver, Function::Exists(Some(Box::new(criteria))))
            }
            "empty" => Expr::Call(receiver, Function::Empty),
            "not" => Expr::Call(receiver, Function::Not),
            "first" => Expr::Call(receiver, Function::First),
            "last" => Expr::Call(receiver, Function::Last),
            "resolve" => Expr::Call(receiver, Function::Resolve),
            "ofType" => {
                let type_name = self.parse_type_specifier()?;
                Expr::Call(receiver, Function::OfType(type_name))
            }
            "as" => {
                let type_name = self.parse_type_specifier()?;
                Expr::TypeOperator(receiver, TypeOperator::As, type_name)
            }
            "is" => {
                let type_name = self.parse_type_specifier()?;
                Expr::TypeOperator(receiver, TypeOperator::Is, type_name)
            }
            "extension" => {
                let argument = self.advance();
                let TokenKind::String(url) = argument.kind else {
                    return Err(self.error_at(&argument, "expected the extension URL as a string"));
                };
                Expr::Call(receiver, Function::Extension(url))
            }
            _ => {
                let message =
                    format!("unsupported function `{name}`; supported: {SUPPORTED_FUNCTIONS}");
                return Err(self.error_at(&token, message));
            }
        };
        self.expect(TokenKind::CloseParen, "`)`")?;
        Ok(expr)
    }
}

fn parse_number(literal: &str) -> Option<Value> {
    if let Ok(integer) = literal.parse::<u64>() {
        return Some(Value::from(integer));
    }
    let float: f64 = literal.parse().ok()?;
    serde_json::Number::from_f64(float).map(Value::Number)
}
