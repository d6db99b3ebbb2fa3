//! The ZooKeeper seam: the only file that names `zookeeper_client`.
//!
//! The master election (the ZooKeeper issue) needs a handful of operations from a
//! coordination service: a session that expires when its broker dies, ephemeral nodes
//! that go with it, reads that leave a watch, writes that succeed only at an expected
//! version, and one atomic "claim" (bump the epoch node at its version and create the
//! master node, or neither). They are here, in the words the election uses; a swap of
//! the client crate edits this file alone. The crate runs on the executor async-std
//! itself uses (its `async-global-executor` feature), so it adds no second runtime.
//! Errors are text naming the operation and the path; the logical outcomes an election
//! decides on (a node exists already, a version moved on) are values, not errors.

use std::time::Duration;

use zookeeper_client::{
    Acls, Client, CreateMode, Error as ZkError, OneshotWatcher, SessionState, StateWatcher,
};

/// A node's data and the version a conditional write must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub data: Vec<u8>,
    pub version: i32,
}

/// What became of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    Connected,
    /// No server reachable: the session may still be alive on the ensemble, for at most
    /// the session timeout.
    Disconnected,
    /// The ensemble ended the session: every ephemeral node it held is gone.
    Expired,
    /// Closed by us, or refused (authentication).
    Closed,
}

/// One change of a watched node (created, changed or deleted), or of the session.
pub struct Change(OneshotWatcher);

impl Change {
    /// Resolves once the node changes, or the session is lost.
    pub async fn changed(self) {
        let _ = self.0.changed().await;
    }
}

/// The session's state changes.
pub struct States(StateWatcher);

impl States {
    pub async fn next(&mut self) -> Session {
        session(self.0.changed().await)
    }
}

fn session(state: SessionState) -> Session {
    match state {
        SessionState::SyncConnected | SessionState::ConnectedReadOnly => Session::Connected,
        SessionState::Disconnected => Session::Disconnected,
        SessionState::Expired => Session::Expired,
        _ => Session::Closed,
    }
}

fn failed(what: &str, path: &str, error: impl std::fmt::Display) -> String {
    format!("zookeeper: {what} {path}: {error}")
}

/// A session with a ZooKeeper ensemble.
pub struct Coordinator {
    client: Client,
}

impl Coordinator {
    /// Opens a session with `servers` (`host:port,host:port,...`); fails once no server
    /// answered within `session_timeout`. With a connection timeout this long the client
    /// pings every 3/20 of the session timeout and calls a server that stays silent for
    /// 2/5 of it lost (Disconnected), and the session ended (Expired) after 7/5 of it
    /// without a server: the election's fencing counts on those bounds.
    pub async fn connect(servers: &str, session_timeout: Duration) -> Result<Coordinator, String> {
        let client = Client::connector()
            .with_session_timeout(session_timeout)
            .with_connection_timeout(session_timeout)
            .with_fail_eagerly()
            .connect(servers)
            .await
            .map_err(|e| format!("zookeeper: connecting to {servers}: {e}"))?;
        Ok(Coordinator { client })
    }

    /// The timeout the ensemble granted (it may differ from the one asked for).
    pub fn session_timeout(&self) -> Duration {
        self.client.session_timeout()
    }

    pub fn session(&self) -> Session {
        session(self.client.state())
    }

    pub fn states(&self) -> States {
        States(self.client.state_watcher())
    }

    /// Makes `path` and its parents as persistent nodes, where missing.
    pub async fn ensure(&self, path: &str) -> Result<(), String> {
        let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
        match self.client.mkdir(path, &options).await {
            Ok(()) | Err(ZkError::NodeExists) => Ok(()),
            Err(error) => Err(failed("making", path, error)),
        }
    }

    /// The node at `path`, if there is one.
    pub async fn read(&self, path: &str) -> Result<Option<Node>, String> {
        match self.client.get_data(path).await {
            Ok((data, stat)) => Ok(Some(Node {
                data,
                version: stat.version,
            })),
            Err(ZkError::NoNode) => Ok(None),
            Err(error) => Err(failed("reading", path, error)),
        }
    }

