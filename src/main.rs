//! The `mirrormq` command line: `broker` runs a broker, `verify` reads a whole store.
//! Logging is set up here (env_logger, RUST_LOG, default info) and nowhere else.

use std::path::PathBuf;

use structopt::StructOpt;

#[derive(StructOpt)]
#[structopt(
    name = "mirrormq",
    about = "A STOMP message broker whose master/slave pair never loses a receipted message"
)]
enum Cli {
    /// Runs a broker in the foreground until SIGINT or SIGTERM.
    Broker {
        /// The broker's TOML config file (see configs/broker.toml).
        #[structopt(long, parse(from_os_str))]
        config: PathBuf,
    },
    /// Reads every record of a store and prints what it holds; exits non-zero if damaged.
    Verify {
        /// The data directory to check (it is only read).
        #[structopt(long, parse(from_os_str))]
        data_dir: PathBuf,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match Cli::from_args() {
        Cli::Broker { config } => {
            mirrormq::config::Config::load(&config).and_then(mirrormq::server::run)
        }
        Cli::Verify { data_dir } => mirrormq::verify::run(&data_dir),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            log::error!("{error}");
            eprintln!("mirrormq: {error}");
            std::process::exit(2);
        }
    }
}
