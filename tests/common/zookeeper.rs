//! Real ZooKeeper servers for the tests: Debian's `zookeeper` package (3.8) run with the
//! machine's JRE, one process per server, on free loopback ports with temporary data
//! directories, stopped by the pid we started when dropped. scripts/test-deps.sh
//! installs the package; without it the test fails saying so, it is never skipped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, PATIENCE};

/// Debian's server jar; its manifest names the rest of the classpath.
const JAR: &str = "/usr/share/java/zookeeper.jar";
/// A tick of 100 ms lets sessions time out from 200 ms (twice the tick) up.
const TICK_MS: u64 = 100;

struct Server {
    child: Option<Child>,
    config: PathBuf,
    client_port: u16,
}

/// An ensemble of one or more ZooKeeper servers.
pub struct Ensemble {
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Ensemble {
    /// Starts `count` servers and waits until each serves (standalone, leader or follower).
    pub fn start(count: usize) -> Ensemble {
        assert!(
            Path::new(JAR).exists(),
            "ZooKeeper is not installed ({JAR} is missing): run scripts/test-deps.sh (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..count)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let quorum: String = if count > 1 {
            ports
                .iter()
                .enumerate()
                .map(|(i, (_, peer, election))| {
                    format!("server.{}=127.0.0.1:{peer}:{election}\n", i + 1)
                })
                .collect()
        } else {
            String::new()
        };
        let servers = ports
            .iter()
            .enumerate()
            .map(|(i, (client_port, _, _))| {
                let data = dir.path().join(format!("zk{}", i + 1));
                std::fs::create_dir_all(&data).unwrap();
                std::fs::write(data.join("myid"), format!("{}\n", i + 1)).unwrap();
                let config = data.join("zoo.cfg");
                let text = format!(
                    "tickTime={TICK_MS}\ninitLimit=50\nsyncLimit=20\ndataDir={}\nclientPort={client_port}\n\
                     clientPortAddress=127.0.0.1\nadmin.enableServer=false\nminSessionTimeout={}\n\
                     4lw.commands.whitelist=srvr,ruok\n{quorum}",
                    data.display(),
                    TICK_MS * 2
                );
                std::fs::write(&config, text).unwrap();
                Server {
                    child: None,
                    config,
                    client_port: *client_port,
                }
            })
            .collect();
        let mut ensemble = Ensemble { servers, _dir: dir };
        for i in 0..count {
            ensemble.spawn(i);
        }
        for i in 0..count {
            ensemble.wait_serving(i);
        }
        ensemble
    }

    fn spawn(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let log = std::fs::File::create(server.config.with_file_name("server.log")).unwrap();
        let child = Command::new("java")
            .args(["-Xmx96m", "-Dzookeeper.jmx.log4j.disable=true", "-cp", JAR])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&server.config)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting java (the zookeeper package brings a JRE)");
        server.child = Some(child);
    }

    /// What the server's `srvr` command says, if it answers.
    fn srvr(&self, i: usize) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.servers[i].client_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(b"srvr").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        Some(text)
    }

    fn wait_serving(&self, i: usize) {
        let started = Instant::now();
        loop {
            if let Some(text) = self.srvr(i) {
                if ["standalone", "leader", "follower"]
                    .iter()
                    .any(|mode| text.contains(&format!("Mode: {mode}")))
                {
                    return;
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "ZooKeeper server {} did not start serving; its log:\n{}",
                i + 1,
                std::fs::read_to_string(self.servers[i].config.with_file_name("server.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port,...` of every server, for a client.
    pub fn servers(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops server `i` (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again on its config and data, and waits until it serves.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
        self.wait_serving(i);
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.stop(i);
        }
    }
}
