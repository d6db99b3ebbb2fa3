//! `mirrormq chaos`: a master and its slaves under a verifying load while faults strike,
//! Jepsen-style.
//!
//! A master and `--slaves` slaves start on free loopback ports with their data in a work
//! directory, each listing the others as peers. Producers and consumers run through the
//! failover URL (see `load`). Every cycle waits for the group to be healthy (a master
//! with every slave in sync), lets the load run, then strikes one fault in turn: kill -9
//! of the master, SIGSTOP of the master, kill -9 of a slave, SIGSTOP of a slave (each
//! slave in turn), a SIGSTOP lasting longer than every timeout. A broker that died (or
//! stopped itself on finding that a slave took over) is restarted with its config
//! unchanged and rejoins by itself (`group::heal`). With `--zookeeper` the brokers'
//! master is elected through a three-server ZooKeeper ensemble (scripts/zk-ensemble.sh),
//! and a fifth fault strikes: kill -9 of a ZooKeeper server (each in turn), started
//! again after the pause.
//! At the end the load drains and every receipted message must have been delivered:
//! the report gives lost (must be 0), duplicates, and each fault's failover time (from
//! the fault to the next receipt); the exit code is 1 on any loss, panic, or a group that
//! did not heal.

pub mod group;
pub mod load;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use group::{Group, Node};
use load::{Load, Tally, Target};
use mirrormq::error::{Error, Result};
use mirrormq::runtime;

#[derive(Debug, Clone)]
pub struct Options {
    pub cycles: usize,
    /// Slaves beside the master.
    pub slaves: usize,
    /// Load time between the group healing and the next fault.
    pub interval: Duration,
    /// How long a SIGSTOP lasts: longer than the link's and the clients' timeouts.
    pub pause: Duration,
    pub producers: usize,
    pub consumers: usize,
    /// Keep the brokers' data and logs here (default: a temporary directory).
    pub work_dir: Option<PathBuf>,
    /// The brokers' `broker.max_memory`.
    pub max_memory: String,
    /// Messages a second each consumer takes at most (0: as fast as it can). Below the
    /// producers' rate a backlog builds; with a small `max_memory` its bodies are paged
    /// out and read back while the faults strike.
    pub consumer_rate: u32,
    /// Elect the master through ZooKeeper (configs/zk's ensemble).
    pub zookeeper: bool,
    /// Only these faults, by name (`kill-master`, `pause-master`, `kill-slave`,
    /// `pause-slave`, `kill-zookeeper`); empty: all of them.
    pub faults: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillMaster,
    KillSlave,
    PauseMaster,
    PauseSlave,
    KillZookeeper,
}

const FAULTS: [Fault; 4] = [
    Fault::KillMaster,
    Fault::PauseMaster,
    Fault::KillSlave,
    Fault::PauseSlave,
];

/// With `--zookeeper`: every broker fault, and a ZooKeeper server's.
const ZOOKEEPER_FAULTS: [Fault; 5] = [
    Fault::KillMaster,
    Fault::PauseMaster,
    Fault::KillSlave,
    Fault::PauseSlave,
    Fault::KillZookeeper,
];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillMaster => "kill -9 master",
            Fault::KillSlave => "kill -9 slave",
            Fault::PauseMaster => "SIGSTOP master",
            Fault::PauseSlave => "SIGSTOP slave",
            Fault::KillZookeeper => "kill -9 zookeeper",
        }
    }

    /// Its name in `--faults`.
    fn flag(self) -> &'static str {
        match self {
            Fault::KillMaster => "kill-master",
            Fault::KillSlave => "kill-slave",
            Fault::PauseMaster => "pause-master",
            Fault::PauseSlave => "pause-slave",
            Fault::KillZookeeper => "kill-zookeeper",
        }
    }
}

/// Time allowed for the group to heal after a fault.
const HEAL_PATIENCE: Duration = Duration::from_secs(60);
/// Time allowed for a receipt after a fault is over.
const RECEIPT_PATIENCE: Duration = Duration::from_secs(30);

