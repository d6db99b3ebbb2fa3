//! JMS message selectors, as ActiveMQ accepts them on a SUBSCRIBE's `selector` header:
//! SQL-92 conditions over a message's headers (`color = 'blue' AND weight > 2500`).
//!
//! Pure: `Selector::parse` (`lex`, then `parse`) turns the text into an expression or a
//! `SelectorError` that names the column; `Selector::matches` evaluates it (`eval`)
//! against anything that can look up a header. The JMS names ActiveMQ maps to STOMP
//! headers (`JMSPriority`, `JMSType`, `JMSCorrelationID`, `JMSMessageID`,
//! `JMSTimestamp`, `JMSExpiration`, `JMSReplyTo`, `JMSDeliveryMode`, `JMSDestination`)
//! read those headers. The text's length, its nesting and its LIKE patterns are bounded
//! (`Limits`), and chains of AND, OR and arithmetic are kept flat, so a hostile selector
//! cannot exhaust the stack, and costs at most linear time to parse and bounded time to
//! evaluate.

mod eval;
mod lex;
mod parse;

use std::borrow::Cow;
use std::fmt;

/// A message as a selector sees it: its headers by name, the broker's own included
/// (`message-id`, `destination`, `persistent`).
pub trait Headers {
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// How large a selector may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Characters.
    pub max_length: usize,
    /// Parentheses, NOTs and signs, nested.
    pub max_depth: usize,
    /// Characters of one LIKE pattern: matching costs up to pattern × text steps.
    pub max_pattern: usize,
}

/// Why a selector was refused, and where (a column from 1, in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    pub column: usize,
    pub message: String,
}

impl SelectorError {
    fn at(column: usize, message: impl Into<String>) -> SelectorError {
        SelectorError {
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

/// A parsed selector.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    expr: parse::Expr,
}

impl Selector {
    pub fn parse(text: &str, limits: Limits) -> Result<Selector, SelectorError> {
        let length = text.chars().count();
        if length > limits.max_length {
            return Err(SelectorError::at(
                limits.max_length + 1,
                format!(
                    "the selector is {length} characters long; the limit is {}",
                    limits.max_length
                ),
            ));
        }
        let tokens = lex::tokens(text)?;
        let expr = parse::Parser::new(tokens, length + 1, limits).selector()?;
        Ok(Selector {
            text: text.to_string(),
            expr,
        })
    }

    /// Whether the message is selected: the condition is true (not false, not unknown).
    pub fn matches(&self, message: &dyn Headers) -> bool {
        eval::truth(&eval::eval(&self.expr, message)) == Some(true)
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests;
