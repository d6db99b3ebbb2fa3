//! SEND on one connection: the headers checked (those refused, `expires`, `priority`,
//! `AMQ_SCHEDULED_DELAY`), the broker's own dropped, a temporary `reply-to` rewritten for
//! other connections, then the message handed to the core, or to its transaction, once
//! there is room for it.

use super::*;

/// Headers the broker owns: a client's values for them are dropped, not stored.
const BROKER_HEADERS: &[&str] = &[
    crate::broker::DELIVER_AT_HEADER,
    "destination",
    "receipt",
    "transaction",
    "content-length",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    "persistent",
];

impl Session {
    pub(super) async fn on_send(
        &mut self,
        frame: Frame,
        receipt: Option<String>,
    ) -> Result<(), Fatal> {
        if let Some(why) = unsupported::refusal(&frame) {
            return Err(Fatal(why));
        }
        if let Some(expires) = frame.header("expires") {
            if expires.trim().parse::<u64>().is_err() {
                return Err(Fatal(format!(
                    "invalid expires '{expires}': ms since the Unix epoch, or 0 for never"
                )));
            }
        }
        if let Some(priority) = frame.header("priority") {
            if !matches!(priority.trim().parse::<u8>(), Ok(0..=9)) {
                return Err(Fatal(format!(
                    "invalid priority '{priority}': a whole number from 0 (lowest) to 9 (highest)"
                )));
            }
        }
        let destination = Destination::parse(required(&frame, "destination")?, self.id)?;
        let deliver_at = self.deliver_at(&frame, &destination)?;
        // A temporary destination lives only as long as its connection: its messages are
        // never journaled, as in ActiveMQ.
        let persistent =
            frame.header("persistent") == Some("true") && destination.temporary_owner().is_none();
        let transaction = frame.header("transaction").map(str::to_string);
        let mut headers = Vec::with_capacity(frame.headers.len());
        for (name, mut value) in frame.headers {
            let owned = BROKER_HEADERS.contains(&name.as_str());
            // First occurrence wins, as in the spec; later repeats are dropped.
            if !owned && !headers.iter().any(|(n, _): &(String, String)| *n == name) {
                if name == "reply-to" {
                    value = self.reply_to(value);
                }
                headers.push((name, value));
            }
        }
        if let Some(at) = deliver_at {
            headers.push((crate::broker::DELIVER_AT_HEADER.to_string(), at.to_string()));
        }
        let message = NewMessage {
            destination,
            headers,
            body: frame.body,
            persistent,
        };
        if let Some(name) = transaction {
            let limit = self.shared.config.stomp.max_transaction_frames;
            let max_bytes = self.shared.config.stomp.max_frame_size.bytes();
            let tx = self.open_transaction(&name, limit)?;
            tx.bytes += message.cost();
            if tx.bytes > max_bytes {
                return Err(Fatal(format!(
                    "transaction '{name}' holds more than {max_bytes} bytes of messages (stomp.max_frame_size)"
                )));
            }
            tx.sends.push(message);
            self.receipt_now(receipt);
            return Ok(());
        }
        if let Some(receipt) = &receipt {
            self.receipt_clock.sent(receipt);
        }
        self.wait_for_room(std::slice::from_ref(&message)).await?;
        self.shared.memory.reserve(std::slice::from_ref(&message));
        self.request(Request::Send { message, receipt }).await
    }

    /// Past the memory limit, or the disk limit for persistent messages, a producer
    /// waits here, and its receipts with it.
    pub(super) async fn wait_for_room(&mut self, messages: &[NewMessage]) -> Result<(), Fatal> {
        while let Some(room) = self.shared.memory.wait_for(messages) {
            log::debug!(
                "session {}: {room:?} limit reached; producer waits",
                self.id.0
            );
            let (done, wait) = oneshot::channel();
            self.requests
                .send(SessionEvent::WaitForRoom(room, done))
                .await
                .map_err(|_| Fatal("the broker is shutting down".into()))?;
            wait.await
                .map_err(|_| Fatal("the broker is shutting down".into()))?;
        }
        Ok(())
    }

    /// When a SEND with `AMQ_SCHEDULED_DELAY` (ms) may be delivered: stamped now, in the
    /// record, so the delay runs on across restarts and failovers.
    fn deliver_at(&self, frame: &Frame, destination: &Destination) -> Result<Option<u64>, Fatal> {
        let Some(text) = frame.header("AMQ_SCHEDULED_DELAY") else {
            return Ok(None);
        };
        let delay: u64 = text.trim().parse().map_err(|_| {
            Fatal(format!(
                "invalid AMQ_SCHEDULED_DELAY '{text}': a whole number of milliseconds"
            ))
        })?;
        if delay == 0 {
            return Ok(None);
        }
        if matches!(destination, Destination::Topic(_)) {
            return Err(Fatal(format!(
                "AMQ_SCHEDULED_DELAY on {destination}: delayed delivery is for queues (a topic holds nothing to deliver later)"
            )));
        }
        Ok(Some(unix_ms().saturating_add(delay)))
    }

    /// A `reply-to` naming this connection's temporary destination, in the form other
    /// connections reach it by (`/remote-temp-queue/...`); any other value as it is.
    fn reply_to(&self, value: String) -> String {
        if !value.starts_with("/temp-queue/") && !value.starts_with("/temp-topic/") {
            return value;
        }
        Destination::parse(&value, self.id).map_or(value, |temp| temp.to_string())
    }
}
