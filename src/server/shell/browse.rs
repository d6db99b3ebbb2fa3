//! Browsing subscriptions (`browser:true`) shown: a task per browse reads the paged-out
//! bodies back from the journal, a run at a time, and queues each message its selector
//! takes for the session's writer, then the `browser:end` MESSAGE. After each run it
//! waits until the writer has reached the run's end (`Outgoing::Reached`), so a browse
//! holds at most about two runs in memory and goes at the pace its client reads, and a
//! large one never makes a healthy client look like a slow consumer. Expired messages
//! are not shown. UNSUBSCRIBE stops it (`Browsing::cancelled`). Nothing is consumed; the
//! core is not involved past the snapshot it took.

use std::sync::atomic::Ordering;

use futures::SinkExt;

use super::*;
use crate::broker::{AckMode, Browsed, ConsumerKey, Delivery};
use crate::core::Browsing;
use crate::journal::Extent;
use crate::runtime;
use crate::stomp::{Command, Frame};

/// Messages whose bodies one blocking read brings back before they are queued, at most:
/// a run is also at most a quarter of the session's outbound queue
/// (`stomp.max_pending_frames`), so what the core queues beside it always fits.
const RUN: usize = 256;

impl Shell {
    /// Starts showing `items` to `browsing`, a subscription of `session`.
    pub(super) fn browse(
        &mut self,
        session: SessionId,
        browsing: Browsing,
        items: Vec<(Browsed, Option<Extent>)>,
    ) {
        let Some(handle) = self.sessions.get(&session) else {
            return;
        };
        let showing = Showing {
            key: ConsumerKey {
                session,
                sub: browsing.sub,
            },
            browsing,
            outbound: handle.outbound.clone(),
            dir: self.config.data_dir().join(journal::JOURNAL_DIR),
            run: (self.config.stomp.max_pending_frames / 4).clamp(1, RUN),
        };
        runtime::spawn(showing.show(items));
    }
}

/// One browse being shown.
struct Showing {
    key: ConsumerKey,
    browsing: Browsing,
    outbound: mpsc::Sender<Outgoing>,
    dir: std::path::PathBuf,
    /// Messages per run.
    run: usize,
}

impl Showing {
    async fn show(mut self, mut items: Vec<(Browsed, Option<Extent>)>) {
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(self.run));
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
                            self.browsing.subscribing.destination,
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
                let subscribing = &self.browsing.subscribing;
                let selected = !expired
                    && subscribing
                        .selector
                        .as_ref()
                        .is_none_or(|selector| selector.matches(message.as_ref()));
                if !selected {
                    continue;
                }
                let delivery = Delivery {
                    consumer: self.key,
                    subscription: subscribing.subscription.clone(),
                    ack: AckMode::Auto,
                    message,
                    redelivered: false,
                };
                if !self.send(Outgoing::Browsed(delivery)).await {
                    return;
                }
            }
            let (reached, written) = futures::channel::oneshot::channel();
            if !self.send(Outgoing::Reached(reached)).await || written.await.is_err() {
                return;
            }
        }
        // ActiveMQ's end of a browse.
        let subscribing = &self.browsing.subscribing;
        let end = Frame::new(Command::Message)
            .with_header("subscription", &*subscribing.subscription)
            .with_header("destination", subscribing.destination.to_string())
            .with_header("message-id", "0")
            .with_header("browser", "end");
        self.send(Outgoing::Frame(end)).await;
    }

    /// Queues for the writer, waiting for room; false once the session is gone or the
    /// browse was unsubscribed.
    async fn send(&mut self, outgoing: Outgoing) -> bool {
        !self.browsing.cancelled.load(Ordering::Relaxed)
            && self.outbound.send(outgoing).await.is_ok()
    }
}
