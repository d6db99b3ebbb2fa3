//! `replication.min_replicas`: a master with fewer slaves in sync than it needs holds
//! persistent work back instead of receipting it with too few copies.
//!
//! A persistent SEND, an ACK, a NACK or a COMMIT that arrives while the master is short
//! waits here, unapplied, and so does everything its session sends after it (a session's
//! frames take effect in order). Once enough slaves are in sync the held requests run, in
//! the order they came. No wait is unbounded: the shell steps `Input::Clock` while
//! anything is held, and a request held for `min_replicas_timeout_ms` fails its session
//! with an ERROR that says how many slaves are in sync and how many are needed; nothing
//! it carried was applied, so nothing of it is ever receipted or delivered.

use std::collections::VecDeque;

use super::{Core, Request};
use crate::broker::SessionId;

/// One request waiting for replicas.
#[derive(Debug)]
struct Waiting {
    session: SessionId,
    request: Request,
    /// The clock reading at the first `Input::Clock` after it was held.
    since: Option<u64>,
}

/// The requests held back, in arrival order.
#[derive(Debug, Default)]
pub(super) struct Held {
    waiting: VecDeque<Waiting>,
}

impl Held {
    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    fn holds_session(&self, session: SessionId) -> bool {
        self.waiting.iter().any(|w| w.session == session)
    }
}

/// Whether a request writes something a client is told is safe: these wait for replicas.
fn needs_replicas(request: &Request) -> bool {
    match request {
        Request::Send { message, .. } => message.persistent,
        Request::Subscribe { durable, .. } => durable.is_some(),
        Request::Unsubscribe { delete_durable, .. } => delete_durable.is_some(),
        Request::Ack { .. } | Request::Nack { .. } | Request::Commit { .. } | Request::Admin(_) => {
            true
        }
        _ => false,
    }
}

impl Core {
    /// Slaves in sync, and how many this master needs before it takes persistent work.
    fn replicas(&self) -> (usize, usize) {
        (self.group.in_sync_count(), self.group.policy().min_replicas)
    }

    /// A master with fewer slaves in sync than `min_replicas`.
    fn short_of_replicas(&self) -> bool {
        let (in_sync, needed) = self.replicas();
        self.group.role().is_master() && in_sync < needed
    }

    /// Holds `request` back if it must wait for replicas; gives it back otherwise.
    pub(super) fn hold(&mut self, session: SessionId, request: Request) -> Option<Request> {
        if let Request::Close = request {
            // The session is gone: nobody is left to answer.
            self.held.waiting.retain(|w| w.session != session);
            return Some(request);
        }
        // Written reports messages already delivered: it carries no client frame to hold.
        let after_held =
            !matches!(request, Request::Written { .. }) && self.held.holds_session(session);
        if !(after_held || (needs_replicas(&request) && self.short_of_replicas())) {
            return Some(request);
        }
        if self.held.is_empty() {
            let (in_sync, needed) = self.replicas();
            log::warn!("min_replicas: {in_sync} slave(s) in sync, {needed} needed: persistent SENDs, ACKs and COMMITs wait (up to min_replicas_timeout_ms)");
        }
        self.held.waiting.push_back(Waiting {
            session,
            request,
            since: None,
        });
        None
    }

    /// Runs the held requests once enough slaves are in sync.
    pub(super) fn release_held(&mut self) {
        if self.held.is_empty() || self.short_of_replicas() {
            return;
        }
        log::info!(
            "min_replicas: {} slave(s) in sync: {} held request(s) go on",
            self.replicas().0,
            self.held.waiting.len()
        );
        while let Some(waiting) = self.held.waiting.pop_front() {
            self.request(waiting.session, waiting.request);
        }
    }

    /// The clock (ms): stamps newly held requests, and fails the sessions of those held
    /// for longer than `min_replicas_timeout_ms`.
    pub(super) fn clock(&mut self, now_ms: u64) {
        let timeout = self.group.policy().min_replicas_timeout_ms;
        let mut expired = Vec::new();
        for waiting in &mut self.held.waiting {
            let since = *waiting.since.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= timeout && !expired.contains(&waiting.session) {
                expired.push(waiting.session);
            }
        }
        let (in_sync, needed) = self.replicas();
        for session in expired {
            // The first request the session is waiting on names the receipt it asked for.
            let receipt = self
                .held
                .waiting
                .iter()
                .find(|w| w.session == session)
                .and_then(|w| w.request.receipt().map(str::to_string));
            self.held.waiting.retain(|w| w.session != session);
            let message = format!("min_replicas: {in_sync} slave(s) in sync, {needed} needed; waited {timeout} ms: this frame and the ones after it were not applied");
            log::warn!("session {}: {message}", session.0);
            self.fail_session(session, &message, receipt);
        }
    }

    /// Whether requests wait for replicas (the shell then steps `Input::Clock`).
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }
}
