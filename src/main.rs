//! The `mirrormq` command line: `broker` runs a broker; `send` and `receive` are a STOMP
//! client with failover URLs; `status` and `admin` use a broker's admin API; `verify`
//! reads a whole store; `demo` tours the pair;
//! `bench` is a load generator; `chaos` strikes faults at a pair under a verifying load.
//! Logging is set up here (env_logger, RUST_LOG, default info) and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use structopt::StructOpt;

mod tools;

use mirrormq::client::AckMode;
use tools::cli::{Bodies, ReceiveArgs, SendArgs};

/// A broker allocates a few dozen small buffers per message (frames, headers, records);
/// glibc's malloc spent about a third of the broker's instructions on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(StructOpt)]
#[structopt(
    name = "mirrormq",
    about = "A STOMP message broker whose master/slave pair never loses a receipted message"
)]
enum Cli {
    /// Runs a broker in the foreground until SIGINT or SIGTERM.
    Broker {
        /// The broker's TOML config file (configs/broker.toml, configs/master.toml, configs/slave.toml).
        #[structopt(long, parse(from_os_str))]
        config: PathBuf,
    },
    /// Sends messages; each counts once its receipt arrives, and is resent across failovers until then.
    Send {
        #[structopt(flatten)]
        connection: Connection,
        /// Where to send: /queue/NAME or /topic/NAME.
        #[structopt(long)]
        destination: String,
        /// How many copies of BODY (or of --file) to send.
        #[structopt(long, default_value = "1")]
        count: usize,
        /// Mark messages persistent:true (journaled and fsynced before the receipt).
        #[structopt(long)]
        persistent: bool,
        /// Sends in flight at once (each waits for its receipt).
        #[structopt(long, default_value = "64")]
        window: usize,
        /// Extra header NAME:VALUE (repeatable).
        #[structopt(long = "header", number_of_values = 1)]
        headers: Vec<String>,
        /// Send this file's contents as the body.
        #[structopt(long, parse(from_os_str), conflicts_with = "body")]
        file: Option<PathBuf>,
        /// The body; without it and without --file, each line of standard input is a message.
        body: Option<String>,
    },
    /// Receives messages and prints one body per line.
    Receive {
        #[structopt(flatten)]
        connection: Connection,
        /// Where to receive from: /queue/NAME or /topic/NAME.
        #[structopt(long)]
        destination: String,
        /// Stop after this many messages.
        #[structopt(long)]
        count: Option<usize>,
        /// auto, client or client-individual (each message is acknowledged after printing).
        #[structopt(long, default_value = "client-individual")]
        ack: String,
        /// Stop after this many milliseconds without a message.
        #[structopt(long)]
        idle_ms: Option<u64>,
    },
    /// Runs a master/slave pair under a verifying load while faults strike (kill -9, SIGSTOP of
    /// either side); exits 1 if any receipted message is lost.
    Chaos {
        /// Faults to strike, in turn: kill -9 master, SIGSTOP master, kill -9 slave, SIGSTOP slave.
        #[structopt(long, default_value = "100")]
        cycles: usize,
        /// Slaves beside the master: 1 runs a pair, 2 a group of three.
        #[structopt(long, default_value = "1")]
        slaves: usize,
        /// Milliseconds of load between the pair healing and the next fault.
        #[structopt(long, default_value = "2000")]
        interval_ms: u64,
        /// Milliseconds a SIGSTOP lasts (longer than the link's and the clients' timeouts).
        #[structopt(long, default_value = "3500")]
        pause_ms: u64,
        #[structopt(long, default_value = "2")]
        producers: usize,
        #[structopt(long, default_value = "2")]
        consumers: usize,
        /// Keep the brokers' data and logs here (default: a temporary directory, kept only on failure).
        #[structopt(long, parse(from_os_str))]
        work_dir: Option<PathBuf>,
        /// The brokers' broker.max_memory.
        #[structopt(long, default_value = "512MiB")]
        max_memory: String,
        /// Elect the master through ZooKeeper: starts configs/zk's three-server ensemble
        /// (scripts/zk-ensemble.sh) and adds a fault: kill -9 of a ZooKeeper server.
        #[structopt(long)]
        zookeeper: bool,
        /// Only these faults, in turn (comma-separated): kill-master, pause-master,
        /// kill-slave, pause-slave, kill-zookeeper; all of them by default.
        #[structopt(long, use_delimiter = true)]
        faults: Vec<String>,
        /// Messages a second each consumer takes at most (0: no limit). Below the producers'
        /// rate a backlog builds; with a small --max-memory (1MiB) its bodies are paged out
        /// and read back while the faults strike.
        #[structopt(long, default_value = "0")]
        consumer_rate: u32,
    },
    /// Load generator: produce, consume, roundtrip or fanout; prints msgs/s, MB/s and latency percentiles.
    Bench {
        /// produce, consume, roundtrip or fanout (consumers subscribed first; every one
        /// gets each message of a topic, or, with --selectors, the one selecting its bucket).
        mode: String,
        #[structopt(flatten)]
        connection: Connection,
        #[structopt(long, default_value = "/queue/bench")]
        destination: String,
        #[structopt(long, default_value = "1")]
        producers: usize,
        #[structopt(long, default_value = "1")]
        consumers: usize,
        /// Messages per producer (produce, roundtrip) or in total (consume).
        #[structopt(long, default_value = "10000")]
        count: usize,
        /// Body size in bytes.
        #[structopt(long, default_value = "1024")]
        size: usize,
        /// Receipts outstanding per producer.
        #[structopt(long, default_value = "1")]
        window: usize,
        /// Send non-persistent messages (the default is persistent:true).
        #[structopt(long)]
        transient: bool,
        /// Number each message (producer and index, in a `bench-seq` header) and check
        /// that a single consumer gets each exactly once, in each producer's order.
        #[structopt(long)]
        verify: bool,
        /// An extra header on every SEND, `NAME:VALUE` (repeatable), e.g.
        /// `x-queue-type:quorum` for RabbitMQ's quorum queues.
        #[structopt(long = "header", number_of_values = 1)]
        headers: Vec<String>,
        /// auto, client or client-individual.
        #[structopt(long, default_value = "client-individual")]
        ack: String,
        #[structopt(long)]
        prefetch: Option<u32>,
        /// fanout: consumer i selects `bench_bucket = 'i'` of this many buckets, which the
        /// producers' messages take in turn (0: no selectors).
        #[structopt(long, default_value = "0")]
        selectors: usize,
        /// Print one JSON line instead of text.
        #[structopt(long)]
        json: bool,
    },
    /// Reads every record of a store and prints what it holds; exits non-zero if damaged.
    Verify {
        /// The data directory to check (it is only read).
        #[structopt(long, parse(from_os_str))]
        data_dir: PathBuf,
    },
    /// Prints a broker's role, replicas and queues from its admin API.
    Status {
        #[structopt(flatten)]
        api: AdminApi,
        /// One JSON document instead of tables.
        #[structopt(long)]
        json: bool,
    },
    /// Purges, deletes, moves or browses a queue through a broker's admin API.
    Admin {
        #[structopt(flatten)]
        api: AdminApi,
        #[structopt(subcommand)]
        operation: tools::admin::Operation,
    },
    /// Starts a master and its slaves from the shipped configs, sends, kills the master,
    /// consumes from the slave that took over, and restarts the old master as a slave.
    Demo {
        /// The folder holding master.toml and slave.toml, and group/ for --slaves 2.
        #[structopt(long, parse(from_os_str), default_value = "configs")]
        configs: PathBuf,
        /// Messages to send.
        #[structopt(long, default_value = "1000")]
        count: usize,
        /// Slaves: 1 runs the pair (configs/master.toml, slave.toml), 2 the group of three
        /// (configs/group/).
        #[structopt(long, default_value = "1")]
        slaves: usize,
        /// Keep the brokers' data and logs (the demo says where) instead of deleting them.
        #[structopt(long)]
        keep: bool,
        /// The group of three of configs/zk/, its master elected through ZooKeeper (the
        /// demo runs scripts/zk-ensemble.sh to start and stop the ensemble).
        #[structopt(long)]
        zookeeper: bool,
    },
}

