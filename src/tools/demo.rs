//! `mirrormq demo`: the main job in one command. Starts a master and a slave from the two
//! shipped configs (with their data in a temporary folder), sends persistent messages
//! through a failover URL, kills the master with SIGKILL, and consumes every message from
//! the promoted slave, saying what happened at each step.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::tools::process::BrokerProcess;
use mirrormq::client::{AckMode, Client};
use mirrormq::config::Config;
use mirrormq::error::{Error, Result};
use mirrormq::runtime;

const QUEUE: &str = "/queue/demo";
const PATIENCE: Duration = Duration::from_secs(30);

/// Copies a shipped config into `dir`, pointing its data_dir at `dir/name`.
fn stage_config(shipped: &Path, dir: &Path, name: &str) -> Result<(PathBuf, Config)> {
    let text = std::fs::read_to_string(shipped).map_err(|e| Error::io(shipped, e))?;
    let data = dir.join(name);
    let staged: String = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("data_dir") {
                format!("data_dir = {:?}", data.display().to_string())
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

fn port_open(endpoint: &mirrormq::config::Endpoint) -> bool {
    std::net::TcpStream::connect_timeout(
        &match endpoint.socket_addr().parse() {
            Ok(addr) => addr,
            Err(_) => return false,
        },
        Duration::from_millis(100),
    )
    .is_ok()
}

pub fn run(configs: &Path, count: usize) -> Result<i32> {
    let dir = tempfile::Builder::new()
        .prefix("mirrormq-demo-")
        .tempdir()
        .map_err(|e| Error::io("a temporary folder", e))?;
    let (master_config, master) = stage_config(&configs.join("master.toml"), dir.path(), "master")?;
    let (slave_config, slave) = stage_config(&configs.join("slave.toml"), dir.path(), "slave")?;
    let endpoints = [
        Some(&master.stomp.bind),
        Some(&slave.stomp.bind),
        master.replication.bind.as_ref(),
        slave.replication.bind.as_ref(),
    ];
    if let Some(busy) = endpoints.into_iter().flatten().find(|e| port_open(e)) {
        return Err(Error::Protocol(format!("{busy} is already in use (a broker still running?); the demo needs the ports of the shipped configs")));
    }
    let url = format!(
        "failover:({},{})?randomize=false",
        master.stomp.bind, slave.stomp.bind
    );
    let login = master
        .users
        .first()
        .map(|u| (u.name.clone(), u.password.clone()));
    let (login, passcode) = (
        login.as_ref().map(|l| l.0.as_str()),
        login.as_ref().map(|l| l.1.as_str()),
    );
    println!(
        "mirrormq demo: a master/slave pair from {} and {}",
        configs.join("master.toml").display(),
        configs.join("slave.toml").display()
    );
    println!(
        "   (data and logs in {}; clients use {url})",
        dir.path().display()
    );

    let mut master_broker = BrokerProcess::start(&master_config, &dir.path().join("master.log"))?;
    master_broker.wait_for("stomp: listening", PATIENCE)?;
    println!(
        "1. master started (pid {}): clients on {}, slave link on {}",
        master_broker.pid(),
        master.stomp.bind,
        master
            .replication
            .bind
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default()
    );
    let mut slave_broker = BrokerProcess::start(&slave_config, &dir.path().join("slave.log"))?;
    slave_broker.wait_for("-> slave-mirroring", PATIENCE)?;
    let closed = !port_open(&slave.stomp.bind);
    println!(
        "2. slave started (pid {}): mirroring the master; its client port {} is {}",
        slave_broker.pid(),
        slave.stomp.bind,
        if closed {
            "closed, as it must be"
        } else {
            "OPEN (unexpected)"
        }
    );

    let sent = runtime::block_on(async {
        let client = Client::connect(&url, login, passcode)
            .await
            .map_err(|e| Error::Protocol(e.to_string()))?;
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
            .map_err(|e| Error::Protocol(e.to_string()))?;
        Ok::<_, Error>((count - failed, elapsed))
    })?;
    println!(
        "3. sent {count} persistent messages to {QUEUE}: {} receipted in {} ms ({:.0} msg/s); each receipt means fsynced on the master AND held by the slave",
        sent.0,
        sent.1.as_millis(),
        sent.0 as f64 / sent.1.as_secs_f64().max(1e-9)
    );

    let killed_at = Instant::now();
    master_broker.kill();
    println!("4. kill -9 of the master (pid {})", master_broker.pid());
    while !port_open(&slave.stomp.bind) {
        if killed_at.elapsed() > PATIENCE {
            return Err(Error::Protocol(format!(
                "the slave did not take over; see {}",
                slave_broker.log().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "5. the slave took over: its client port opened {} ms after the kill",
        killed_at.elapsed().as_millis()
    );

    let bodies = runtime::block_on(async {
        let client = Client::connect(&url, login, passcode)
            .await
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let mut subscription = client
            .subscribe(QUEUE, AckMode::ClientIndividual)
            .await
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let mut bodies = Vec::new();
        while bodies.len() < sent.0 {
            match runtime::timeout(Duration::from_secs(5), subscription.next()).await {
                Some(Some(message)) => {
                    bodies.push(String::from_utf8_lossy(&message.body).into_owned());
                    client
                        .ack(&message)
                        .await
                        .map_err(|e| Error::Protocol(e.to_string()))?;
                }
                _ => break,
            }
        }
        client
            .disconnect()
            .await
            .map_err(|e| Error::Protocol(e.to_string()))?;
        Ok::<_, Error>(bodies)
    })?;
    let unique: HashSet<&String> = bodies.iter().collect();
    let in_order = bodies
        .iter()
        .enumerate()
        .all(|(i, b)| *b == format!("message {i}"));
    let missing = sent.0 - unique.len().min(sent.0);
    println!(
        "6. consumed {} messages from the promoted slave through the same URL: {} unique, {missing} missing, {}",
        bodies.len(),
        unique.len(),
        if in_order { "in order" } else { "NOT in order" }
    );
    drop(slave_broker);
    println!("7. stopped the slave; done");
    Ok(if missing == 0 && unique.len() == bodies.len() && closed {
        0
    } else {
        1
    })
}
