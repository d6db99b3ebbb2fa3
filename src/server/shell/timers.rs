//! The shell's periodic jobs, each stepped when due: compaction, the clock of requests
//! waiting for replicas, and the status line.

use super::*;

impl Shell {
    /// Steps `Input::Compact` when it is due.
    pub(super) async fn compaction(&mut self) -> Result<()> {
        let Some(at) = self.next_compaction else {
            return Ok(());
        };
        if Instant::now() < at {
            return Ok(());
        }
        self.next_compaction = due_in(self.config.broker.compact_interval_ms);
        self.turn(Input::Compact).await
    }

    /// Steps `Input::Clock` every `CLOCK_TICK` while requests wait for replicas, or a
    /// stored message may expire or waits for its delivery time (its turn's dispatch
    /// releases and removes what is due).
    pub(super) async fn clock(&mut self) -> Result<()> {
        if !self.core.holding() && !self.core.has_timers() {
            return Ok(());
        }
        let now = Instant::now();
        if now < self.next_clock {
            return Ok(());
        }
        self.next_clock = now + CLOCK_TICK;
        let ms = now.duration_since(self.clock_start).as_millis() as u64;
        self.turn(Input::Clock(ms)).await
    }

    /// Logs the status line when it is due.
    pub(super) fn status(&mut self) {
        let Some(at) = self.next_status else { return };
        if Instant::now() >= at {
            let copies = self
                .copies
                .status()
                .map_or(String::new(), |c| format!(" copying to {c}"));
            log::info!(
                "status: role {}, {}{copies}",
                self.core.role(),
                self.core.status()
            );
            let interval = Duration::from_millis(self.config.broker.status_interval_ms);
            self.next_status = Some(Instant::now() + interval);
        }
    }
}