    /// The node at `path`, if there is one, and a watch that fires when it is created,
    /// changed or deleted.
    pub async fn read_and_watch(&self, path: &str) -> Result<(Option<Node>, Change), String> {
        let (stat, watcher) = self
            .client
            .check_and_watch_stat(path)
            .await
            .map_err(|e| failed("watching", path, e))?;
        if stat.is_none() {
            return Ok((None, Change(watcher)));
        }
        match self.client.get_and_watch_data(path).await {
            Ok((data, stat, watcher)) => Ok((
                Some(Node {
                    data,
                    version: stat.version,
                }),
                Change(watcher),
            )),
            // Deleted in between: the first watch has fired or will.
            Err(ZkError::NoNode) => Ok((None, Change(watcher))),
            Err(error) => Err(failed("reading", path, error)),
        }
    }

    /// The names of `path`'s children (none if it is gone).
    pub async fn children(&self, path: &str) -> Result<Vec<String>, String> {
        match self.client.list_children(path).await {
            Ok(children) => Ok(children),
            Err(ZkError::NoNode) => Ok(Vec::new()),
            Err(error) => Err(failed("listing", path, error)),
        }
    }

    /// Creates `path` as an ephemeral node of this session; false if it exists.
    pub async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<bool, String> {
        let options = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
        match self.client.create(path, data, &options).await {
            Ok(_) => Ok(true),
            Err(ZkError::NodeExists) => Ok(false),
            Err(error) => Err(failed("creating", path, error)),
        }
    }

    /// Writes `data` at `path` if its version is still `version`; the new version, or
    /// `None` if it moved on or the node is gone.
    pub async fn set(&self, path: &str, data: &[u8], version: i32) -> Result<Option<i32>, String> {
        match self.client.set_data(path, data, Some(version)).await {
            Ok(stat) => Ok(Some(stat.version)),
            Err(ZkError::BadVersion | ZkError::NoNode) => Ok(None),
            Err(error) => Err(failed("writing", path, error)),
        }
    }

    /// Deletes `path` if its version is still `version`; false if it moved on or is gone.
    pub async fn delete(&self, path: &str, version: i32) -> Result<bool, String> {
        match self.client.delete(path, Some(version)).await {
            Ok(()) => Ok(true),
            Err(ZkError::BadVersion | ZkError::NoNode) => Ok(false),
            Err(error) => Err(failed("deleting", path, error)),
        }
    }

    /// In one transaction: writes the epoch and the in-sync set at the versions read
    /// (creating either node where its version is `None`), and creates the master node
    /// as an ephemeral node of this session. True if all of it happened; false if none
    /// did because another broker moved first.
    pub async fn claim(&self, claim: &Claim<'_>) -> Result<bool, String> {
        let mut writer = self.client.new_multi_writer();
        let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
        let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
        let mut queue = |path: &str, data: &[u8], version: Option<i32>| match version {
            Some(version) => writer.add_set_data(path, data, Some(version)),
            None => writer.add_create(path, data, &persistent),
        };
        queue(claim.epoch_path, claim.epoch, claim.epoch_version)
            .and_then(|()| queue(claim.isr_path, claim.isr, claim.isr_version))
            .and_then(|()| writer.add_create(claim.master_path, claim.master, &ephemeral))
            .map_err(|e| failed("claiming", claim.master_path, e))?;
        match writer.commit().await {
            Ok(_) => Ok(true),
            Err(zookeeper_client::MultiWriteError::OperationFailed {
                source: ZkError::BadVersion | ZkError::NodeExists | ZkError::NoNode,
                ..
            }) => Ok(false),
            Err(error) => Err(failed("claiming", claim.master_path, error)),
        }
    }
}

/// The nodes a claim writes, and the versions it read them at.
pub struct Claim<'a> {
    pub epoch_path: &'a str,
    pub epoch_version: Option<i32>,
    pub epoch: &'a [u8],
    pub isr_path: &'a str,
    pub isr_version: Option<i32>,
    pub isr: &'a [u8],
    pub master_path: &'a str,
    pub master: &'a [u8],
}
