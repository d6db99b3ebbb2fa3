//! The shell's side of the admin listener: each `admin::Call` is answered between two
//! core steps, from the core's read-only views and the shell's own state; an operator's
//! op goes to the core as a request on a session of its own, whose RECEIPT or ERROR is
//! the answer. The `SeqClock` turns a message's seq into its age.

use std::collections::VecDeque;

use futures::SinkExt;

use super::*;
use crate::admin::{Ask, Call, Connection, DestinationsReport, Reply, StatusReport};
use crate::session::unix_ms;
use crate::stomp::Command;

/// Admin calls' own sessions are numbered from here, far above any client's.
const ADMIN_SESSIONS: u64 = 1 << 62;
/// The seq clock keeps at most this many samples, thinning the oldest past it.
const MAX_SAMPLES: usize = 8192;

/// The slaves lost most recently (their link failed), newest first, at most `MAX_LOST`.
#[derive(Debug, Default)]
pub(super) struct LostReplicas(VecDeque<crate::admin::LostReplica>);

/// Lost slaves the admin API remembers.
const MAX_LOST: usize = 8;

impl LostReplicas {
    pub(super) fn lost(&mut self, name: String, why: String) {
        self.0.push_front(crate::admin::LostReplica {
            name,
            why,
            at_ms: unix_ms(),
        });
        self.0.truncate(MAX_LOST);
    }
}

/// When the core reached each seq, sampled at most once a second, so the age of a
/// message is known to within a second from the seq of its record. A message recorded
/// before this broker started is at least as old as the first sample.
#[derive(Debug, Default)]
pub(super) struct SeqClock {
    /// (next seq, ms since the Unix epoch), oldest first.
    samples: VecDeque<(Seq, u64)>,
}

impl SeqClock {
    /// The core's next seq is `next` at `now_ms`.
    pub(super) fn sample(&mut self, next: Seq, now_ms: u64) {
        let changed = self
            .samples
            .back()
            .is_none_or(|(seq, at)| *seq != next && now_ms >= at + 1000);
        if !changed {
            return;
        }
        if self.samples.len() >= MAX_SAMPLES {
            // Half the resolution for the whole past, rather than forgetting it.
            let kept: VecDeque<(Seq, u64)> = self.samples.iter().copied().step_by(2).collect();
            self.samples = kept;
        }
        self.samples.push_back((next, now_ms));
    }

    /// How old the record `seq` is at `now_ms`: the time since the first sample that saw
    /// it recorded (`next > seq`); since the first sample at all if it came before; 0 if
    /// no sample has seen it yet (it came within the last second).
    pub(super) fn age_ms(&self, seq: Seq, now_ms: u64) -> Option<u64> {
        let first_after = self.samples.partition_point(|(next, _)| *next <= seq);
        let at = match self.samples.get(first_after) {
            None => now_ms,
            Some((_, at)) if first_after > 0 => *at,
            Some(_) => self.samples.front()?.1,
        };
        Some(now_ms.saturating_sub(at))
    }
}

impl Shell {
    /// Opens the admin listener, if `[admin]` asks for one; it runs until the broker stops.
    pub(super) async fn open_admin_listener(&mut self) -> Result<()> {
        let Some(admin) = &self.config.admin else {
            return Ok(());
        };
        let tls = match admin.tls {
            true => Some(super::super::actions::tls_acceptor(&self.config)?),
            false => None,
        };
        let listener = Self::bind(&admin.bind, "admin").await?;
        if tls.is_some() {
            log::info!("admin: HTTPS (admin.tls), with [tls]'s certificate");
        }
        let (config, calls) = (self.config.clone(), self.admin_sender.clone());
        self.serve(crate::admin::serve(listener, config, calls, tls));
        Ok(())
    }

    /// Answers one admin call.
    pub(super) fn admin_call(&mut self, call: Call) {
        self.watch_core();
        let Call { ask, reply } = call;
        let answer = match ask {
            Ask::Status => Reply::Status(Box::new(self.status_report())),
            Ask::Destinations => Reply::Destinations(self.destinations_report()),
            Ask::Browse { queue, limit } => Reply::Browse(self.core.browse(&queue, limit)),
            Ask::Connections => Reply::Connections(self.connections()),
            Ask::CloseConnection(id) => {
                let session = SessionId(id);
                let found = self.sessions.get(&session).filter(|h| h.info.is_some());
                if let Some(handle) = found {
                    log::info!("admin: closing connection {id}");
                    (handle.kill)();
                }
                Reply::Closed(found.is_some())
            }
            Ask::Op(op) => return self.admin_op(op, reply),
        };
        let _ = reply.send(answer);
    }

