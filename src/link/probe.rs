//! "Is a master listening there?": asked before a step that could leave two masters.
//!
//! A slave that lost its master probes it before promoting itself (a paused or briefly
//! unreachable master that still answers keeps its role, and the slave dials it again).
//! A master that lost its slave probes the slave's replication listener before carrying
//! on alone: only a master has one, so an answer means the slave took over and this
//! broker must stop. A refused connection, a closed link or silence means no master
//! answered; only a real partition makes that answer wrong, and the README says which
//! settings guard against it.

use std::time::Duration;

use crate::codec;
use crate::config::Endpoint;
use crate::repl::message::{MasterMessage, SlaveMessage, MAX_FRAME};
use crate::runtime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    /// A master answered.
    Master,
    /// Nobody answered as a master, and why.
    NoMaster(String),
}

/// Asks `attempts` times, `gap` apart, stopping at the first master; each attempt waits
/// at most `patience` for the connection and the answer.
pub async fn probe(address: &Endpoint, patience: Duration, attempts: u32, gap: Duration) -> Probed {
    let mut last = Probed::NoMaster("not asked".into());
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            runtime::sleep(gap).await;
        }
        last = probe_once(address, patience).await;
        if last == Probed::Master {
            break;
        }
    }
    last
}

async fn probe_once(address: &Endpoint, patience: Duration) -> Probed {
    let asked = async {
        let stream = runtime::connect(&address.socket_addr())
            .await
            .map_err(|e| e.to_string())?;
        let mut writer = &stream;
        codec::write_frame(&mut writer, &SlaveMessage::Probe)
            .await
            .map_err(|e| e.to_string())?;
        let mut reader = &stream;
        let answer = codec::read_frame::<_, MasterMessage>(&mut reader, MAX_FRAME).await;
        let _ = stream.shutdown(std::net::Shutdown::Both);
        match answer {
            // Alive, or a refusal of any kind: either way a master's listener spoke.
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("closed without an answer".to_string()),
            Err(error) => Err(error.to_string()),
        }
    };
    match runtime::timeout(patience, asked).await {
        Some(Ok(())) => Probed::Master,
        Some(Err(why)) => Probed::NoMaster(why),
        None => Probed::NoMaster(format!("no answer within {} ms", patience.as_millis())),
    }
}
