//! Browsing subscriptions (`browser:true`) shown: a task per browse reads the paged-out
//! bodies back from the journal, a run at a time, and queues each message its selector
//! takes for the session's writer, waiting for room as the client reads (a large browse
//! never makes a healthy client look like a slow consumer), then the `browser:end`
//! MESSAGE. Expired messages are not shown. Nothing is consumed; the core is not involved
//! past the snapshot it took.

use futures::SinkExt;

use super::*;
use crate::broker::{AckMode, Browsed, ConsumerKey, Delivery, Subscribing};
use crate::journal::Extent;
use crate::runtime;
use crate::stomp::{Command, Frame};

/// Messages whose bodies one blocking read brings back before they are queued.
const RUN: usize = 256;

impl Shell {
    /// Starts showing `items` to browsing subscription `sub` of `session`.
    pub(super) fn browse(
        &mut self,
        session: SessionId,
        sub: u64,
        subscribing: Subscribing,
        items: Vec<(Browsed, Option<Extent>)>,
    ) {
        let Some(handle) = self.sessions.get(&session) else {
            return;
        };
        let showing = Showing {
            key: ConsumerKey { session, sub },
            subscribing,
            outbound: handle.outbound.clone(),
            dir: self.config.data_dir().join(journal::JOURNAL_DIR),
        };
        runtime::spawn(showing.show(items));
    }
}

/// One browse being shown.
struct Showing {
    key: ConsumerKey,
    subscribing: Subscribing,
    outbound: mpsc::Sender<Outgoing>,
    dir: std::path::PathBuf,
}

impl Showing {
    async fn show(mut self, mut items: Vec<(Browsed, Option<Extent>)>) {
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(RUN));
            let run = std::mem::replace(&mut items, rest);
            let dir = self.dir.clone();
            let read =
                runtime::spawn_blocking(move || crate::admin::browsed(&dir, run, usize::MAX)).await;
            for shown in read {
                let message = match shown.message {
                    Some(Ok(message)) => message,
                    Some(Err(why)) => {
                        log::warn!(
                            "session {}: browse of {}: message {} is not shown: {why}",
                            self.key.session.0,
                            self.subscribing.destination,
                            shown.item.id
                        );
                        continue;
                    }
                    None => continue,
                };
                // An expired message is never delivered, browsed neither (the master
                // removes it on its next tick).
                let expired = message
                    .expires_at()
                    .is_some_and(|at| at <= crate::core::unix_ms());
                let selected = !expired
                    && self
                        .subscribing
                        .selector
                        .as_ref()
                        .is_none_or(|selector| selector.matches(message.as_ref()));
                let delivery = Delivery {
                    consumer: self.key,
                    subscription: self.subscribing.subscription.clone(),
                    ack: AckMode::Auto,
                    message,
                    redelivered: false,
                };
                if selected
                    && self
                        .outbound
                        .send(Outgoing::Browsed(delivery))
                        .await
                        .is_err()
                {
                    return; // The session is gone.
                }
            }
        }
        // ActiveMQ's end of a browse.
        let end = Frame::new(Command::Message)
            .with_header("subscription", &*self.subscribing.subscription)
            .with_header("destination", self.subscribing.destination.to_string())
            .with_header("message-id", "0")
            .with_header("browser", "end");
        let _ = self.outbound.send(Outgoing::Frame(end)).await;
    }
}
