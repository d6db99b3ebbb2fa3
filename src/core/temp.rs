//! Temporary destinations (`/temp-queue/NAME`, `/temp-topic/NAME`) in the core: each
//! lives while the connection that names it does. Its owner's first SEND or SUBSCRIBE
//! makes it; other connections may send to it (as `/remote-temp-...`, from a `reply-to`)
//! while it lives, and get an ERROR once it is gone, rather than filling a queue nobody
//! may consume. When the owner's connection closes, and at a promotion (every connection
//! of the old master is gone), their queues are deleted with `Op::DeleteQueue` records,
//! so slaves drop them too.

use std::collections::{BTreeMap, BTreeSet};

use super::Core;
use crate::broker::{Destination, NewMessage, SessionId};

/// The live temporary destinations, by owner.
#[derive(Debug, Default)]
pub(super) struct Temporaries {
    live: BTreeMap<SessionId, BTreeSet<Destination>>,
}

impl Temporaries {
    /// A use of `destination` by `session`: its owner makes it live; another connection
    /// may use it only while it lives.
    pub fn use_by(&mut self, session: SessionId, destination: &Destination) -> Result<(), String> {
        let Some(owner) = destination.temporary_owner() else {
            return Ok(());
        };
        if owner == session {
            self.live
                .entry(session)
                .or_default()
                .insert(destination.clone());
            return Ok(());
        }
        if self
            .live
            .get(&owner)
            .is_some_and(|d| d.contains(destination))
        {
            return Ok(());
        }
        Err(format!(
            "{destination} is a temporary destination whose connection has closed"
        ))
    }

    /// A SEND whose `reply-to` names its own connection's temporary destination makes it
    /// live, so a reply that comes before the requester subscribes is taken.
    pub fn reply_to(&mut self, session: SessionId, message: &NewMessage) {
        let named = message
            .headers
            .iter()
            .find(|(name, _)| name == "reply-to")
            .and_then(|(_, value)| Destination::parse(value, session).ok());
        if let Some(destination) = named {
            if destination.temporary_owner() == Some(session) {
                let _ = self.use_by(session, &destination);
            }
        }
    }

    /// Forgets `session`'s destinations; the names of its queues.
    pub fn close(&mut self, session: SessionId) -> Vec<String> {
        let owned = self.live.remove(&session).unwrap_or_default();
        owned
            .into_iter()
            .filter_map(|destination| match destination {
                Destination::Queue(name) => Some(name),
                Destination::Topic(_) => None,
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.live.clear();
    }
}

impl Core {
    /// Deletes `session`'s temporary queues, once its consumers are gone.
    pub(super) fn drop_temporaries(&mut self, session: SessionId) {
        let queues = self.temporaries.close(session);
        self.delete_queues(queues);
    }

    /// At a promotion: the old master's connections, and so their temporary queues, are
    /// gone.
    pub(super) fn drop_all_temporaries(&mut self) {
        self.temporaries.clear();
        let queues = self.broker.temporary_queues();
        self.delete_queues(queues);
    }

    fn delete_queues(&mut self, queues: Vec<String>) {
        for queue in queues {
            // A queue no message ever reached does not exist; one with consumers cannot
            // be: only its owner consumes, and its subscriptions are gone.
            if let Ok(removals) = self.broker.delete_plan(&queue) {
                let ops = self.delete_ops(&queue, removals);
                self.record_all(ops);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_destination_lives_with_its_connection() {
        let (owner, other) = (SessionId(3), SessionId(4));
        let mine = Destination::parse("/temp-queue/replies", owner).unwrap();
        let from_other = Destination::parse("/remote-temp-queue/3.replies", other).unwrap();
        assert_eq!(mine, from_other);
        let mut temporaries = Temporaries::default();
        assert!(
            temporaries.use_by(other, &from_other).is_err(),
            "not made yet"
        );
        assert!(temporaries.use_by(owner, &mine).is_ok());
        assert!(temporaries.use_by(other, &from_other).is_ok());
        let plain = Destination::parse("/queue/replies", other).unwrap();
        assert!(temporaries.use_by(other, &plain).is_ok());
        let topic = Destination::parse("/temp-topic/news", owner).unwrap();
        assert!(temporaries.use_by(owner, &topic).is_ok());
        assert!(Destination::parse("/remote-temp-queue/replies", other).is_err());
        assert_eq!(temporaries.close(owner), ["temp-queue:3.replies"]);
        assert!(temporaries.use_by(other, &from_other).is_err(), "closed");
    }
}