/// A broker's admin API and an admin's login.
#[derive(StructOpt)]
struct AdminApi {
    /// The broker's admin listener: http://HOST:PORT ([admin] bind; the shipped master's
    /// is http://127.0.0.1:8161, the slave's :8162), or https://HOST:PORT (admin.tls).
    #[structopt(long, default_value = "http://127.0.0.1:8161")]
    admin: String,
    /// The CA (PEM) that signed the broker's certificate, for an https:// --admin.
    #[structopt(long, env = "MIRRORMQ_CA")]
    ca: Option<std::path::PathBuf>,
    /// A [[users]] entry with admin = true.
    #[structopt(long, env = "MIRRORMQ_LOGIN")]
    login: Option<String>,
    #[structopt(long, env = "MIRRORMQ_PASSCODE", hide_env_values = true)]
    passcode: Option<String>,
}

impl Connection {
    /// The client reads the CA for ssl:// addresses from MIRRORMQ_CA: `--ca` sets it
    /// (before any thread starts).
    fn use_ca(&self) {
        if let Some(ca) = &self.ca {
            std::env::set_var("MIRRORMQ_CA", ca);
        }
    }
}

impl AdminApi {
    fn into_admin(self) -> mirrormq::Result<tools::admin::Admin> {
        tools::admin::Admin::new(self.admin, self.ca.as_deref(), self.login, self.passcode)
    }
}

