//! Table tests: what selects which message, and what is refused where.

use std::borrow::Cow;

use super::*;

const LIMITS: Limits = Limits {
    max_length: 4096,
    max_depth: 64,
    max_pattern: 256,
};

struct Message(&'static [(&'static str, &'static str)]);

impl Headers for Message {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| Cow::Borrowed(*v))
    }
}

const BLUE: Message = Message(&[
    ("color", "blue"),
    ("weight", "2600"),
    ("price", "9.5"),
    ("type", "car"),
    ("correlation-id", "c-17"),
    ("message-id", "mmq-5-0"),
    ("persistent", "true"),
    ("urgent", "true"),
    ("name", "a_b%c"),
]);

const RED: Message = Message(&[("color", "red"), ("weight", "100"), ("priority", "9")]);

#[test]
fn selects_as_activemq_documents() {
    let table: &[(&str, bool, bool)] = &[
        // selector, selects BLUE, selects RED
        ("color = 'blue'", true, false),
        ("color <> 'blue'", false, true),
        (
            "JMSType = 'car' AND color = 'blue' AND weight > 2500",
            true,
            false,
        ),
        ("color = 'blue' OR weight < 200", true, true),
        ("NOT color = 'blue'", false, true),
        // Headers read as numbers where compared with one.
        ("weight > 2500", true, false),
        ("weight >= 100 AND weight <= 100", false, true),
        ("price < 10", true, false),
        ("price = 9.5", true, false),
        ("weight BETWEEN 100 AND 2000", false, true),
        ("weight NOT BETWEEN 100 AND 2000", true, false),
        ("weight + 400 = 3000", true, false),
        ("weight * 2 - 200 >= 5000", true, false),
        ("weight * 2 - 200 > 5000", false, false),
        ("weight / 100 = 26", true, false),
        ("weight % 7 = 3", true, false),
        ("-weight < -2500", true, false),
        ("color IN ('blue', 'green')", true, false),
        ("color NOT IN ('blue', 'green')", false, true),
        ("color LIKE 'bl%'", true, false),
        ("color LIKE '_ed'", false, true),
        ("color NOT LIKE 'b%'", false, true),
        ("name LIKE 'a\\_b\\%c' ESCAPE '\\'", true, false),
        ("name LIKE 'a!_%' ESCAPE '!'", true, false),
        ("color IS NULL", false, false),
        ("size IS NULL", true, true),
        ("size IS NOT NULL", false, false),
        // A missing header makes a comparison unknown: neither it nor its NOT selects.
        ("size = 1", false, false),
        ("NOT size = 1", false, false),
        ("size = 1 OR color = 'red'", false, true),
        // JMS fields.
        ("JMSPriority = 4", true, false),
        ("JMSPriority > 5", false, true),
        ("JMSCorrelationID = 'c-17'", true, false),
        ("JMSMessageID = 'mmq-5-0'", true, false),
        ("JMSDeliveryMode = 'PERSISTENT'", true, false),
        ("JMSDeliveryMode = 'NON_PERSISTENT'", false, true),
        // A header as a condition.
        ("urgent", true, false),
        ("urgent = TRUE", true, false),
        ("TRUE", true, true),
        ("FALSE OR color = 'red'", false, true),
        // Keywords are not case-sensitive; identifiers are.
        ("color = 'blue' and Weight is null", true, false),
        (
            "(color = 'red' OR color = 'blue') AND NOT (weight < 1000)",
            true,
            false,
        ),
        // Text compared as text, in order.
        ("color > 'black'", true, true),
        // A header that is not a number makes a numeric comparison unknown.
        ("color > 5", false, false),
        (
            "0x10 = 16 AND 1e3 = 1000 AND .5 = 0.5 AND 7L = 7",
            true,
            true,
        ),
        ("'it''s' = 'it''s'", true, true),
        ("weight / 0 = 1", false, false),
    ];
    for (text, blue, red) in table {
        let selector = Selector::parse(text, LIMITS).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            (selector.matches(&BLUE), selector.matches(&RED)),
            (*blue, *red),
            "{text}"
        );
    }
}

