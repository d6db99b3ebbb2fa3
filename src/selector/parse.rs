//! The selector's grammar, by recursive descent, lowest precedence first:
//!
//! ```text
//! or         := and (OR and)*
//! and        := not (AND not)*
//! not        := NOT not | comparison
//! comparison := sum [ (= | <> | < | <= | > | >=) sum
//!                   | [NOT] BETWEEN sum AND sum
//!                   | [NOT] IN '(' literal (',' literal)* ')'
//!                   | [NOT] LIKE string [ESCAPE string]
//!                   | IS [NOT] NULL ]
//! sum        := product ((+ | -) product)*
//! product    := unary ((* | / | %) unary)*
//! unary      := (+ | -) unary | primary
//! primary    := literal | identifier | '(' or ')'
//! ```
//!
//! Every operand is checked for its kind as it is built (no `'a' AND 1`, no `x LIKE 3`),
//! and nesting is bounded, so a hostile selector cannot exhaust the stack.

use super::eval::{Field, Like, Value};
use super::lex::{Keyword, Located, Token};
use super::{Limits, SelectorError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    Literal(Value<'static>),
    Field(Field),
    Not(Box<Expr>),
    /// Chains are flat, so an expression is only as deep as its nesting, however long.
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Compare(Cmp, Box<Expr>, Box<Expr>),
    /// The first operand, then each operator and operand, left to right.
    Arith(Box<Expr>, Vec<(Arith, Expr)>),
    Negate(Box<Expr>),
    Between(Box<Expr>, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Value<'static>>),
    Like(Box<Expr>, Like),
    IsNull(Box<Expr>),
}

/// What an expression yields, as far as the parser can tell (a header may be anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Number,
    Text,
    Any,
}

impl Expr {
    fn kind(&self) -> Kind {
        match self {
            Expr::Literal(Value::Bool(_)) => Kind::Bool,
            Expr::Literal(Value::Long(_) | Value::Double(_)) => Kind::Number,
            Expr::Literal(Value::Str(_)) => Kind::Text,
            Expr::Literal(Value::Null) | Expr::Field(_) => Kind::Any,
            Expr::Arith(..) | Expr::Negate(_) => Kind::Number,
            _ => Kind::Bool,
        }
    }
}

pub(super) struct Parser {
    tokens: Vec<Located>,
    next: usize,
    /// Column just past the text, for "expected ... at the end".
    end: usize,
    depth: usize,
    limits: Limits,
}

impl Parser {
    pub fn new(tokens: Vec<Located>, end: usize, limits: Limits) -> Parser {
        Parser {
            tokens,
            next: 0,
            end,
            depth: 0,
            limits,
        }
    }

    /// The whole selector: one condition and nothing after it.
    pub fn selector(&mut self) -> Result<Expr, SelectorError> {
        let column = self.column();
        let expr = self.or()?;
        if let Some((token, column)) = self.tokens.get(self.next) {
            return Err(SelectorError::at(
                *column,
                format!("unexpected {} after a complete condition", describe(token)),
            ));
        }
        expect_kind(&expr, Kind::Bool, column, "the selector")?;
        Ok(expr)
    }

    fn column(&self) -> usize {
        self.tokens
            .get(self.next)
            .map_or(self.end, |(_, column)| *column)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(token, _)| token)
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> bool {
        if self.peek() == Some(&Token::Keyword(keyword)) {
            self.next += 1;
            return true;
        }
        false
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol) {
            self.next += 1;
            return true;
        }
        false
    }

    fn expected<T>(&self, what: &str) -> Result<T, SelectorError> {
        let found = self.peek().map_or_else(|| "the end".to_string(), describe);
        Err(SelectorError::at(
            self.column(),
            format!("expected {what}, found {found}"),
        ))
    }

    /// Enters one more level of nesting, refusing past the limit.
    fn deeper(&mut self) -> Result<(), SelectorError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(SelectorError::at(
                self.column(),
                format!(
                    "nested more than {} deep (stomp.max_selector_depth)",
                    self.limits.max_depth
                ),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, SelectorError> {
        self.logical(Keyword::Or, Parser::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Expr, SelectorError> {
        self.logical(Keyword::And, Parser::not, Expr::And)
    }

    /// `operand (KEYWORD operand)*`, each operand a condition.
    fn logical(
        &mut self,
        keyword: Keyword,
        operand: fn(&mut Parser) -> Result<Expr, SelectorError>,
        join: fn(Vec<Expr>) -> Expr,
    ) -> Result<Expr, SelectorError> {
        let column = self.column();
        let first = operand(self)?;
        if self.peek() != Some(&Token::Keyword(keyword)) {
            return Ok(first);
        }
        let what = format!("an operand of {}", format!("{keyword:?}").to_uppercase());
        expect_kind(&first, Kind::Bool, column, &what)?;
        let mut operands = vec![first];
        while self.eat_keyword(keyword) {
            let column = self.column();
            let next = operand(self)?;
            expect_kind(&next, Kind::Bool, column, &what)?;
            operands.push(next);
        }
        Ok(join(operands))
    }

    fn not(&mut self) -> Result<Expr, SelectorError> {
        if self.eat_keyword(Keyword::Not) {
            self.deeper()?;
            let column = self.column();
            let operand = self.not()?;
            self.depth -= 1;
            expect_kind(&operand, Kind::Bool, column, "the operand of NOT")?;
            return Ok(Expr::Not(Box::new(operand)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SelectorError> {
        let column = self.column();
        let left = self.sum()?;
        const CMPS: [(&str, Cmp); 6] = [
            ("=", Cmp::Eq),
            ("<>", Cmp::Ne),
            ("<", Cmp::Lt),
            ("<=", Cmp::Le),
            (">", Cmp::Gt),
            (">=", Cmp::Ge),
        ];
        if let Some(Token::Symbol(symbol)) = self.peek() {
            if let Some((_, cmp)) = CMPS.iter().find(|(s, _)| s == symbol) {
                self.next += 1;
                let right = self.sum()?;
                return Ok(Expr::Compare(*cmp, Box::new(left), Box::new(right)));
            }
        }
        if self.eat_keyword(Keyword::Is) {
            let negated = self.eat_keyword(Keyword::Not);
            if !self.eat_keyword(Keyword::Null) {
                return self.expected("NULL after IS");
            }
            return Ok(negate_if(negated, Expr::IsNull(Box::new(left))));
        }
        let negated = self.eat_keyword(Keyword::Not);
        if self.eat_keyword(Keyword::Between) {
            let low = self.sum()?;
            if !self.eat_keyword(Keyword::And) {
                return self.expected("AND in BETWEEN");
            }
            let high = self.sum()?;
            for operand in [&left, &low, &high] {
                expect_kind(operand, Kind::Number, column, "an operand of BETWEEN")?;
            }
            let between = Expr::Between(Box::new(left), Box::new(low), Box::new(high));
            return Ok(negate_if(negated, between));
        }
        if self.eat_keyword(Keyword::In) {
            let list = self.in_list()?;
            return Ok(negate_if(negated, Expr::In(Box::new(left), list)));
        }
        if self.eat_keyword(Keyword::Like) {
            expect_kind(&left, Kind::Text, column, "the operand of LIKE")?;
            let like = self.like_pattern()?;
            return Ok(negate_if(negated, Expr::Like(Box::new(left), like)));
        }
        if negated {
            return self.expected("BETWEEN, IN or LIKE after NOT");
        }
        Ok(left)
    }

    fn in_list(&mut self) -> Result<Vec<Value<'static>>, SelectorError> {
        if !self.eat_symbol("(") {
            return self.expected("'(' after IN");
        }
        let mut list = Vec::new();
        loop {
            match self.peek().cloned() {
                Some(Token::Str(text)) => list.push(Value::Str(text.into())),
                Some(Token::Long(n)) => list.push(Value::Long(n)),
                Some(Token::Double(n)) => list.push(Value::Double(n)),
                _ => return self.expected("a literal in the IN list"),
            }
            self.next += 1;
            if self.eat_symbol(")") {
                return Ok(list);
            }
            if !self.eat_symbol(",") {
                return self.expected("',' or ')' in the IN list");
            }
        }
    }

    fn like_pattern(&mut self) -> Result<Like, SelectorError> {
        let column = self.column();
        let Some(Token::Str(pattern)) = self.peek().cloned() else {
            return self.expected("a string pattern after LIKE");
        };
        if pattern.chars().count() > self.limits.max_pattern {
            return Err(SelectorError::at(
                column,
                format!(
                    "a LIKE pattern of more than {} characters (stomp.max_like_pattern)",
                    self.limits.max_pattern
                ),
            ));
        }
        self.next += 1;
        let mut escape = None;
        if self.eat_keyword(Keyword::Escape) {
            let at = self.column();
            match self.peek().cloned() {
                Some(Token::Str(text)) if text.chars().count() == 1 => {
                    escape = text.chars().next();
                    self.next += 1;
                }
                Some(Token::Str(_)) => {
                    return Err(SelectorError::at(
                        at,
                        "ESCAPE takes a string of one character",
                    ))
                }
                _ => return self.expected("a one-character string after ESCAPE"),
            }
        }
        Like::compile(&pattern, escape).map_err(|why| SelectorError::at(column, why))
    }

    fn sum(&mut self) -> Result<Expr, SelectorError> {
        self.arithmetic(&[("+", Arith::Add), ("-", Arith::Sub)], Parser::product)
    }

    fn product(&mut self) -> Result<Expr, SelectorError> {
        self.arithmetic(
            &[("*", Arith::Mul), ("/", Arith::Div), ("%", Arith::Rem)],
            Parser::unary,
        )
    }

    /// `operand (OP operand)*` for the arithmetic operators `ops`.
    fn arithmetic(
        &mut self,
        ops: &[(&str, Arith)],
        operand: fn(&mut Parser) -> Result<Expr, SelectorError>,
    ) -> Result<Expr, SelectorError> {
        let column = self.column();
        let first = operand(self)?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Token::Symbol(symbol)) => ops.iter().find(|(s, _)| s == symbol),
                _ => None,
            };
            let Some((_, op)) = op else {
                break;
            };
            self.next += 1;
            if rest.is_empty() {
                expect_kind(&first, Kind::Number, column, "an arithmetic operand")?;
            }
            let at = self.column();
            let next = operand(self)?;
            expect_kind(&next, Kind::Number, at, "an arithmetic operand")?;
            rest.push((*op, next));
        }
        if rest.is_empty() {
            return Ok(first);
        }
        Ok(Expr::Arith(Box::new(first), rest))
    }

    fn unary(&mut self) -> Result<Expr, SelectorError> {
        let sign = if self.eat_symbol("-") {
            Some(true)
        } else if self.eat_symbol("+") {
            Some(false)
        } else {
            None
        };
        let Some(negative) = sign else {
            return self.primary();
        };
        self.deeper()?;
        let column = self.column();
        let operand = self.unary()?;
        self.depth -= 1;
        expect_kind(&operand, Kind::Number, column, "the operand of a sign")?;
        Ok(match (negative, operand) {
            // A negative literal stays a literal (so `-9223372036854775808` is not
            // needed to overflow first).
            (true, Expr::Literal(Value::Long(n))) => Expr::Literal(Value::Long(n.wrapping_neg())),
            (true, Expr::Literal(Value::Double(n))) => Expr::Literal(Value::Double(-n)),
            (true, operand) => Expr::Negate(Box::new(operand)),
            (false, operand) => operand,
        })
    }

    fn primary(&mut self) -> Result<Expr, SelectorError> {
        let Some(token) = self.peek().cloned() else {
            return self.expected("an operand");
        };
        let expr = match token {
            Token::Str(text) => Expr::Literal(Value::Str(text.into())),
            Token::Long(n) => Expr::Literal(Value::Long(n)),
            Token::Double(n) => Expr::Literal(Value::Double(n)),
            Token::Keyword(Keyword::True) => Expr::Literal(Value::Bool(true)),
            Token::Keyword(Keyword::False) => Expr::Literal(Value::Bool(false)),
            Token::Keyword(Keyword::Null) => Expr::Literal(Value::Null),
            Token::Ident(name) => Expr::Field(Field::named(&name)),
            Token::Symbol("(") => {
                self.next += 1;
                self.deeper()?;
                let inner = self.or()?;
                self.depth -= 1;
                if !self.eat_symbol(")") {
                    return self.expected("')'");
                }
                return Ok(inner);
            }
            _ => return self.expected("an operand"),
        };
        self.next += 1;
        Ok(expr)
    }
}

fn negate_if(negated: bool, expr: Expr) -> Expr {
    if negated {
        Expr::Not(Box::new(expr))
    } else {
        expr
    }
}

/// Refuses an operand whose kind cannot be `wanted` (a header can be anything).
fn expect_kind(expr: &Expr, wanted: Kind, column: usize, what: &str) -> Result<(), SelectorError> {
    let kind = expr.kind();
    if kind == wanted || kind == Kind::Any {
        return Ok(());
    }
    let name = |kind: Kind| match kind {
        Kind::Bool => "a condition",
        Kind::Number => "a number",
        Kind::Text => "a string",
        Kind::Any => "a value",
    };
    Err(SelectorError::at(
        column,
        format!("{what} must be {}, not {}", name(wanted), name(kind)),
    ))
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ident(name) => format!("'{name}'"),
        Token::Keyword(keyword) => format!("{keyword:?}").to_uppercase(),
        Token::Str(text) => format!("the string '{text}'"),
        Token::Long(n) => format!("the number {n}"),
        Token::Double(n) => format!("the number {n}"),
        Token::Symbol(symbol) => format!("'{symbol}'"),
    }
}
