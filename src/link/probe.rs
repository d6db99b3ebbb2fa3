//! "Is a master listening there?": asked before a step that could leave two masters.
//!
//! A slave that lost its master probes it before promoting itself (a paused or briefly
//! unreachable master that still answers keeps its role, and the slave dials it again),
//! and then the other in-sync slaves (one may have taken over, or be about to). A master
//! that lost a slave probes the slave's replication listener before carrying on without
//! it: `Alive` there means the slave took over and this broker must stop. A master with
//! peers probes them before it starts. A refused connection, a closed link or silence
//! means nobody answered; only a real partition makes that answer wrong, and the README
//! says which settings guard against it. A probe dials as the link does (`wire`): over
//! TLS, a listener whose certificate fails the check counts as a live master.

use std::time::Duration;

use super::wire::{DialFailure, Wire};
use crate::codec;
use crate::config::Endpoint;
use crate::journal::Epoch;
use crate::repl::message::{MasterMessage, SlaveMessage, MAX_FRAME};
use crate::runtime;
use crate::transport::Transport;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    /// A master answered, in this epoch (`None`: an answer we cannot read, which only a
    /// broker can have given, so it counts as a master for safety).
    Master(Option<Epoch>),
    /// A broker that is not a master answered: an in-sync slave (`candidate`) may take
    /// over; `master` is its master, if it has one.
    NotMaster {
        candidate: bool,
        master: Option<String>,
    },
    /// Nobody answered, and why.
    NoMaster(String),
}

impl Probed {
    pub fn is_master(&self) -> bool {
        matches!(self, Probed::Master(_))
    }
}

/// Who asks (over which wire), and how long each attempt waits for the connection and
/// the answer.
#[derive(Clone)]
pub struct Prober {
    pub wire: Wire,
    pub patience: Duration,
}

impl Prober {
    /// Asks once.
    pub async fn once(&self, address: &Endpoint) -> Probed {
        self.ask(address, 1, Duration::ZERO).await
    }

    /// Asks `attempts` times, `gap` apart, stopping at the first master.
    pub async fn ask(&self, address: &Endpoint, attempts: u32, gap: Duration) -> Probed {
        let mut last = Probed::NoMaster("not asked".into());
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                runtime::sleep(gap).await;
            }
            last = probe_once(&self.wire, address, self.patience).await;
            if last.is_master() {
                break;
            }
        }
        last
    }
}

/// Whether a failed read means the other end sent bytes (unreadable, or cut short)
/// rather than that the connection failed.
fn spoke(error: &crate::Error) -> bool {
    match error {
        crate::Error::Codec(_) => true,
        crate::Error::Net { source, .. } => source.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

async fn probe_once(wire: &Wire, address: &Endpoint, patience: Duration) -> Probed {
    let asked = async {
        let Transport {
            mut reader,
            mut writer,
            kill,
            ..
        } = match wire.dial(address, patience).await {
            Ok(transport) => transport,
            // Something listens there that will not prove it is one of ours, or that
            // does not take us for one of its own: it may be a live master, so it counts
            // as one for safety, as an answer we cannot read does.
            Err(DialFailure::Untrusted(why)) => {
                log::warn!("replication: probing {address}: {why}");
                return Ok(Probed::Master(None));
            }
            Err(DialFailure::Unreachable(why)) => return Err(why),
        };
        codec::write_frame(&mut writer, &SlaveMessage::Probe)
            .await
            .map_err(|e| e.to_string())?;
        let answer = codec::read_frame::<_, MasterMessage>(&mut reader, MAX_FRAME).await;
        kill();
        match answer {
            Ok(Some(MasterMessage::Alive { epoch })) => Ok(Probed::Master(Some(epoch))),
            Ok(Some(MasterMessage::Following {
                candidate, master, ..
            })) => Ok(Probed::NotMaster { candidate, master }),
            // A refusal or anything else: a broker's listener spoke; assume the worst.
            Ok(Some(_)) => Ok(Probed::Master(None)),
            Ok(None) => Err("closed without an answer".to_string()),
            // Bytes that are not our protocol (a TLS listener answering a plain probe),
            // or a frame cut short: something spoke there; assume the worst.
            Err(error) if spoke(&error) => {
                log::warn!("replication: probing {address}: an answer this broker cannot read ({error}): counted as a live master");
                Ok(Probed::Master(None))
            }
            Err(error) => Err(error.to_string()),
        }
    };
    match runtime::timeout(patience, asked).await {
        Some(Ok(probed)) => probed,
        Some(Err(why)) => Probed::NoMaster(why),
        None => Probed::NoMaster(format!("no answer within {} ms", patience.as_millis())),
    }
}
