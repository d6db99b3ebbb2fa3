//! The three-server ZooKeeper ensemble of configs/zk/ (clients on 127.0.0.1:2181, 2182
//! and 2183), run by scripts/zk-ensemble.sh beside the configs folder, for `demo
//! --zookeeper` and `chaos --zookeeper`: started, one server killed and started again
//! (a ZooKeeper fault), stopped when dropped.

use std::path::{Path, PathBuf};

use mirrormq::error::{Error, Result};

/// The servers, for an `[election]` section.
pub const SERVERS: &str = "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183";

pub struct Ensemble {
    script: PathBuf,
}

impl Ensemble {
    /// Starts the servers that are not running, and waits until they serve.
    pub fn start(configs: &Path) -> Result<Ensemble> {
        let root = configs.parent().unwrap_or_else(|| Path::new("."));
        let ensemble = Ensemble {
            script: root.join("scripts").join("zk-ensemble.sh"),
        };
        println!(
            "0. starting the ZooKeeper ensemble: {} start",
            ensemble.script.display()
        );
        ensemble.run(&["start"])?;
        Ok(ensemble)
    }

    /// kill -9 of server `n` (1 to 3).
    pub fn kill(&self, n: usize) -> Result<()> {
        self.run(&["kill", &n.to_string()])
    }

    /// Starts again whichever server is down.
    pub fn restart(&self) -> Result<()> {
        self.run(&["start"])
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        let status = std::process::Command::new("bash")
            .arg(&self.script)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| Error::io(&self.script, e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Tool(format!(
                "{} {} failed ({status})",
                self.script.display(),
                args.join(" ")
            )))
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}
