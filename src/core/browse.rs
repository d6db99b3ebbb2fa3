//! Browsing subscriptions (`browser:true`) in the core: the snapshot of a queue's ready
//! messages (`Core::browse`, as the admin API takes it) goes to the shell to show
//! (`Output::Browse`) once every paged-out body in it is on disk: a body is paged out
//! when its record is placed, which may be before the record is written, and reading it
//! back earlier would miss it.

use super::{Browsing, Core, Output};
use crate::broker::{BrowsedBody, SessionId};
use crate::journal::Seq;

/// Browses waiting for the journal, with the seq each needs durable.
#[derive(Debug, Default)]
pub(super) struct WaitingBrowses(Vec<(Seq, Output)>);

impl Core {
    /// A browsing SUBSCRIBE: its receipt now, before any of its messages; its snapshot
    /// once readable.
    pub(super) fn browse_for(
        &mut self,
        session: SessionId,
        browsing: Browsing,
        receipt: Option<String>,
    ) {
        let items = self
            .browse(browsing.subscribing.destination.name(), browsing.limit)
            .unwrap_or_default();
        if let Some(receipt) = receipt {
            self.receipt_now(session, receipt, false);
        }
        let needs = items
            .iter()
            .filter_map(|(item, _)| match &item.body {
                BrowsedBody::Paged(fetch) => Some(fetch.record),
                _ => None,
            })
            .max()
            .unwrap_or(Seq::ZERO);
        let output = Output::Browse {
            session,
            browsing,
            items,
        };
        match needs <= self.durable_seq {
            true => self.out.push(output),
            false => self.waiting_browses.0.push((needs, output)),
        }
    }

    /// The browses whose bodies are now on disk go to the shell.
    pub(super) fn release_browses(&mut self) {
        let durable = self.durable_seq;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_browses.0)
            .into_iter()
            .partition(|(needs, _)| *needs <= durable);
        self.waiting_browses.0 = waiting;
        self.out.extend(ready.into_iter().map(|(_, output)| output));
    }
}
