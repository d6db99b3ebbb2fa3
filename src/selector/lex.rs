//! The selector's tokens: identifiers and keywords (case-insensitive, as in SQL),
//! string literals in single quotes (`''` is a quote), integer (decimal, `0x` hex, an
//! optional `L`) and decimal literals (`1.5`, `.5`, `1e3`, an optional `F` or `D`), and
//! the operators. Each token keeps the character column it starts at, for errors.

use super::SelectorError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Ident(String),
    Keyword(Keyword),
    Str(String),
    Long(i64),
    Double(f64),
    /// `=`, `<>`, `<`, `<=`, `>`, `>=`, `+`, `-`, `*`, `/`, `%`, `(`, `)`, `,`.
    Symbol(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    And,
    Or,
    Not,
    Between,
    In,
    Like,
    Escape,
    Is,
    Null,
    True,
    False,
}

impl Keyword {
    fn parse(word: &str) -> Option<Keyword> {
        const ALL: [(&str, Keyword); 11] = [
            ("AND", Keyword::And),
            ("OR", Keyword::Or),
            ("NOT", Keyword::Not),
            ("BETWEEN", Keyword::Between),
            ("IN", Keyword::In),
            ("LIKE", Keyword::Like),
            ("ESCAPE", Keyword::Escape),
            ("IS", Keyword::Is),
            ("NULL", Keyword::Null),
            ("TRUE", Keyword::True),
            ("FALSE", Keyword::False),
        ];
        ALL.iter()
            .find(|(text, _)| text.eq_ignore_ascii_case(word))
            .map(|(_, keyword)| *keyword)
    }
}

/// A token and the column (from 1, in characters) where it starts.
pub(super) type Located = (Token, usize);

const SYMBOLS: [&str; 14] = [
    "<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",",
];

/// Splits `text` into tokens.
pub(super) fn tokens(text: &str) -> Result<Vec<Located>, SelectorError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let (value, next) = string(&chars, i)?;
            out.push((Token::Str(value), column));
            i = next;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let (token, next) = number(&chars, i)?;
            out.push((token, column));
            i = next;
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let end = (i..chars.len())
                .find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '$'))
                .unwrap_or(chars.len());
            let word: String = chars[i..end].iter().collect();
            let token = match Keyword::parse(&word) {
                Some(keyword) => Token::Keyword(keyword),
                None => Token::Ident(word),
            };
            out.push((token, column));
            i = end;
        } else {
            let symbol = SYMBOLS.iter().find(|symbol| {
                symbol
                    .chars()
                    .enumerate()
                    .all(|(k, s)| chars.get(i + k) == Some(&s))
            });
            match symbol {
                Some(symbol) => {
                    out.push((Token::Symbol(symbol), column));
                    i += symbol.len();
                }
                None => return Err(SelectorError::at(column, format!("unexpected '{c}'"))),
            }
        }
    }
    Ok(out)
}

/// A string literal from the quote at `start`; the value and the index after it.
fn string(chars: &[char], start: usize) -> Result<(String, usize), SelectorError> {
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(SelectorError::at(
                    start + 1,
                    "a string that is never closed (a quote inside one is written '')",
                ))
            }
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                value.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((value, i + 1)),
            Some(&c) => {
                value.push(c);
                i += 1;
            }
        }
    }
}

/// A numeric literal from `start`; the token and the index after it.
fn number(chars: &[char], start: usize) -> Result<(Token, usize), SelectorError> {
    let column = start + 1;
    let is_hex = chars[start] == '0' && matches!(chars.get(start + 1), Some('x' | 'X'));
    if is_hex {
        let end = (start + 2..chars.len())
            .find(|&j| !chars[j].is_ascii_hexdigit())
            .unwrap_or(chars.len());
        let digits: String = chars[start + 2..end].iter().collect();
        let value = i64::from_str_radix(&digits, 16).map_err(|_| {
            SelectorError::at(column, format!("'0x{digits}' is not a 64-bit number"))
        })?;
        let end = skip_suffix(chars, end, &['l', 'L']);
        return Ok((Token::Long(value), end));
    }
    let mut end = start;
    let mut decimal = false;
    while let Some(&c) = chars.get(end) {
        if c.is_ascii_digit() {
            end += 1;
        } else if c == '.' && !decimal {
            decimal = true;
            end += 1;
        } else if matches!(c, 'e' | 'E') {
            let mut next = end + 1;
            if matches!(chars.get(next), Some('+' | '-')) {
                next += 1;
            }
            if !chars.get(next).is_some_and(char::is_ascii_digit) {
                break;
            }
            decimal = true;
            end = next;
            while chars.get(end).is_some_and(char::is_ascii_digit) {
                end += 1;
            }
            break;
        } else {
            break;
        }
    }
    let text: String = chars[start..end].iter().collect();
    if decimal || matches!(chars.get(end), Some('f' | 'F' | 'd' | 'D')) {
        let value: f64 = text
            .parse()
            .map_err(|_| SelectorError::at(column, format!("'{text}' is not a number")))?;
        return Ok((
            Token::Double(value),
            skip_suffix(chars, end, &['f', 'F', 'd', 'D']),
        ));
    }
    let value: i64 = text
        .parse()
        .map_err(|_| SelectorError::at(column, format!("'{text}' is not a 64-bit number")))?;
    Ok((Token::Long(value), skip_suffix(chars, end, &['l', 'L'])))
}

fn skip_suffix(chars: &[char], at: usize, suffixes: &[char]) -> usize {
    match chars.get(at) {
        Some(c) if suffixes.contains(c) => at + 1,
        _ => at,
    }
}
