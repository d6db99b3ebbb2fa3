//! The shell's side of the journal writer: its reports (durable, failed), and waiting
//! for it, before a slave dials (settle) and at a stop.

use super::*;

impl Shell {
    pub(super) fn journal_event(&mut self, event: journal::Event) {
        match event {
            journal::Event::Durable(seq) => {
                self.journal.written_up_to(seq);
                self.inputs.push_back(Input::Durable(seq))
            }
            journal::Event::Failed(why) => {
                log::error!("stopping: the journal cannot write ({why}); no further receipts can be honoured");
                self.exit = Some(1);
            }
        }
    }

    /// Waits until the journal has everything the core has applied on disk, queueing its
    /// reports for the core, or until it fails.
    pub(in crate::server) async fn settle_journal(&mut self) {
        let target = self.core.next_seq().prev();
        // A report may already be taken off the channel, waiting in `inputs`.
        let queued = self.inputs.iter().filter_map(|input| match input {
            Input::Durable(seq) => Some(*seq),
            _ => None,
        });
        let mut durable = queued.fold(self.core.durable_seq(), Seq::max);
        while durable < target && self.exit.is_none() {
            self.journal.pump();
            match self.journal_events.next().await {
                Some(event) => {
                    if let journal::Event::Durable(seq) = event {
                        durable = durable.max(seq);
                    }
                    self.journal_event(event);
                }
                None => break,
            }
        }
    }

    /// Stops the journal writer once it has written everything queued, and queues what
    /// it reported meanwhile for the core, so receipts that became due go out. Nothing
    /// it reports comes later: a journal opened next reports afresh.
    pub(in crate::server) async fn stop_journal(&mut self) {
        crate::runtime::spawn_blocking(self.journal.stopper()).await;
        while let Some(Some(event)) = self.journal_events.next().now_or_never() {
            if let journal::Event::Durable(seq) = event {
                self.inputs.push_back(Input::Durable(seq));
            }
        }
    }
}
