//! The brokers under test: their configs, processes, the role each last logged, and
//! healing after a fault. Every broker lists the others as peers, so one that exited is
//! restarted with its config unchanged and finds the master by itself; only when no
//! survivor took over (none was in sync) is it restarted as master.

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
    /// The other brokers' replication ports, its peers.
    pub peers: Vec<u16>,
    /// `[election]`'s text when the master is elected through ZooKeeper (then no peers
    /// and no master are configured).
    pub election: Option<String>,
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
            peers: Vec::new(),
            election: None,
        })
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    /// Writes its config, as master or as the slave of the broker at `master_repl_port`,
    /// and starts it.
    pub fn start(&mut self, master_repl_port: Option<u16>) -> Result<()> {
        let slave_part = master_repl_port.map_or(String::new(), |port| {
            format!("master_connector_uri = \"tcp://127.0.0.1:{port}\"\n")
        });
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|port| format!("\"tcp://127.0.0.1:{port}\""))
            .collect();
        // With an election, ZooKeeper says who the master is: no peers, no master.
        let (slave_part, peers, election) = match &self.election {
            Some(election) => (String::new(), Vec::new(), election.clone()),
            None => (slave_part, peers, String::new()),
        };
        let config = format!(
            "[broker]\nname = \"{name}\"\ndata_dir = {data:?}\nmax_memory = {memory:?}\n\n\
             [stomp]\nbind = \"tcp://127.0.0.1:{stomp}\"\n\n\
             [replication]\nbind = \"tcp://127.0.0.1:{repl}\"\npeers = [{peers}]\n{slave_part}\
             user = \"admin\"\npassword = \"admin\"\n\n{election}\n\
             [[users]]\nname = \"admin\"\npassword = \"admin\"\n",
            peers = peers.join(", "),
            name = self.name,
            data = self.dir.join("data").display().to_string(),
            memory = self.max_memory,
            stomp = self.stomp_port,
            repl = self.repl_port,
        );
        let path = self.config_path();
        std::fs::write(&path, config).map_err(|e| Error::io(&path, e))?;
        self.restart()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("broker.toml")
    }

    /// Starts it again with its config unchanged.
    pub fn restart(&mut self) -> Result<()> {
        self.process = Some(BrokerProcess::start(&self.config_path(), &self.log_path())?);
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

/// How long two brokers may claim the master role: a paused master still claims it
/// until it wakes, finds that a slave took over, and stops.
const TWO_MASTERS_GRACE: Duration = Duration::from_secs(10);
/// How long survivors may all dial without one of them being master before a broker
/// that is down is restarted as master (none of them was in sync to take over).
const NO_MASTER_GRACE: Duration = Duration::from_secs(3);

pub struct Group {
    pub nodes: Vec<Node>,
    two_masters_since: Option<Instant>,
}

impl Group {
    /// The nodes, each listing the others as peers.
    pub fn new(mut nodes: Vec<Node>) -> Group {
        let ports: Vec<u16> = nodes.iter().map(Node::repl_port).collect();
        for node in &mut nodes {
            node.peers = ports
                .iter()
                .copied()
                .filter(|p| *p != node.repl_port)
                .collect();
        }
        Group {
            nodes,
            two_masters_since: None,
        }
    }

    /// Index of the broker serving as master, if exactly one does.
    pub fn master(&self) -> Option<usize> {
        let mut masters = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_master());
        match (masters.next(), masters.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// A master relying on every other broker, each mirroring it.
    pub fn healthy(&self) -> bool {
        self.master().is_some_and(|m| {
            self.nodes[m].role == "master-with-slave"
                && (0..self.nodes.len())
                    .filter(|&i| i != m)
                    .all(|i| self.nodes[i].role == "slave-mirroring")
        })
    }

    /// Reads every log; fails on a second master or on an exit that needs the operator.
    pub fn poll(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            if let Some(code) = node.poll() {
                log::info!("chaos: broker {} exited with code {code}", node.name);
                // 0: stopped; 6: found its slave had taken over; 5: refused by the
                // master it dialled or next to a live peer, while the group settles
                // (restart either). Anything else (a journal failure) needs a person.
                // A broker whose election session ended does not exit: it rejoins.
                if ![0, 5, 6, -1].contains(&code) {
                    return Err(Error::Tool(format!(
                        "broker {} exited with code {code}; see {}",
                        node.name,
                        node.log_path().display()
                    )));
                }
            }
        }
        let masters = self.nodes.iter().filter(|n| n.is_master()).count();
        if masters > 1 {
            let since = *self.two_masters_since.get_or_insert_with(Instant::now);
            if since.elapsed() > TWO_MASTERS_GRACE {
                return Err(Error::Tool(format!(
                    "{masters} brokers have been masters for {TWO_MASTERS_GRACE:?}"
                )));
            }
        } else {
            self.two_masters_since = None;
        }
        Ok(())
    }

    /// Restarts what is down until the group is a master with every other broker in
    /// sync again.
    pub fn heal(&mut self, patience: Duration) -> Result<Duration> {
        let started = Instant::now();
        while !self.healthy() {
            if started.elapsed() > patience {
                let roles: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("{} is {}", n.name, n.role))
                    .collect();
                return Err(Error::Tool(format!(
                    "the group did not heal within {patience:?}: {}",
                    roles.join(", ")
                )));
            }
            self.restart_what_is_down()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(started.elapsed())
    }

    /// Reads every log, and restarts a broker that is down with its config unchanged: it
    /// finds the master among its peers. If no survivor is master and none took over
    /// (each is down or has dialled for a while), it is restarted as master: it holds
    /// the data.
    pub fn restart_what_is_down(&mut self) -> Result<()> {
        self.poll()?;
        let any_master = self.nodes.iter().any(Node::is_master);
        let none_will = self.nodes.iter().all(|n| {
            !n.alive() || (n.role == "slave-connecting" && n.role_since.elapsed() > NO_MASTER_GRACE)
        });
        for node in self.nodes.iter_mut().filter(|n| !n.alive()) {
            if any_master || node.election.is_some() {
                log::info!("chaos: restarting broker {} with its config", node.name);
                node.restarts += 1;
                node.restart()?;
            } else if none_will {
                log::info!("chaos: restarting broker {} as master", node.name);
                node.restarts += 1;
                return node.start(None);
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