pub fn run(options: &Options) -> Result<i32> {
    let temporary = match &options.work_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(|e| Error::io("a temporary directory", e))?),
    };
    let dir = match (&options.work_dir, &temporary) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temporary)) => temporary.path().to_path_buf(),
        (None, None) => unreachable!("one of the two is set"),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let memory = &options.max_memory;
    const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
    if options.slaves == 0 || options.slaves >= NAMES.len() {
        return Err(Error::Tool(format!(
            "--slaves {}: from 1 to {}",
            options.slaves,
            NAMES.len() - 1
        )));
    }
    let nodes = NAMES[..=options.slaves]
        .iter()
        .map(|name| Node::new(name, &dir, memory))
        .collect::<Result<Vec<_>>>()?;
    let mut group = Group::new(nodes);
    let ensemble = match options.zookeeper {
        true => Some(crate::tools::zookeeper::Ensemble::start(
            std::path::Path::new("configs"),
        )?),
        false => None,
    };
    if ensemble.is_some() {
        let election = format!(
            "[election]\nzookeeper = {:?}\npath = \"/mirrormq/chaos-{}\"\nsession_timeout_ms = 1500\n",
            crate::tools::zookeeper::SERVERS,
            std::process::id()
        );
        for node in &mut group.nodes {
            node.election = Some(election.clone());
        }
    }
    let all: &[Fault] = match ensemble {
        Some(_) => &ZOOKEEPER_FAULTS,
        None => &FAULTS,
    };
    let faults: Vec<Fault> = if options.faults.is_empty() {
        all.to_vec()
    } else {
        options
            .faults
            .iter()
            .map(|name| {
                all.iter()
                    .copied()
                    .find(|f| f.flag() == name)
                    .ok_or_else(|| {
                        Error::Tool(format!(
                            "--faults {name}: one of {}",
                            all.iter().map(|f| f.flag()).collect::<Vec<_>>().join(", ")
                        ))
                    })
            })
            .collect::<Result<_>>()?
    };
    eprintln!(
        "chaos: brokers {} in {}",
        NAMES[..=options.slaves].join(", "),
        dir.display()
    );
    group.nodes[0].start(None)?;
    let master_port = group.nodes[0].repl_port();
    for node in &mut group.nodes[1..] {
        // With an election the config names no master: the same start for all.
        node.start(Some(master_port).filter(|_| ensemble.is_none()))?;
    }
    group.heal(HEAL_PATIENCE)?;
    let ports: Vec<String> = group
        .nodes
        .iter()
        .map(|n| format!("tcp://127.0.0.1:{}", n.stomp_port))
        .collect();
    let target = Target {
        url: format!(
            "failover:({})?randomize=false&maxReconnectDelay=100",
            ports.join(",")
        ),
        login: "admin".into(),
        passcode: "admin".into(),
    };
    let mut load = runtime::block_on(Load::start(
        &target,
        options.producers,
        options.consumers,
        options.consumer_rate,
    ))
    .map_err(|e| Error::Tool(format!("starting the load: {e}")))?;
    let started = Instant::now();
    let mut failovers: Vec<(Fault, Duration)> = Vec::new();
    let outcome = (|| -> Result<()> {
        for cycle in 0..options.cycles {
            let fault = faults[cycle % faults.len()];
            // Slave (and ZooKeeper) faults strike each in turn.
            let which = cycle / faults.len();
            wait_while_healthy(&mut group, options.interval)?;
            let struck = Instant::now();
            if fault == Fault::KillZookeeper {
                if let Some(ensemble) = &ensemble {
                    ensemble.kill(which % 3 + 1)?;
                    std::thread::sleep(options.pause / 2);
                    ensemble.restart()?;
                }
            }
            strike(&mut group, fault, which, options.pause, &load)?;
            let healed = group.heal(HEAL_PATIENCE)?;
            let failover = load.ledger.longest_stall_since(struck);
            eprintln!(
                "chaos: cycle {}/{}: {}: receipts stalled {} ms at most; healthy again after {} ms; {} receipted so far",
                cycle + 1,
                options.cycles,
                fault.name(),
                failover.as_millis(),
                healed.as_millis(),
                load.ledger.receipts()
            );
            failovers.push((fault, failover));
        }
        Ok(())
    })();
    runtime::block_on(load.stop_producing());
    let tally = runtime::block_on(load.drain(Duration::from_secs(20)));
    let panics: Vec<String> = group.nodes.iter().flat_map(|n| n.panics.clone()).collect();
    report(&tally, &failovers, &group, started.elapsed(), &panics);
    if let Err(error) = &outcome {
        eprintln!("chaos: FAILED: {error}");
    }
    let failed = outcome.is_err() || tally.lost > 0 || !panics.is_empty();
    if failed {
        if let Some(temporary) = temporary {
            // Keep the evidence.
            let kept = temporary.keep();
            eprintln!("chaos: logs and data kept in {}", kept.display());
        }
    }
    Ok(i32::from(failed))
}

