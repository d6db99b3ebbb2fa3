//! Headers that change what an ActiveMQ broker does and that mirrormq does not honour
//! (yet): a frame carrying one with a value that would change anything is refused with
//! an ERROR naming it, never served as if the header were not there. A value that
//! changes nothing (`AMQ_SCHEDULED_REPEAT:0`, `activemq.noLocal:false`) passes. A wildcard in a
//! SEND destination is refused here too: a message goes to one destination.
//! Pure: a table and the frames' headers, tested by table.

use crate::stomp::{Command, Frame};

/// Whether a header's value asks for the behaviour, and what to tell the client.
struct Refusal {
    command: Command,
    header: &'static str,
    asks: fn(&str) -> bool,
    what: &'static str,
}

fn not_zero(value: &str) -> bool {
    value.trim().parse::<i64>() != Ok(0)
}

fn present(_: &str) -> bool {
    true
}

const REFUSALS: &[Refusal] = &[
    Refusal {
        command: Command::Send,
        header: "AMQ_SCHEDULED_PERIOD",
        asks: not_zero,
        what: "repeated delivery",
    },
    Refusal {
        command: Command::Send,
        header: "AMQ_SCHEDULED_REPEAT",
        asks: not_zero,
        what: "repeated delivery",
    },
    Refusal {
        command: Command::Send,
        header: "AMQ_SCHEDULED_CRON",
        asks: present,
        what: "scheduled delivery",
    },
    Refusal {
        command: Command::Subscribe,
        header: "activemq.noLocal",
        asks: super::is_true,
        what: "noLocal subscriptions",
    },
    Refusal {
        command: Command::Subscribe,
        header: "activemq.exclusive",
        asks: super::is_true,
        what: "exclusive consumers",
    },
    Refusal {
        command: Command::Subscribe,
        header: "activemq.retroactive",
        asks: super::is_true,
        what: "retroactive consumers",
    },
    Refusal {
        command: Command::Subscribe,
        header: "activemq.priority",
        asks: present,
        what: "consumer priority",
    },
];

/// The ERROR message for a frame that asks for something this broker does not do.
pub(super) fn refusal(frame: &Frame) -> Option<String> {
    for refusal in REFUSALS.iter().filter(|r| r.command == frame.command) {
        if let Some(value) = frame.header(refusal.header) {
            if (refusal.asks)(value) {
                return Some(format!(
                    "'{}:{value}' asks for {}, which this broker does not support; \
                     leave the header out",
                    refusal.header, refusal.what
                ));
            }
        }
    }
    let destination = frame.header("destination")?;
    let name = destination
        .rsplit_once('/')
        .map_or(destination, |(_, name)| name);
    let wildcard = name
        .split('.')
        .any(|element| element == "*" || element == ">");
    (frame.command == Command::Send && wildcard).then(|| {
        format!("'{destination}' holds a wildcard: a message goes to one destination; wildcards are for SUBSCRIBE")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Headers<'a> = &'a [(&'a str, &'a str)];

    fn frame(command: Command, headers: Headers) -> Frame {
        headers
            .iter()
            .fold(Frame::new(command), |f, (k, v)| f.with_header(*k, *v))
    }

    #[test]
    fn a_header_that_would_change_anything_is_refused_by_name() {
        let refused: &[(Command, Headers, &str)] = &[
            (
                Command::Send,
                &[("AMQ_SCHEDULED_CRON", "* * * * *")],
                "scheduled",
            ),
            (
                Command::Subscribe,
                &[("activemq.noLocal", "true")],
                "noLocal",
            ),
            (
                Command::Subscribe,
                &[("activemq.exclusive", "TRUE")],
                "exclusive",
            ),
            (Command::Send, &[("destination", "/queue/a.*")], "wildcard"),
            (Command::Send, &[("destination", "/topic/>")], "wildcard"),
        ];
        for (command, headers, why) in refused {
            let message = refusal(&frame(*command, headers))
                .unwrap_or_else(|| panic!("{command:?} {headers:?} passed"));
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn a_value_that_changes_nothing_passes() {
        let passes: &[(Command, Headers)] = &[
            (Command::Send, &[("AMQ_SCHEDULED_REPEAT", "0")]),
            (Command::Send, &[("AMQ_SCHEDULED_DELAY", "0")]),
            (Command::Subscribe, &[("activemq.noLocal", "false")]),
            (Command::Send, &[("destination", "/queue/a.b*c")]),
            (Command::Send, &[("destination", "/queue/orders")]),
            (Command::Subscribe, &[("destination", "/topic/a.>")]),
            // The headers matter only on the frames that use them.
            (Command::Subscribe, &[("AMQ_SCHEDULED_DELAY", "9")]),
        ];
        for (command, headers) in passes {
            assert_eq!(refusal(&frame(*command, headers)), None, "{headers:?}");
        }
    }
}
