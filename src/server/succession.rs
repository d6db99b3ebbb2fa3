//! A slave's decision after its master was lost, with no election configured: dial it
//! again if it answers; follow an in-sync slave that took over; wait while one before
//! it in the succession may still take over; promote when none did.

use super::actions::{Done, PROBE_GAP};
use crate::config::Endpoint;
use crate::journal::Epoch;
use crate::link::probe::{Probed, Prober};
use crate::repl::role::Event;
use crate::runtime;

/// A slave's decision after its master was lost: dial it again if it answers; follow an
/// in-sync slave that took over; wait while one before us in the succession may still
/// take over; promote when none did.
pub(super) struct Succession {
    /// The lost master, to probe first (`None`: it said it was stopping).
    pub(super) master: Option<Endpoint>,
    /// This broker's replication address, to find its place in `members`.
    pub(super) own: Option<String>,
    /// The in-sync slaves' addresses, first to take over first.
    pub(super) members: Vec<String>,
    pub(super) epoch: Epoch,
    pub(super) prober: Prober,
}

impl Succession {
    pub(super) async fn run(self) -> Done {
        let place = self
            .own
            .as_ref()
            .and_then(|own| self.members.iter().position(|m| m == own));
        // A slave without an address comes after every member the master listed.
        let before_us = |index: usize| place.is_none_or(|p| index < p);
        let deadline = std::time::Instant::now() + self.prober.patience * 4;
        let mut why = "the master said it was stopping".to_string();
        loop {
            if let Some(master) = &self.master {
                match self.prober.once(master).await {
                    Probed::Master(_) => return Done::Event(Event::MasterAnswered),
                    Probed::NotMaster { .. } => why = format!("{master} is not a master"),
                    Probed::NoMaster(no) => why = no,
                }
            }
            let mut waiting_for = None;
            for (index, member) in self.members.iter().enumerate() {
                if Some(index) == place {
                    continue;
                }
                let Ok(endpoint) = Endpoint::parse(member) else {
                    continue;
                };
                match self.prober.once(&endpoint).await {
                    Probed::Master(Some(theirs)) if theirs > self.epoch => {
                        log::info!("replication: in-sync slave {endpoint} has taken over (epoch {theirs}): following it");
                        return Done::Follow(endpoint, Event::MasterMoved);
                    }
                    Probed::NotMaster {
                        candidate: true, ..
                    } if before_us(index) => {
                        waiting_for.get_or_insert(endpoint);
                    }
                    _ => {}
                }
            }
            let Some(earlier) = waiting_for else {
                return Done::Event(Event::MasterGone(why));
            };
            if std::time::Instant::now() >= deadline {
                log::warn!("replication: {earlier}, before this slave in the succession, is still deciding: not promoting; dialling the master again");
                return Done::Event(Event::MasterAnswered);
            }
            runtime::sleep(PROBE_GAP).await;
        }
    }
}
