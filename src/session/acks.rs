//! ACK, NACK and transactions on one connection: reading the version-specific ack
//! headers, and buffering a transaction's frames until COMMIT hands them to the core as
//! one request. The core checks that an ack names a message delivered to this connection,
//! ignores a stale one and refuses one this broker never issued.

use super::{required, writer, Fatal, Session, Transaction};
use crate::broker::MessageId;
use crate::core::{AckRef, Request};
use crate::stomp::{Command, Frame, Version};

/// The key of a subscription this connection does not have: nothing is in flight on it.
const NO_SUBSCRIPTION: u64 = u64::MAX;

impl Session {
    /// Reads the version-specific headers of an ACK or NACK.
    pub(super) fn ack_ref(&self, frame: &Frame) -> Result<AckRef, Fatal> {
        let verb = frame.command.as_str();
        if self.version == Version::V1_2 {
            let id = frame.header("id").ok_or_else(|| {
                Fatal(format!(
                    "{verb} needs an 'id' header (the MESSAGE's 'ack' value) in STOMP 1.2"
                ))
            })?;
            let (sub, id) = writer::parse_ack_id(id)
                .ok_or_else(|| Fatal(format!("{verb} id '{id}' was not issued by this broker")))?;
            return Ok(AckRef { sub: Some(sub), id });
        }
        let message_id = required(frame, "message-id")?;
        let id = MessageId::parse(message_id)
            .ok_or_else(|| Fatal(format!("unknown message-id '{message_id}'")))?;
        let sub = match (frame.header("subscription"), self.version) {
            // One this connection does not have (it subscribed on the old master, before
            // a failover) holds nothing here: the core takes the ack as stale.
            (Some(name), _) => Some(
                self.subscriptions
                    .get(name)
                    .map_or(NO_SUBSCRIPTION, |subscription| subscription.key),
            ),
            (None, Version::V1_1) => {
                return Err(Fatal(format!(
                    "{verb} needs a 'subscription' header in STOMP 1.1"
                )))
            }
            (None, _) => None,
        };
        Ok(AckRef { sub, id })
    }

    pub(super) async fn on_ack(
        &mut self,
        frame: &Frame,
        receipt: Option<String>,
    ) -> Result<(), Fatal> {
        let ack = self.ack_ref(frame)?;
        let is_ack = frame.command == Command::Ack;
        if let Some(name) = frame.header("transaction") {
            let limit = self.shared.config.stomp.max_transaction_frames;
            let tx = self.open_transaction(name, limit)?;
            if is_ack {
                tx.acks.push(ack);
            } else {
                tx.nacks.push(ack);
            }
            self.receipt_now(receipt);
            return Ok(());
        }
        let request = if is_ack {
            Request::Ack { ack, receipt }
        } else {
            Request::Nack { ack, receipt }
        };
        self.request(request).await
    }

    pub(super) fn open_transaction(
        &mut self,
        name: &str,
        limit: usize,
    ) -> Result<&mut Transaction, Fatal> {
        let tx = self
            .transactions
            .get_mut(name)
            .ok_or_else(|| Fatal(format!("no open transaction '{name}' (BEGIN it first)")))?;
        if tx.frames() >= limit {
            return Err(Fatal(format!("transaction '{name}' holds more than {limit} frames (stomp.max_transaction_frames)")));
        }
        Ok(tx)
    }

    pub(super) fn take_transaction(&mut self, frame: &Frame) -> Result<Transaction, Fatal> {
        let name = required(frame, "transaction")?;
        self.transactions
            .remove(name)
            .ok_or_else(|| Fatal(format!("no open transaction '{name}'")))
    }
}