    /// Steps the op on a session of its own and answers with what the core sends it.
    fn admin_op(&mut self, op: crate::core::AdminOp, reply: oneshot::Sender<Reply>) {
        self.admin_sessions += 1;
        let session = SessionId(ADMIN_SESSIONS + self.admin_sessions);
        let (outbound, mut answers) = mpsc::channel(4);
        let handle = SessionHandle {
            outbound,
            kill: Box::new(|| {}),
            info: None,
        };
        self.sessions.insert(session, handle);
        self.inputs
            .push_back(Input::Client(session, Request::Admin(op)));
        let mut closer = self.session_sender.clone();
        crate::runtime::spawn(async move {
            let mut reply = reply;
            // The caller gave up (its request timed out): close the session, which drops
            // the op if it still waits for replicas (it may have been applied already).
            let answered = futures::select! {
                answer = answers.next() => Some(answer),
                _ = reply.cancellation().fuse() => None,
            };
            let Some(answered) = answered else {
                let _ = closer
                    .send(SessionEvent::Request(session, Request::Close))
                    .await;
                return;
            };
            let answer = match answered {
                Some(Outgoing::Frame(frame)) if frame.command == Command::Receipt => {
                    let affected = frame.header("receipt-id").and_then(|n| n.parse().ok());
                    Ok(affected.unwrap_or(0))
                }
                Some(Outgoing::Frame(frame) | Outgoing::Final(frame)) => {
                    let status = frame.header("status").and_then(|s| s.parse().ok());
                    let why = frame.header("message").unwrap_or("refused").to_string();
                    Err((status.unwrap_or(500), why))
                }
                _ => Err((503, "the broker stopped before the op was safe".to_string())),
            };
            let _ = reply.send(Reply::Op(answer));
            let _ = closer
                .send(SessionEvent::Request(session, Request::Close))
                .await;
        });
    }

    fn status_report(&self) -> StatusReport {
        let core = self.core.admin_status();
        let last_change_at_ms = core
            .last_change
            .as_ref()
            .and_then(|change| (change.number == self.last_change.0).then_some(self.last_change.1));
        StatusReport {
            core,
            name: self.config.broker.name.clone(),
            started_at_ms: self.started_at_ms,
            now_ms: unix_ms(),
            connections: self.sessions.values().filter(|h| h.info.is_some()).count(),
            max_connections: self.config.stomp.max_connections,
            memory_limit: self.config.broker.max_memory.bytes() as u64,
            disk_limit: self.config.broker.max_disk.bytes() as u64,
            master: (!self.core.role().is_master())
                .then(|| self.master.as_ref().map(ToString::to_string))
                .flatten(),
            replication_address: self.replication_address.clone(),
            last_change_at_ms,
            copies: self.copies.progress(),
            replica_names: self.replica_names.clone(),
            lost_replicas: self.lost_replicas.0.iter().cloned().collect(),
        }
    }

    fn destinations_report(&self) -> DestinationsReport {
        let (queues, topics) = self.core.destinations();
        let now = unix_ms();
        let queues = queues
            .into_iter()
            .map(|stats| {
                let age = stats.oldest.and_then(|seq| self.seq_clock.age_ms(seq, now));
                (stats, age)
            })
            .collect();
        DestinationsReport { queues, topics }
    }

    fn connections(&self) -> Vec<Connection> {
        let mut list: Vec<Connection> = self
            .sessions
            .iter()
            .filter_map(|(id, handle)| {
                let info = handle.info.as_ref()?;
                Some(Connection {
                    id: id.0,
                    peer: info.peer.clone(),
                    login: info.login.clone(),
                    version: info.version.clone(),
                    connected_at_ms: info.connected_at_ms,
                })
            })
            .collect();
        list.sort_by_key(|c| c.id);
        list
    }

    /// Notes the time of a role change the core made since the last look, and samples
    /// the seq clock.
    pub(super) fn watch_core(&mut self) {
        let now = unix_ms();
        if let Some(change) = self.core.last_change() {
            if change.number != self.last_change.0 {
                self.last_change = (change.number, now);
            }
        }
        self.seq_clock.sample(self.core.next_seq(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_come_from_the_first_sample_that_saw_the_record() {
        let mut clock = SeqClock::default();
        assert_eq!(clock.age_ms(Seq(5), 10_000), Some(0));
        clock.sample(Seq(10), 1_000);
        clock.sample(Seq(20), 1_500); // within the second: not sampled
        clock.sample(Seq(20), 2_000);
        clock.sample(Seq(30), 3_000);
        // Recorded before the first sample: at least as old as it.
        assert_eq!(clock.age_ms(Seq(3), 10_000), Some(9_000));
        // Seq 10 was first seen recorded at 2_000 (next 20).
        assert_eq!(clock.age_ms(Seq(10), 10_000), Some(8_000));
        assert_eq!(clock.age_ms(Seq(25), 10_000), Some(7_000));
        // Not yet sampled as recorded: within the last second.
        assert_eq!(clock.age_ms(Seq(35), 10_000), Some(0));
    }

    #[test]
    fn thins_the_past_instead_of_growing() {
        let mut clock = SeqClock::default();
        for i in 0..(MAX_SAMPLES as u64 * 3) {
            clock.sample(Seq(i + 1), i * 1000);
        }
        assert!(clock.samples.len() <= MAX_SAMPLES);
        assert_eq!(clock.samples.front(), Some(&(Seq(1), 0)));
    }
}
