//! `mirrormq demo`: the main job in one command. Starts a master and its slaves from the
//! shipped configs (configs/master.toml and slave.toml, or with `--slaves 2` the group in
//! configs/group/), with their data in a temporary folder; sends persistent messages
//! through a failover URL; kills the master with SIGKILL; shows one slave taking over and
//! the other following it; consumes every message through the same URL; and restarts the
//! old master with its own config, which rejoins as a slave. It says what happened at
//! each step.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::tools::process::BrokerProcess;
use mirrormq::client::{AckMode, Client};
use mirrormq::config::{Config, Endpoint};
use mirrormq::error::{Error, Result};
use mirrormq::runtime;

const QUEUE: &str = "/queue/demo";
const PATIENCE: Duration = Duration::from_secs(30);

/// Copies a shipped config into `dir`, pointing its data_dir at `dir/name`, and its
/// election path, if it has one, at a group of this run's own (`group`).
fn stage_config(shipped: &Path, dir: &Path, name: &str, group: &str) -> Result<(PathBuf, Config)> {
    let text = std::fs::read_to_string(shipped).map_err(|e| Error::io(shipped, e))?;
    let data = dir.join(name);
    let staged: String = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("data_dir") {
                format!("data_dir = {:?}", data.display().to_string())
            } else if line.trim_start().starts_with("path =") {
                format!("path = {group:?}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, staged).map_err(|e| Error::io(&path, e))?;
    let config = Config::load(&path)?;
    Ok((path, config))
}

fn port_open(endpoint: &Endpoint) -> bool {
    std::net::TcpStream::connect_timeout(
        &match endpoint.socket_addr().parse() {
            Ok(addr) => addr,
            Err(_) => return false,
        },
        Duration::from_millis(100),
    )
    .is_ok()
}

/// The shipped configs of a master with `slaves` slaves, the master first (with
/// `zookeeper`, the three of configs/zk/: the first to start is elected).
fn shipped(configs: &Path, slaves: usize, zookeeper: bool) -> Result<Vec<(PathBuf, &'static str)>> {
    if zookeeper {
        return Ok(["a", "b", "c"]
            .into_iter()
            .zip(["broker-a", "broker-b", "broker-c"])
            .map(|(x, name)| (configs.join("zk").join(format!("broker-{x}.toml")), name))
            .collect());
    }
    match slaves {
        1 => Ok(vec![
            (configs.join("master.toml"), "master"),
            (configs.join("slave.toml"), "slave"),
        ]),
        2 => Ok(["a", "b", "c"]
            .into_iter()
            .zip(["broker-a", "broker-b", "broker-c"])
            .map(|(x, name)| (configs.join("group").join(format!("broker-{x}.toml")), name))
            .collect()),
        n => Err(Error::Tool(format!(
            "--slaves {n}: the shipped configs hold a pair (1) and a group of three (2)"
        ))),
    }
}

/// One broker of the demo: its staged config, what it says, and its process once started.
struct Member {
    name: &'static str,
    path: PathBuf,
    config: Config,
    process: Option<BrokerProcess>,
}

impl Member {
    fn start(&mut self, dir: &Path) -> Result<&mut BrokerProcess> {
        let log = dir.join(format!("{}.log", self.name));
        Ok(self.process.insert(BrokerProcess::start(&self.path, &log)?))
    }

    fn process(&mut self) -> &mut BrokerProcess {
        self.process.as_mut().expect("started")
    }

    fn stomp(&self) -> &Endpoint {
        &self.config.stomp.bind
    }
}

/// Runs the demo; with `keep`, its data and logs stay where it says.
pub fn run(
    configs: &Path,
    count: usize,
    slaves: usize,
    keep: bool,
    zookeeper: bool,
) -> Result<i32> {
    let mut dir = tempfile::Builder::new()
        .prefix("mirrormq-demo-")
        .tempdir()
        .map_err(|e| Error::io("a temporary folder", e))?;
    dir.disable_cleanup(keep);
    let shipped = shipped(configs, slaves, zookeeper)?;
    let slaves = shipped.len() - 1;
    // A group path of this run's own: nothing of an earlier run's election is seen.
    let group = format!("/mirrormq/demo-{}", std::process::id());
    let _ensemble = match zookeeper {
        true => Some(crate::tools::zookeeper::Ensemble::start(configs)?),
        false => None,
    };
    let mut members = Vec::new();
    for (path, name) in &shipped {
        let (staged, config) = stage_config(path, dir.path(), name, &group)?;
        members.push(Member {
            name,
            path: staged,
            config,
            process: None,
        });
    }
    let endpoints = members
        .iter()
        .flat_map(|m| {
            let admin = m.config.admin.as_ref().map(|a| &a.bind);
            [Some(m.stomp()), m.config.replication.bind.as_ref(), admin]
        })
        .flatten();
    if let Some(busy) = endpoints.into_iter().find(|e| port_open(e)) {
        return Err(Error::Tool(format!("{busy} is already in use (a broker still running?); the demo needs the ports of the shipped configs")));
    }
    let stomp: Vec<String> = members.iter().map(|m| m.stomp().to_string()).collect();
    let url = format!("failover:({})?randomize=false", stomp.join(","));
    let login = members[0]
        .config
        .users
        .first()
        .map(|u| (u.name.clone(), u.password.clone()));
    let (login, passcode) = (
        login.as_ref().map(|l| l.0.as_str()),
        login.as_ref().map(|l| l.1.as_str()),
    );
    let files: Vec<String> = shipped
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    println!(
        "mirrormq demo: a master and {slaves} slave(s) from {}",
        files.join(", ")
    );
    println!(
        "   (data and logs in {}, {}; clients use {url})",
        dir.path().display(),
        if keep {
            "kept afterwards (--keep)"
        } else {
            "deleted at the end unless you pass --keep"
        }
    );

    let master = &mut members[0];
    let pid = master.start(dir.path())?.pid();
    master.process().wait_for("stomp: listening", PATIENCE)?;
    let console = master.config.admin.as_ref().map_or(String::new(), |a| {
        format!(", console on http://{}/", a.bind.socket_addr())
    });
    println!(
        "1. {} (pid {pid}) is up as the master: clients on {}, replication on {}{console}",
        master.name,
        master.stomp(),
        master
            .config
            .replication
            .bind
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default()
    );
    let mut closed = true;
    for slave in &mut members[1..] {
        let pid = slave.start(dir.path())?.pid();
        slave.process().wait_for("-> slave-mirroring", PATIENCE)?;
        let shut = !port_open(slave.stomp());
        closed &= shut;
        println!(
            "2. {} (pid {pid}) is up as a slave, mirroring the master; its client port {} is {}",
            slave.name,
            slave.stomp(),
            if shut {
                "closed, as it must be"
            } else {
                "OPEN (unexpected)"
            }
        );
    }

    let sent = send(&url, login, passcode, count)?;
    println!(
        "3. sent {count} persistent messages to {QUEUE}: {} receipted in {} ms ({:.0} msg/s); each receipt means fsynced on the master AND held by every slave in sync",
        sent.0,
        sent.1.as_millis(),
        sent.0 as f64 / sent.1.as_secs_f64().max(1e-9)
    );

    let killed_at = Instant::now();
    members[0].process().kill();
    println!(
        "4. kill -9 of the master (pid {})",
        members[0].process().pid()
    );
    let new = loop {
        if let Some(new) = (1..members.len()).find(|&i| port_open(members[i].stomp())) {
            break new;
        }
        if killed_at.elapsed() > PATIENCE {
            return Err(Error::Tool(format!(
                "no slave took over; see the logs in {}",
                dir.path().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    println!(
        "5. {} took over: its client port opened {} ms after the kill",
        members[new].name,
        killed_at.elapsed().as_millis()
    );
    for other in (1..members.len()).filter(|&i| i != new) {
        let member = &mut members[other];
        let follows = if zookeeper {
            "election: the master is"
        } else {
            "following it"
        };
        member.process().wait_for(follows, PATIENCE)?;
        member.process().wait_for("-> slave-mirroring", PATIENCE)?;
        println!(
            "   {} follows it: it mirrors the new master and its client port stays closed",
            member.name
        );
    }

    let bodies = receive(&url, login, passcode, sent.0)?;
    let unique: HashSet<&String> = bodies.iter().collect();
    let in_order = bodies
        .iter()
        .enumerate()
        .all(|(i, b)| *b == format!("message {i}"));
    let missing = sent.0 - unique.len().min(sent.0);
    println!(
        "6. consumed {} messages from {} through the same URL: {} unique, {missing} missing, {}",
        bodies.len(),
        members[new].name,
        unique.len(),
        if in_order { "in order" } else { "NOT in order" }
    );

    let old = &mut members[0];
    old.start(dir.path())?;
    old.process().wait_for("-> slave-mirroring", PATIENCE)?;
    let found = if zookeeper {
        "ZooKeeper named the new master"
    } else {
        "it found the new master among its peers"
    };
    println!(
        "7. {} restarted with its own config: {found}, and it mirrors it as a slave",
        old.name
    );
    drop(members);
    if keep {
        println!(
            "8. stopped every broker; their data and logs are in {}",
            dir.path().display()
        );
    } else {
        println!("8. stopped every broker and deleted their data and logs; done");
    }
    Ok(if missing == 0 && unique.len() == bodies.len() && closed {
        0
    } else {
        1
    })
}

/// Sends `count` persistent messages; how many were receipted, and how long it took.
fn send(
    url: &str,
    login: Option<&str>,
    passcode: Option<&str>,
    count: usize,
) -> Result<(usize, Duration)> {
    runtime::block_on(async {
        let client = Client::connect(url, login, passcode)
            .await
            .map_err(|e| Error::Tool(e.to_string()))?;
        let started = Instant::now();
        let sends = (0..count).map(|i| {
            let client = client.clone();
            async move {
                client
                    .send(QUEUE, format!("message {i}"), &[("persistent", "true")])
                    .await
            }
        });
        let results: Vec<_> = futures::stream::iter(sends).buffered(64).collect().await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        let elapsed = started.elapsed();
        client
            .disconnect()
            .await
            .map_err(|e| Error::Tool(e.to_string()))?;
        Ok::<_, Error>((count - failed, elapsed))
    })
}

/// Receives up to `count` messages (acknowledging each); their bodies.
fn receive(
    url: &str,
    login: Option<&str>,
    passcode: Option<&str>,
    count: usize,
) -> Result<Vec<String>> {
    runtime::block_on(async {
        let client = Client::connect(url, login, passcode)
            .await
            .map_err(|e| Error::Tool(e.to_string()))?;
        let mut subscription = client
            .subscribe(QUEUE, AckMode::ClientIndividual)
            .await
            .map_err(|e| Error::Tool(e.to_string()))?;
        let mut bodies = Vec::new();
        while bodies.len() < count {
            match runtime::timeout(Duration::from_secs(5), subscription.next()).await {
                Some(Some(message)) => {
                    bodies.push(String::from_utf8_lossy(&message.body).into_owned());
                    client
                        .ack(&message)
                        .await
                        .map_err(|e| Error::Tool(e.to_string()))?;
                }
                _ => break,
            }
        }
        client
            .disconnect()
            .await
            .map_err(|e| Error::Tool(e.to_string()))?;
        Ok::<_, Error>(bodies)
    })
}
