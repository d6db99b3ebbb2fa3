//! Evaluating a parsed selector against one message, in SQL's three-valued logic: a
//! missing header is NULL, and a comparison with NULL is unknown (`None`), which selects
//! nothing, and NOT of unknown is unknown.
//!
//! STOMP headers are text. As ActiveMQ does with `convertStringExpressions`, a header
//! compared with (or computed with) a number is read as a number, and one compared with
//! TRUE or FALSE as a boolean; a header that does not read so makes the comparison
//! unknown. Two texts compare as text, in Unicode order.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::parse::{Arith, Cmp, Expr};
use super::Headers;

/// A value in an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(Cow<'a, str>),
}

/// What an identifier names: a header, or one of the JMS fields ActiveMQ maps to its
/// STOMP headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Header(String),
    /// `JMSPriority`: the `priority` header, 4 when there is none.
    Priority,
    /// `JMSDeliveryMode`: 'PERSISTENT' or 'NON_PERSISTENT', from `persistent`.
    DeliveryMode,
}

/// The JMS names and the STOMP headers they read.
const JMS_HEADERS: [(&str, &str); 7] = [
    ("JMSType", "type"),
    ("JMSCorrelationID", "correlation-id"),
    ("JMSMessageID", "message-id"),
    ("JMSTimestamp", "timestamp"),
    ("JMSExpiration", "expires"),
    ("JMSReplyTo", "reply-to"),
    ("JMSDestination", "destination"),
];

impl Field {
    pub fn named(name: &str) -> Field {
        match name {
            "JMSPriority" => Field::Priority,
            "JMSDeliveryMode" => Field::DeliveryMode,
            _ => Field::Header(
                JMS_HEADERS
                    .iter()
                    .find(|(jms, _)| *jms == name)
                    .map_or(name, |(_, header)| header)
                    .to_string(),
            ),
        }
    }

    fn read<'m>(&self, message: &'m dyn Headers) -> Value<'m> {
        match self {
            Field::Header(name) => message.header(name).map_or(Value::Null, Value::Str),
            Field::Priority => message
                .header("priority")
                .map_or(Value::Long(4), Value::Str),
            Field::DeliveryMode => {
                let persistent = message.header("persistent").is_some_and(|p| p == "true");
                Value::Str(Cow::Borrowed(if persistent {
                    "PERSISTENT"
                } else {
                    "NON_PERSISTENT"
                }))
            }
        }
    }
}

/// A compiled LIKE pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Like(Vec<Part>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// `%`: any run of characters.
    Any,
    /// `_`: one character.
    One,
    Char(char),
}

impl Like {
    pub fn compile(pattern: &str, escape: Option<char>) -> Result<Like, String> {
        let mut parts = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            parts.push(match c {
                c if Some(c) == escape => match chars.next() {
                    Some(escaped) => Part::Char(escaped),
                    None => return Err("the LIKE pattern ends with its escape character".into()),
                },
                '%' => Part::Any,
                '_' => Part::One,
                c => Part::Char(c),
            });
        }
        Ok(Like(parts))
    }

    /// Whether `text` matches: the usual wildcard walk, going back to the last `%` on a
    /// mismatch, so at most `text × pattern` steps.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let parts = &self.0;
        let (mut t, mut p) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match parts.get(p) {
                Some(Part::Any) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(Part::One) => {
                    t += 1;
                    p += 1;
                }
                Some(Part::Char(c)) if *c == text[t] => {
                    t += 1;
                    p += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        parts[p..].iter().all(|part| *part == Part::Any)
    }
}

/// A number, for arithmetic and numeric comparison.
#[derive(Debug, Clone, Copy)]
enum Number {
    Long(i64),
    Double(f64),
}

impl Number {
    fn of(value: &Value) -> Option<Number> {
        match value {
            Value::Long(n) => Some(Number::Long(*n)),
            Value::Double(n) => Some(Number::Double(*n)),
            Value::Str(text) => {
                let text = text.trim();
                text.parse::<i64>()
                    .map(Number::Long)
                    .ok()
                    .or_else(|| text.parse::<f64>().ok().map(Number::Double))
            }
            Value::Null | Value::Bool(_) => None,
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Long(n) => n as f64,
            Number::Double(n) => n,
        }
    }

    fn value(self) -> Value<'static> {
        match self {
            Number::Long(n) => Value::Long(n),
            Number::Double(n) => Value::Double(n),
        }
    }
}

