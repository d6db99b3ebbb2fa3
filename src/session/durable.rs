//! The headers that make a SUBSCRIBE durable and an UNSUBSCRIBE delete a durable
//! subscription, in ActiveMQ's form (`activemq.subscriptionName:NAME`, under CONNECT's
//! `client-id`) and RabbitMQ's (`durable:true`, or the older `persistent:true`, with the
//! subscription's `id` as its name). On a queue they change nothing (a queue keeps its
//! messages anyway), as in ActiveMQ. Pure: frames in, a subscription or an error out.

use crate::broker::{durable_queue, Destination, DurableSubscription};
use crate::stomp::Frame;

/// The durable subscription name a frame asks for, and whether it came in ActiveMQ's
/// form (which needs a client id).
fn asked_name<'f>(frame: &'f Frame, id: &'f str) -> Option<(&'f str, bool)> {
    if let Some(name) = frame
        .header("activemq.subscriptionName")
        .filter(|n| !n.is_empty())
    {
        return Some((name, true));
    }
    let flagged = |header| frame.header(header).is_some_and(super::is_true);
    (flagged("durable") || flagged("persistent")).then_some((id, false))
}

/// The client id the subscription is kept under; ActiveMQ's form needs one.
fn owner(client_id: Option<&str>, name: &str, activemq_form: bool) -> Result<String, String> {
    match client_id {
        Some(client_id) => Ok(client_id.to_string()),
        None if activemq_form => Err(format!(
            "durable subscription '{name}' needs a 'client-id' header on CONNECT: the subscription is kept under it"
        )),
        None => Ok(String::new()),
    }
}

/// The durable subscription a SUBSCRIBE with id `id` to `destination` asks for, if any.
pub(super) fn subscription(
    frame: &Frame,
    client_id: Option<&str>,
    destination: &Destination,
    id: &str,
) -> Result<Option<DurableSubscription>, String> {
    let Some((name, activemq_form)) = asked_name(frame, id) else {
        return Ok(None);
    };
    let Destination::Topic(topic) = destination else {
        return Ok(None);
    };
    if destination.temporary_owner().is_some() {
        return Err(format!(
            "durable subscription '{name}': a temporary topic lives with its connection and cannot keep messages for a subscriber who is away"
        ));
    }
    Ok(Some(DurableSubscription {
        client_id: owner(client_id, name, activemq_form)?,
        name: name.to_string(),
        topic: topic.clone(),
        selector: frame
            .header("selector")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    }))
}

/// The queue of the durable subscription an UNSUBSCRIBE with id `id` deletes, if any.
pub(super) fn to_delete(
    frame: &Frame,
    client_id: Option<&str>,
    id: &str,
) -> Result<Option<String>, String> {
    let Some((name, activemq_form)) = asked_name(frame, id) else {
        return Ok(None);
    };
    let client_id = owner(client_id, name, activemq_form)?;
    Ok(Some(durable_queue(&client_id, name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::SessionId;
    use crate::stomp::Command;

    fn frame(command: Command, headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new(command), |f, (k, v)| f.with_header(*k, *v))
    }

    fn topic(name: &str) -> Destination {
        Destination::Topic(name.into())
    }

    #[test]
    fn both_forms_name_a_subscription_under_the_client_id() {
        let activemq = frame(
            Command::Subscribe,
            &[("activemq.subscriptionName", "s"), ("selector", " a = 1 ")],
        );
        let made = subscription(&activemq, Some("c"), &topic("t"), "id-1").unwrap();
        assert_eq!(
            made,
            Some(DurableSubscription {
                client_id: "c".into(),
                name: "s".into(),
                topic: "t".into(),
                selector: Some("a = 1".into()),
            })
        );
        let rabbit = frame(Command::Subscribe, &[("durable", "true")]);
        let made = subscription(&rabbit, None, &topic("t"), "id-1")
            .unwrap()
            .unwrap();
        assert_eq!((made.client_id.as_str(), made.name.as_str()), ("", "id-1"));
        let old_rabbit = frame(Command::Subscribe, &[("persistent", "TRUE")]);
        assert!(subscription(&old_rabbit, Some("c"), &topic("t"), "i")
            .unwrap()
            .is_some());
    }

    #[test]
    fn what_is_not_durable_or_cannot_be_is_told_apart() {
        let plain = frame(Command::Subscribe, &[("durable", "false")]);
        assert_eq!(subscription(&plain, Some("c"), &topic("t"), "i"), Ok(None));
        let named = frame(Command::Subscribe, &[("activemq.subscriptionName", "s")]);
        // A queue keeps its messages anyway.
        let queue = Destination::Queue("q".into());
        assert_eq!(subscription(&named, Some("c"), &queue, "i"), Ok(None));
        let no_client = subscription(&named, None, &topic("t"), "i").unwrap_err();
        assert!(no_client.contains("client-id"), "{no_client}");
        let temp = Destination::parse("/temp-topic/x", SessionId(3)).unwrap();
        let temporary = subscription(&named, Some("c"), &temp, "i").unwrap_err();
        assert!(temporary.contains("temporary"), "{temporary}");
    }

    #[test]
    fn an_unsubscribe_names_the_queue_to_delete() {
        let activemq = frame(Command::Unsubscribe, &[("activemq.subscriptionName", "s")]);
        assert_eq!(
            to_delete(&activemq, Some("c"), "i"),
            Ok(Some(durable_queue("c", "s")))
        );
        let rabbit = frame(Command::Unsubscribe, &[("durable", "true")]);
        assert_eq!(
            to_delete(&rabbit, None, "i"),
            Ok(Some(durable_queue("", "i")))
        );
        let plain = frame(Command::Unsubscribe, &[]);
        assert_eq!(to_delete(&plain, Some("c"), "i"), Ok(None));
        assert!(to_delete(&activemq, None, "i").is_err());
    }

    #[test]
    fn client_ids_with_separators_never_share_a_queue() {
        assert_ne!(durable_queue("a:b", "c"), durable_queue("a", "b:c"));
        assert_ne!(durable_queue("a\\c", "d"), durable_queue("a:", "d"));
    }
}
