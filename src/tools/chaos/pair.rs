//! The two brokers under test: their configs, processes, the role each last logged, and
//! healing after a fault (a broker that exited is restarted as the slave of the one that
//! is master, or as master if the survivor never took over).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::tools::process::BrokerProcess;
use mirrormq::error::{Error, Result};

/// Roles in which a broker serves clients (or is about to).
const MASTER_ROLES: [&str; 3] = ["master-alone", "master-with-slave", "waiting-for-slave"];

pub struct Node {
    pub name: &'static str,
    pub stomp_port: u16,
    repl_port: u16,
    dir: PathBuf,
    pub process: Option<BrokerProcess>,
    /// The role from the newest `role: A -> B` line, and since when.
    pub role: String,
    role_since: Instant,
    /// Lines that must never appear (a panic), kept for the report.
    pub panics: Vec<String>,
    pub restarts: usize,
    /// `broker.max_memory` of its config: a small one pages bodies out under the faults.
    max_memory: String,
}

impl Node {
    pub fn new(name: &'static str, dir: &Path, max_memory: &str) -> Result<Node> {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Node {
            name,
            stomp_port: free_port()?,
            repl_port: free_port()?,
            dir,
            process: None,
            role: "stopped".into(),
            role_since: Instant::now(),
            panics: Vec::new(),
            restarts: 0,
            max_memory: max_memory.to_string(),
        })
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    /// Starts the broker as master, or as the slave of the broker at `master_repl_port`.
    pub fn start(&mut self, master_repl_port: Option<u16>) -> Result<()> {
        let slave_part = master_repl_port.map_or(String::new(), |port| {
            format!("master_connector_uri = \"tcp://127.0.0.1:{port}\"\nuser = \"admin\"\npassword = \"admin\"\n")
        });
        let config = format!(
            "[broker]\nname = \"{name}\"\ndata_dir = {data:?}\nmax_memory = {memory:?}\n\n\
             [stomp]\nbind = \"tcp://127.0.0.1:{stomp}\"\n\n\
             [replication]\nbind = \"tcp://127.0.0.1:{repl}\"\n{slave_part}\n\
             [[users]]\nname = \"admin\"\npassword = \"admin\"\n",
            name = self.name,
            data = self.dir.join("data").display().to_string(),
            memory = self.max_memory,
            stomp = self.stomp_port,
            repl = self.repl_port,
        );
        let path = self.dir.join("broker.toml");
        std::fs::write(&path, config).map_err(|e| Error::io(&path, e))?;
        self.process = Some(BrokerProcess::start(&path, &self.log_path())?);
        self.set_role("starting");
        Ok(())
    }

    fn set_role(&mut self, role: &str) {
        self.role = role.to_string();
        self.role_since = Instant::now();
    }

    /// Reads new log lines and reaps an exited process; returns its exit code if it just
    /// exited.
    pub fn poll(&mut self) -> Option<i32> {
        let process = self.process.as_mut()?;
        for line in process.new_lines() {
            if let Some(role) = new_role(&line) {
                self.role = role;
                self.role_since = Instant::now();
            }
            if line.contains("panicked") {
                self.panics.push(line);
            }
        }
        let status = process.exited()?;
        self.process = None;
        self.set_role("stopped");
        Some(status.code().unwrap_or(-1))
    }

    pub fn alive(&self) -> bool {
        self.process.is_some()
    }

    pub fn is_master(&self) -> bool {
        self.alive() && MASTER_ROLES.contains(&self.role.as_str())
    }

    pub fn repl_port(&self) -> u16 {
        self.repl_port
    }
}