/// A value as a condition: a boolean, or a header reading `true` or `false`.
pub(super) fn truth(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Str(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Value::Str(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Evaluates `expr` against `message`.
pub fn eval<'m>(expr: &'m Expr, message: &'m dyn Headers) -> Value<'m> {
    let condition = |expr: &'m Expr| truth(&eval(expr, message));
    let tri = |answer: Option<bool>| answer.map_or(Value::Null, Value::Bool);
    match expr {
        Expr::Literal(value) => value.clone(),
        Expr::Field(field) => field.read(message),
        Expr::Not(operand) => tri(condition(operand).map(|b| !b)),
        // False if any is false, else unknown if any is unknown; OR the other way round.
        Expr::And(operands) => tri(all_or_any(operands.iter().map(condition), false)),
        Expr::Or(operands) => tri(all_or_any(operands.iter().map(condition), true)),
        Expr::Compare(cmp, left, right) => {
            tri(compare(*cmp, &eval(left, message), &eval(right, message)))
        }
        Expr::Arith(first, rest) => {
            let mut total = Number::of(&eval(first, message));
            for (op, operand) in rest {
                total = match (total, Number::of(&eval(operand, message))) {
                    (Some(a), Some(b)) => arithmetic(*op, a, b),
                    _ => None,
                };
            }
            total.map_or(Value::Null, Number::value)
        }
        Expr::Negate(operand) => match Number::of(&eval(operand, message)) {
            Some(Number::Long(n)) => n
                .checked_neg()
                .map_or(Value::Double(-(n as f64)), Value::Long),
            Some(Number::Double(n)) => Value::Double(-n),
            None => Value::Null,
        },
        Expr::Between(value, low, high) => {
            let value = eval(value, message);
            let above = compare(Cmp::Ge, &value, &eval(low, message));
            let below = compare(Cmp::Le, &value, &eval(high, message));
            tri(all_or_any([above, below].into_iter(), false))
        }
        Expr::In(value, list) => {
            let value = eval(value, message);
            if value == Value::Null {
                return Value::Null;
            }
            let found = list
                .iter()
                .any(|item| compare(Cmp::Eq, &value, item) == Some(true));
            Value::Bool(found)
        }
        Expr::Like(value, like) => match eval(value, message) {
            Value::Str(text) => Value::Bool(like.matches(&text)),
            _ => Value::Null,
        },
        Expr::IsNull(value) => Value::Bool(eval(value, message) == Value::Null),
    }
}

/// AND (`decides` false) or OR (`decides` true) in three-valued logic: `decides` if any
/// operand is it, else unknown if any is unknown, else the other.
fn all_or_any(operands: impl Iterator<Item = Option<bool>>, decides: bool) -> Option<bool> {
    let mut unknown = false;
    for operand in operands {
        match operand {
            Some(b) if b == decides => return Some(decides),
            Some(_) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(!decides)
}

/// `left CMP right`, or unknown when either is NULL or they cannot be compared.
fn compare(cmp: Cmp, left: &Value, right: &Value) -> Option<bool> {
    let order = match (left, right) {
        (Value::Null, _) | (_, Value::Null) => return None,
        (Value::Str(a), Value::Str(b)) => a.as_ref().cmp(b.as_ref()),
        (Value::Bool(_), _) | (_, Value::Bool(_)) => {
            let (a, b) = (truth(left)?, truth(right)?);
            return match cmp {
                Cmp::Eq => Some(a == b),
                Cmp::Ne => Some(a != b),
                _ => None,
            };
        }
        _ => match (Number::of(left)?, Number::of(right)?) {
            (Number::Long(a), Number::Long(b)) => a.cmp(&b),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64())?,
        },
    };
    Some(match cmp {
        Cmp::Eq => order == Ordering::Equal,
        Cmp::Ne => order != Ordering::Equal,
        Cmp::Lt => order == Ordering::Less,
        Cmp::Le => order != Ordering::Greater,
        Cmp::Gt => order == Ordering::Greater,
        Cmp::Ge => order != Ordering::Less,
    })
}

/// Whole numbers stay whole (division truncates, as in Java) unless they overflow;
/// division or remainder by a whole zero is NULL.
fn arithmetic(op: Arith, a: Number, b: Number) -> Option<Number> {
    if let (Number::Long(x), Number::Long(y)) = (a, b) {
        let whole = match op {
            Arith::Add => x.checked_add(y),
            Arith::Sub => x.checked_sub(y),
            Arith::Mul => x.checked_mul(y),
            Arith::Div | Arith::Rem if y == 0 => return None,
            Arith::Div => x.checked_div(y),
            Arith::Rem => x.checked_rem(y),
        };
        if let Some(n) = whole {
            return Some(Number::Long(n));
        }
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    Some(Number::Double(match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => x / y,
        Arith::Rem => x % y,
    }))
}