#[derive(StructOpt)]
struct Connection {
    /// tcp://HOST:PORT or failover:(tcp://A:P,tcp://B:P)?randomize=false&... (ActiveMQ's
    /// options); ssl://HOST:PORT for TLS, with --ca.
    #[structopt(long)]
    url: String,
    #[structopt(long, env = "MIRRORMQ_LOGIN")]
    login: Option<String>,
    #[structopt(long, env = "MIRRORMQ_PASSCODE", hide_env_values = true)]
    passcode: Option<String>,
    /// The CA (PEM) that signed the brokers' certificates, for ssl:// addresses.
    #[structopt(long, env = "MIRRORMQ_CA", parse(from_os_str))]
    ca: Option<PathBuf>,
}

fn parse_ack(text: &str) -> mirrormq::Result<AckMode> {
    AckMode::parse(text).ok_or_else(|| {
        mirrormq::Error::Config(format!(
            "--ack {text}: use auto, client or client-individual"
        ))
    })
}

fn run(cli: Cli) -> mirrormq::Result<i32> {
    match cli {
        Cli::Broker { config } => {
            mirrormq::config::Config::load(&config).and_then(mirrormq::server::run)
        }
        Cli::Send {
            connection,
            destination,
            count,
            persistent,
            window,
            headers,
            file,
            body,
        } => {
            let headers = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| mirrormq::Error::Config("--header takes NAME:VALUE".into()))?;
            let bodies = match (body, file) {
                (Some(body), _) => Bodies::Repeat(body.into_bytes(), count),
                (None, Some(file)) => Bodies::Repeat(
                    std::fs::read(&file).map_err(|e| mirrormq::Error::io(&file, e))?,
                    count,
                ),
                (None, None) => Bodies::StdinLines,
            };
            tools::cli::send(SendArgs {
                url: {
                    connection.use_ca();
                    connection.url
                },
                destination,
                bodies,
                persistent,
                window,
                headers,
                login: connection.login,
                passcode: connection.passcode,
            })
        }
        Cli::Receive {
            connection,
            destination,
            count,
            ack,
            idle_ms,
        } => {
            let ack = parse_ack(&ack)?;
            tools::cli::receive(ReceiveArgs {
                url: {
                    connection.use_ca();
                    connection.url
                },
                destination,
                count,
                ack,
                idle: idle_ms.map(Duration::from_millis),
                login: connection.login,
                passcode: connection.passcode,
            })
        }
        Cli::Bench {
            mode,
            connection,
            destination,
            producers,
            consumers,
            count,
            size,
            window,
            transient,
            verify,
            headers,
            ack,
            prefetch,
            selectors,
            json,
        } => {
            let ack = parse_ack(&ack)?;
            let target = tools::bench::Target {
                url: {
                    connection.use_ca();
                    connection.url
                },
                login: connection.login,
                passcode: connection.passcode,
                destination,
            };
            let load = tools::bench::Load {
                producers,
                consumers,
                count,
                size,
                window,
                persistent: !transient,
                ack,
                prefetch,
                verify,
                headers: headers
                    .iter()
                    .map(|h| match h.split_once(':') {
                        Some((name, value)) if !name.is_empty() => {
                            Ok((name.to_string(), value.to_string()))
                        }
                        _ => Err(mirrormq::error::Error::Tool(format!(
                            "--header {h:?}: expected NAME:VALUE"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                selectors,
            };
            tools::bench::run(&mode, target, load, json)
        }
        Cli::Chaos {
            cycles,
            slaves,
            interval_ms,
            pause_ms,
            producers,
            consumers,
            work_dir,
            max_memory,
            zookeeper,
            faults,
            consumer_rate,
        } => tools::chaos::run(&tools::chaos::Options {
            cycles,
            slaves,
            interval: Duration::from_millis(interval_ms),
            pause: Duration::from_millis(pause_ms),
            producers,
            consumers,
            work_dir,
            max_memory,
            consumer_rate,
            zookeeper,
            faults,
        }),
        Cli::Verify { data_dir } => mirrormq::verify::run(&data_dir),
        Cli::Status { api, json } => tools::admin::status(&api.into_admin()?, json),
        Cli::Admin { api, operation } => tools::admin::operate(&api.into_admin()?, &operation),
        Cli::Demo {
            configs,
            count,
            slaves,
            keep,
            zookeeper,
        } => tools::demo::run(&configs, count, slaves, keep, zookeeper),
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::from_args()) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            // Said once, on stderr: the logger's line would repeat it.
            eprintln!("mirrormq: {error}");
            std::process::exit(2);
        }
    }
}
