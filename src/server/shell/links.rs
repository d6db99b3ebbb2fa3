//! The shell's side of replication: what the master's links report, the records of a
//! turn handed to them, what our own master says, and what the replication listener
//! answers (`Presence`), and what store.toml records of serving alone and of epochs.

use super::*;

impl Shell {
    /// Hands each link the records gathered for it this turn, in one message.
    pub(super) fn ship(&mut self) {
        for (link, records) in self.shipping.iter_mut() {
            if records.is_empty() {
                continue;
            }
            let records = std::mem::take(records);
            if let Some(live) = self.live.get(link) {
                // A link that has gone reports itself detached.
                let _ = live.unbounded_send(Shipment::Records(records));
            }
        }
        self.shipping.retain(|link, _| self.live.contains_key(link));
    }

    /// What our master said. Records already read off the link join them, so that one
    /// step applies them and one acknowledgement covers them: an acknowledgement per
    /// frame cost both sides a core step and a write each, which slowed a master with
    /// two slaves by a fifth.
    pub(super) fn heard(&mut self, heard: Heard) {
        match heard {
            Heard::Records(mut records) => {
                let mut then = None;
                while let Some(mirror) = self.mirror.as_mut() {
                    if records.len() >= MAX_COALESCED {
                        break;
                    }
                    match mirror.next().now_or_never() {
                        Some(Heard::Records(more)) => records.extend(more),
                        Some(Heard::Nothing) | None => break,
                        Some(other) => {
                            then = Some(other);
                            break;
                        }
                    }
                }
                self.inputs.push_back(Input::Replicate(records));
                if let Some(heard) = then {
                    self.heard(heard);
                }
            }
            Heard::Nothing => {}
            Heard::Succession(succession) => self.inputs.push_back(Input::Succession(succession)),
            Heard::Role(event) => {
                if !matches!(event, Event::InSyncWithMaster) {
                    self.mirror = None;
                }
                self.inputs.push_back(Input::Role(event));
            }
        }
    }

    /// Keeps what the replication listener answers in step with the role, before any
    /// output of this step is carried out: a broker that decided to promote answers
    /// probes as a master from this moment.
    pub(super) fn update_presence(&mut self) {
        let (role, epoch) = (self.core.role(), self.core.epoch());
        let mut current = self
            .presence
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Compared in place, built only when it changed: this runs after every step.
        let unchanged = match &*current {
            Presence::Master { epoch: was } => role.is_master() && *was == epoch,
            Presence::NotMaster {
                epoch: was,
                candidate,
                master,
            } => {
                !role.is_master()
                    && *was == epoch
                    && *candidate == role.is_candidate()
                    && master.as_ref() == self.master.as_ref()
            }
        };
        if unchanged {
            return;
        }
        *current = if role.is_master() {
            Presence::Master { epoch }
        } else {
            Presence::NotMaster {
                epoch,
                candidate: role.is_candidate(),
                master: self.master.clone(),
            }
        };
    }

    pub(super) fn link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Attach {
                link,
                standing,
                advertised,
                name,
                live,
                reply,
            } => {
                self.replica_names.insert(link, name);
                self.live.insert(link, live);
                self.attach_replies.insert(link, reply);
                self.inputs.push_back(Input::Attach {
                    link,
                    standing,
                    advertised,
                });
            }
            LinkEvent::Acked { link, seq } => {
                self.inputs.push_back(Input::ReplicaAck { link, seq })
            }
            LinkEvent::Lag { link, bytes, ms } => {
                self.inputs.push_back(Input::ReplicaLag { link, bytes, ms })
            }
            LinkEvent::Detached { link, why } => {
                self.live.remove(&link);
                let name = self.replica_names.remove(&link);
                // Only an attached slave is lost: a link that ended before (refused, or
                // sent to copy the store first) was never one of the replicas.
                if let Some(name) = name.filter(|_| self.core.has_replica(link)) {
                    self.lost_replicas.lost(name, why.clone());
                }
                self.attach_replies.remove(&link);
                self.inputs.push_back(Input::Detach { link, why });
            }
        }
    }
}

impl Shell {
    /// Records in store.toml that receipts go out with one copy from `since` (`Some`),
    /// then steps `Input::AloneRecorded`; or that a slave is in sync again (`None`).
    pub(super) async fn record_alone_since(&mut self, since: Option<Seq>) -> Result<()> {
        let replication = &self.config.replication;
        let standalone = replication.bind.is_none() && replication.peers.is_empty();
        if since.is_none() {
            log::info!("replication: a slave is in sync; receipts wait for its copy");
        } else if standalone {
            // Chosen in the config, so said once and not as a warning.
            log::info!("standalone (no [replication] bind or peers): each message has one copy, on this broker's disk");
        } else {
            log::warn!("replication: no slave: receipts now wait for this broker's journal only; messages have ONE copy until a slave attaches");
        }
        self.update_store_meta(move |meta| meta.alone_since = since)
            .await?;
        if since.is_some() {
            self.inputs_push(Input::AloneRecorded);
        }
        Ok(())
    }

    /// Records the store's epoch history after a promotion; the promoted broker serves
    /// alone from its new epoch's first seq until a slave is in sync.
    pub(super) async fn record_epochs(
        &mut self,
        epochs: Vec<crate::journal::EpochStart>,
    ) -> Result<()> {
        let alone_since = epochs.last().map(|start| start.first_seq);
        log::warn!("replication: promoted with no slave in sync: messages have ONE copy until a slave attaches");
        self.update_store_meta(move |meta| {
            meta.epochs = epochs;
            meta.alone_since = alone_since;
        })
        .await
    }
}