/// The role named by a `role: A -> B (why)` log line.
fn new_role(line: &str) -> Option<String> {
    let (_, after) = line.split_once("role: ")?;
    let (_, next) = after.split_once(" -> ")?;
    Some(next.split([' ', ';']).next()?.to_string())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::net("finding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::net("finding a free port", e))
}

/// How long both brokers may claim the master role: a paused master still claims it
/// until it wakes, finds its slave took over, and stops.
const TWO_MASTERS_GRACE: Duration = Duration::from_secs(10);

pub struct Pair {
    pub nodes: [Node; 2],
    both_masters_since: Option<Instant>,
}

impl Pair {
    pub fn new(nodes: [Node; 2]) -> Pair {
        Pair {
            nodes,
            both_masters_since: None,
        }
    }

    /// Index of the broker serving as master, if exactly one does.
    pub fn master(&self) -> Option<usize> {
        match (self.nodes[0].is_master(), self.nodes[1].is_master()) {
            (true, false) => Some(0),
            (false, true) => Some(1),
            _ => None,
        }
    }

    pub fn healthy(&self) -> bool {
        self.master().is_some_and(|m| {
            self.nodes[m].role == "master-with-slave" && self.nodes[1 - m].role == "slave-mirroring"
        })
    }

    /// Reads both logs; fails on a second master or on an exit that needs the operator.
    pub fn poll(&mut self) -> Result<()> {
        for i in 0..2 {
            if let Some(code) = self.nodes[i].poll() {
                log::info!(
                    "chaos: broker {} exited with code {code}",
                    self.nodes[i].name
                );
                // 0: stopped; 6: found its slave had taken over (restart it as slave).
                // Anything else (refused as diverged, a journal failure) needs a person.
                if code != 6 && code != 0 && code != -1 {
                    return Err(Error::Protocol(format!(
                        "broker {} exited with code {code}; see {}",
                        self.nodes[i].name,
                        self.nodes[i].log_path().display()
                    )));
                }
            }
        }
        if self.nodes[0].is_master() && self.nodes[1].is_master() {
            let since = *self.both_masters_since.get_or_insert_with(Instant::now);
            if since.elapsed() > TWO_MASTERS_GRACE {
                return Err(Error::Protocol(format!(
                    "both brokers have been masters for {TWO_MASTERS_GRACE:?}"
                )));
            }
        } else {
            self.both_masters_since = None;
        }
        Ok(())
    }

    /// Restarts what is down until the pair is a master with an in-sync slave again.
    pub fn heal(&mut self, patience: Duration) -> Result<Duration> {
        let started = Instant::now();
        while !self.healthy() {
            if started.elapsed() > patience {
                return Err(Error::Protocol(format!(
                    "the pair did not heal within {patience:?}: {} is {}, {} is {}",
                    self.nodes[0].name, self.nodes[0].role, self.nodes[1].name, self.nodes[1].role
                )));
            }
            self.restart_what_is_down()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(started.elapsed())
    }

    /// Reads both logs, and restarts a broker that is down: as the slave of a survivor
    /// that is master, or as master if the survivor never took over.
    pub fn restart_what_is_down(&mut self) -> Result<()> {
        self.poll()?;
        for i in 0..2 {
            let other = 1 - i;
            if self.nodes[i].alive() {
                continue;
            }
            let survivor = &self.nodes[other];
            let start_as = if survivor.is_master() {
                Some(Some(survivor.repl_port()))
            } else if !survivor.alive()
                || (survivor.role == "slave-connecting"
                    && survivor.role_since.elapsed() > Duration::from_secs(3))
            {
                // The survivor never took over: this broker holds the data.
                Some(None)
            } else {
                None
            };
            if let Some(master_port) = start_as {
                let node = &mut self.nodes[i];
                node.restarts += 1;
                log::info!(
                    "chaos: restarting broker {} as {}",
                    node.name,
                    if master_port.is_some() {
                        "slave"
                    } else {
                        "master"
                    }
                );
                node.start(master_port)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_lines_name_the_new_role() {
        let line = "[2026-11-22T01:46:24Z INFO  mirrormq::server] role: master-alone -> master-with-slave (slave in sync); epoch 1";
        assert_eq!(new_role(line).as_deref(), Some("master-with-slave"));
        assert_eq!(
            new_role("role: slave-mirroring -> stopped (x)").as_deref(),
            Some("stopped")
        );
        assert_eq!(new_role("status: role master-alone, epoch 1"), None);
    }
}