#[test]
fn refuses_bad_selectors_saying_where() {
    let table: &[(&str, usize, &str)] = &[
        ("", 1, "expected an operand, found the end"),
        ("color = ", 9, "expected an operand, found the end"),
        ("color = 'blue", 9, "never closed"),
        ("color == 'blue'", 8, "expected an operand, found '='"),
        ("color = 'blue' weight", 16, "unexpected 'weight'"),
        ("(color = 'blue'", 16, "expected ')'"),
        ("color # 1", 7, "unexpected '#'"),
        (
            "'a' AND color = 'b'",
            1,
            "an operand of AND must be a condition, not a string",
        ),
        (
            "color = 'a' OR 5",
            16,
            "an operand of OR must be a condition, not a number",
        ),
        ("3 LIKE 'a%'", 1, "the operand of LIKE must be a string"),
        ("color LIKE 5", 12, "expected a string pattern after LIKE"),
        (
            "name LIKE 'a!' ESCAPE '!'",
            11,
            "ends with its escape character",
        ),
        (
            "name LIKE 'a' ESCAPE 'xy'",
            22,
            "ESCAPE takes a string of one character",
        ),
        ("color IN 'a'", 10, "expected '(' after IN"),
        ("color IN ('a' 'b')", 15, "expected ',' or ')'"),
        ("color IN (weight)", 11, "expected a literal in the IN list"),
        ("weight BETWEEN 1 OR 2", 18, "expected AND in BETWEEN"),
        ("color IS 'x'", 10, "expected NULL after IS"),
        (
            "color NOT 'x'",
            11,
            "expected BETWEEN, IN or LIKE after NOT",
        ),
        ("'a' + 1 > 2", 1, "an arithmetic operand must be a number"),
        ("weight", 7, ""),
        ("99999999999999999999 = 1", 1, "not a 64-bit number"),
        ("5", 1, "the selector must be a condition, not a number"),
    ];
    for (text, column, message) in table {
        match Selector::parse(text, LIMITS) {
            // A bare header may hold `true`: it is a condition as far as parsing goes.
            Ok(_) if message.is_empty() => {}
            Ok(_) => panic!("{text}: accepted"),
            Err(error) => {
                assert!(
                    error.column == *column && error.message.contains(message),
                    "{text}: {error}, expected column {column} and {message:?}"
                );
            }
        }
    }
}

#[test]
fn length_and_nesting_are_bounded() {
    let limits = Limits {
        max_length: 64,
        max_depth: 8,
        max_pattern: 10,
    };
    let long = format!("color = '{}'", "x".repeat(60));
    let error = Selector::parse(&long, limits).unwrap_err();
    assert!(error.message.contains("the limit is 64"), "{error}");
    let deep = format!("{}TRUE{}", "(".repeat(9), ")".repeat(9));
    let error = Selector::parse(&deep, limits).unwrap_err();
    assert!(error.message.contains("nested more than 8 deep"), "{error}");
    assert!(Selector::parse(&format!("{}TRUE{}", "(".repeat(8), ")".repeat(8)), limits).is_ok());
    let nots = format!("{}TRUE", "NOT ".repeat(9));
    assert!(Selector::parse(&nots, limits).is_err());
    let signs = format!("{}1 = 1", "-".repeat(9));
    assert!(Selector::parse(&signs, limits).is_err());
    let error = Selector::parse("a LIKE '%%%%%%%%%%b'", limits).unwrap_err();
    assert!(error.message.contains("more than 10 characters"), "{error}");
    assert!(Selector::parse("a LIKE '%%%%%%%%%b'", limits).is_ok());
}

/// A chain of thousands of ANDs or additions is as deep as one: parsing, evaluating and
/// dropping it does not recurse per link.
#[test]
fn long_chains_stay_flat() {
    let limits = Limits {
        max_length: 1 << 20,
        max_depth: 4,
        max_pattern: 10,
    };
    let ands = vec!["weight > 1"; 20_000].join(" AND ");
    assert!(Selector::parse(&ands, limits).unwrap().matches(&BLUE));
    let sum = format!("weight{} = 22600", " + 1".repeat(20_000));
    assert!(Selector::parse(&sum, limits).unwrap().matches(&BLUE));
}

#[test]
fn like_matches_without_backtracking_blowup() {
    let like = eval::Like::compile("%a%a%a%a%a%b", None).unwrap();
    assert!(!like.matches(&"a".repeat(2000)));
    assert!(like.matches(&format!("{}b", "a".repeat(2000))));
    assert!(eval::Like::compile("", None).unwrap().matches(""));
    assert!(!eval::Like::compile("", None).unwrap().matches("x"));
    assert!(eval::Like::compile("%", None).unwrap().matches(""));
}