/// Lets the load run for `interval`, failing if the group breaks meanwhile.
fn wait_while_healthy(group: &mut Group, interval: Duration) -> Result<()> {
    let until = Instant::now() + interval;
    while Instant::now() < until {
        group.poll()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Strikes `fault` (at the `which`th slave, for a slave fault) and waits until receipts
/// flow again.
fn strike(
    group: &mut Group,
    fault: Fault,
    which: usize,
    pause: Duration,
    load: &Load,
) -> Result<()> {
    let master = group
        .master()
        .ok_or_else(|| Error::Tool("no master to strike".into()))?;
    let slaves: Vec<usize> = (0..group.nodes.len()).filter(|&i| i != master).collect();
    let target = match fault {
        Fault::KillMaster | Fault::PauseMaster => master,
        Fault::KillSlave | Fault::PauseSlave => slaves[which % slaves.len()],
        // Struck by the caller (the ensemble is its): only wait for receipts here.
        Fault::KillZookeeper => return receipts_again(group, fault, load),
    };
    let node = &mut group.nodes[target];
    let process = node
        .process
        .as_mut()
        .ok_or_else(|| Error::Tool(format!("broker {} is not running", node.name)))?;
    match fault {
        Fault::KillMaster | Fault::KillSlave => process.kill(),
        Fault::PauseMaster | Fault::PauseSlave => {
            process.signal("STOP")?;
            std::thread::sleep(pause);
            process.signal("CONT")?;
        }
        Fault::KillZookeeper => {}
    }
    receipts_again(group, fault, load)
}

/// Waits for a receipt after the fault is over, from whichever broker serves now.
fn receipts_again(group: &mut Group, fault: Fault, load: &Load) -> Result<()> {
    let over = Instant::now();
    loop {
        group.poll()?;
        if load.ledger.last_receipt().is_some_and(|at| at > over) {
            return Ok(());
        }
        if over.elapsed() > RECEIPT_PATIENCE {
            return Err(Error::Tool(format!(
                "no receipt within {RECEIPT_PATIENCE:?} after {}",
                fault.name()
            )));
        }
        // Restart a killed broker meanwhile, so a group whose survivors never took over
        // can serve again.
        group.restart_what_is_down()?;
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn report(
    tally: &Tally,
    failovers: &[(Fault, Duration)],
    group: &Group,
    elapsed: Duration,
    panics: &[String],
) {
    let restarts: Vec<String> = group
        .nodes
        .iter()
        .map(|n| format!("{} {}", n.name, n.restarts))
        .collect();
    println!(
        "chaos: {} faults in {:.0} s; restarts: {}",
        failovers.len(),
        elapsed.as_secs_f64(),
        restarts.join(", ")
    );
    println!(
        "receipted {}, delivered {} (unique), lost {}, duplicates delivered {}, delivered without a receipt {}, send errors {}",
        tally.receipted,
        tally.delivered_unique,
        tally.lost,
        tally.duplicates,
        tally.unreceipted_delivered,
        tally.send_errors
    );
    if !tally.first_lost.is_empty() {
        println!("first lost: {}", tally.first_lost.join(", "));
    }
    for fault in ZOOKEEPER_FAULTS {
        let mut times: Vec<u128> = failovers
            .iter()
            .filter(|(f, _)| *f == fault)
            .map(|(_, d)| d.as_millis())
            .collect();
        if times.is_empty() {
            continue;
        }
        times.sort_unstable();
        println!(
            "{:<15} n={:<3} longest receipt stall (ms): min {} median {} max {}; all: {:?}",
            fault.name(),
            times.len(),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
            times
        );
    }
    for panic in panics {
        println!("PANIC: {panic}");
    }
}
