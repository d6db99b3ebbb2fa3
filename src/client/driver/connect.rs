//! Getting a connection for the failover driver, and restoring its state on it: passes
//! over the address list with ActiveMQ's backoff, one STOMP CONNECT per address, a
//! reader task per connection that reports frames and the connection's end (closed, or
//! silent past its heart-beat), then subscriptions, transactions and unreceipted sends
//! again on the new connection.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use futures::channel::mpsc;

use super::{
    commit_frame, Arrival, Connection, Driver, ReadHalf, WriteHalf, CONNECT_TIMEOUT, HEART_BEAT,
};
use crate::client::url::Address;
use crate::client::ClientError;
use crate::connection::{FrameReader, FrameWriter, Inbound as Read};
use crate::runtime::{self, TcpStream};
use crate::stomp::{Command as Verb, Frame, ParseLimits, Version};

impl Driver {
    /// After a reconnect: subscriptions, then transactions, then unreceipted sends.
    pub(super) fn restore(&mut self, connection: &mut Connection) {
        for subscribed in self.subscriptions.values() {
            connection.writer.queue(&subscribed.frame);
        }
        // The broker discarded every open transaction with the old connection.
        let committing: HashMap<String, u64> = self
            .commits
            .iter()
            .map(|(n, (name, _))| (name.clone(), *n))
            .collect();
        for (name, tx) in self.transactions.iter_mut() {
            match committing.get(name) {
                Some(&n) if !tx.acked => {
                    connection
                        .writer
                        .queue(&Frame::new(Verb::Begin).with_header("transaction", name.clone()));
                    for frame in &tx.sends {
                        connection.writer.queue(frame);
                    }
                    connection.writer.queue(&commit_frame(name, n));
                }
                _ => tx.rolled_back = true,
            }
        }
        let replayed: Vec<String> = committing
            .keys()
            .filter(|name| {
                self.transactions
                    .get(*name)
                    .is_some_and(|tx| !tx.rolled_back)
            })
            .cloned()
            .collect();
        let lost_commits: Vec<u64> = self
            .commits
            .iter()
            .filter(|(_, (name, _))| !replayed.contains(name))
            .map(|(n, _)| *n)
            .collect();
        for n in lost_commits {
            if let Some((name, reply)) = self.commits.remove(&n) {
                let _ = reply.send(Err(ClientError::RolledBack(name)));
            }
        }
        let sends: Vec<u64> = self.sends.keys().copied().collect();
        for n in sends {
            let Some(pending) = self.sends.get(&n) else {
                continue;
            };
            match &pending.transaction {
                // Replayed with its transaction above, or gone with it.
                Some(name) if replayed.contains(name) => {}
                Some(name) => {
                    let name = name.clone();
                    if let Some(pending) = self.sends.remove(&n) {
                        let _ = pending.reply.send(Err(ClientError::RolledBack(name)));
                    }
                }
                None => connection.writer.queue(&pending.frame),
            }
        }
        // Subscribe/unsubscribe receipts of the old connection will never come.
        for (_, waiter) in std::mem::take(&mut self.waiters) {
            waiter.succeed();
        }
    }

    /// Passes over the address list until one accepts a CONNECT, or the attempts allowed
    /// (`startupMaxReconnectAttempts` at start, `maxReconnectAttempts` after) run out.
    pub(super) async fn reconnect(&mut self, startup: bool) -> Result<Connection, ClientError> {
        let options = self.url.options.clone();
        let limit = if startup {
            options.startup_max_reconnect_attempts
        } else {
            options.max_reconnect_attempts
        };
        let mut delay = options.initial_reconnect_delay;
        if !startup {
            runtime::sleep(delay).await;
        }
        let mut passes = 0u32;
        let mut last = String::new();
        let mut said: Option<std::time::Instant> = None;
        loop {
            let mut order = self.order.clone();
            if options.randomize {
                shuffle(&mut order);
            }
            for address in order {
                match self.open(&address).await {
                    Ok(connection) => return Ok(connection),
                    Err(Failure::Refused(why)) => {
                        // Wrong credentials stay wrong: retrying would hide them.
                        return Err(ClientError::Refused(format!("{address}: {why}")));
                    }
                    Err(Failure::Failed(why)) => {
                        log::debug!("client: {address}: {why}");
                        last = format!("{address}: {why}");
                    }
                }
            }
            passes += 1;
            // Say what it is trying, but at most once a second however fast it retries.
            if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                log::warn!(
                    "client: no broker accepted a connection (pass {passes}; last: {last}); retrying in {} ms",
                    delay.as_millis()
                );
                said = Some(std::time::Instant::now());
            }
            if limit.is_some_and(|limit| passes >= limit.max(1)) {
                let addresses = self
                    .order
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ClientError::GaveUp {
                    attempts: passes,
                    addresses,
                    last,
                });
            }
            runtime::sleep(delay).await;
            if options.use_exponential_backoff {
                delay = delay
                    .mul_f64(options.reconnect_delay_exponent)
                    .min(options.max_reconnect_delay);
            }
        }
    }

    async fn open(&self, address: &Address) -> Result<Connection, Failure> {
        let failed = |why: String| Failure::Failed(why);
        let stream = runtime::timeout(CONNECT_TIMEOUT, runtime::connect(&address.socket_addr()))
            .await
            .ok_or_else(|| failed("connect timed out".into()))?
            .map_err(|e| failed(e.to_string()))?;
        let (read_half, write_half) = self.secure(address, &stream).await?;
        let mut connect = Frame::new(Verb::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", address.host.clone())
            .with_header("heart-beat", format!("{0},{0}", HEART_BEAT.as_millis()));
        if let Some(login) = &self.login {
            connect = connect.with_header("login", login.clone());
        }
        if let Some(passcode) = &self.passcode {
            connect = connect.with_header("passcode", passcode.clone());
        }
        let mut writer = FrameWriter::new(write_half, Version::V1_2);
        writer
            .send(&connect)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut reader = FrameReader::new(read_half, ParseLimits::default());
        let connected = match runtime::timeout(CONNECT_TIMEOUT, reader.read(Version::V1_2)).await {
            Some(Ok(Some(Read::Frame(frame)))) if frame.command == Verb::Connected => frame,
            Some(Ok(Some(Read::Frame(frame)))) => return Err(Failure::of_error(&frame)),
            Some(Ok(_)) => return Err(failed("closed before CONNECTED".into())),
            Some(Err(error)) => return Err(failed(error.to_string())),
            None => return Err(failed("no CONNECTED".into())),
        };
        let (server_sends, server_wants) = connected
            .header("heart-beat")
            .and_then(|hb| hb.split_once(','))
            .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
            .unwrap_or((0, 0));
        let beat = HEART_BEAT.as_millis() as u64;
        let send_every = (server_wants > 0).then(|| Duration::from_millis(server_wants.max(beat)));
        // A peer that never closes its socket is dead after three missed beats.
        let silence = (server_sends > 0).then(|| Duration::from_millis(server_sends.max(beat) * 3));
        let (arrivals_tx, arrivals) = mpsc::unbounded();
        runtime::spawn(read_frames(reader, silence, arrivals_tx));
        Ok(Connection {
            address: address.clone(),
            stream,
            writer,
            arrivals,
            send_every,
        })
    }
}

impl Driver {
    /// The two directions of `stream` as `address` speaks: itself; a TLS connection
    /// (`ssl://`, `wss://`) whose certificate the CA in `MIRRORMQ_CA` (the CLI's `--ca`)
    /// signed for the address's host; STOMP over WebSocket (`ws://`, `wss://`) on either.
    async fn secure(
        &self,
        address: &Address,
        stream: &TcpStream,
    ) -> Result<(ReadHalf, WriteHalf), Failure> {
        if !address.tls && address.websocket.is_none() {
            return Ok((Box::new(stream.clone()), Box::new(stream.clone())));
        }
        let handshakes = async {
            if !address.tls {
                return speak(stream.clone(), address).await;
            }
            let secured = Self::connector(address)?
                .connect(&address.host, stream.clone())
                .await
                .map_err(|e| Failure::Failed(format!("TLS handshake: {e}")))?;
            speak(secured, address).await
        };
        // Boxed: the TLS and WebSocket handshakes' state is large, and inline it would
        // grow every future that awaits a connection (a caller's stack, in a debug build).
        runtime::timeout(CONNECT_TIMEOUT, Box::pin(handshakes))
            .await
            .ok_or_else(|| Failure::Failed("handshake timed out".into()))?
    }

    /// The TLS client for `address`, trusting the CA in `MIRRORMQ_CA`.
    fn connector(address: &Address) -> Result<crate::tls::Connector, Failure> {
        let Some(ca) = std::env::var_os("MIRRORMQ_CA") else {
            return Err(Failure::Refused(format!(
                "{address} is TLS: name the CA that signed the brokers' certificates with --ca FILE or MIRRORMQ_CA"
            )));
        };
        crate::tls::Connector::from_ca(std::path::Path::new(&ca)).map_err(Failure::Refused)
    }
}

/// The two directions of `stream` (TLS, or not), upgraded to WebSocket if `address`
/// is `ws://` or `wss://`.
async fn speak<S>(stream: S, address: &Address) -> Result<(ReadHalf, WriteHalf), Failure>
where
    S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin + Send + 'static,
{
    let Some(path) = address.websocket.as_deref() else {
        let (reader, writer) = futures::io::AsyncReadExt::split(stream);
        return Ok((Box::new(reader), Box::new(writer)));
    };
    let (reader, writer) = crate::ws::connect(stream, &address.host, address.port, path)
        .await
        .map_err(Failure::Failed)?;
    Ok((Box::new(reader), Box::new(writer)))
}

/// Why one address gave no connection.
enum Failure {
    /// Unreachable, closed, silent, or busy: another pass may succeed.
    Failed(String),
    /// The broker answered CONNECT with an ERROR (credentials, version): permanent.
    Refused(String),
}

impl Failure {
    /// An ERROR in answer to CONNECT. A broker at its connection limit says so ("too
    /// many connections"), which passes; any other refusal would be the same next time.
    fn of_error(frame: &Frame) -> Failure {
        let message = frame.header("message").unwrap_or("refused").to_string();
        if message.starts_with("too many connections") {
            Failure::Failed(message)
        } else {
            Failure::Refused(message)
        }
    }
}

async fn read_frames(
    mut reader: FrameReader<ReadHalf>,
    silence: Option<Duration>,
    arrivals: mpsc::UnboundedSender<Arrival>,
) {
    loop {
        let read = match silence {
            Some(limit) => match runtime::timeout(limit, reader.read(Version::V1_2)).await {
                Some(read) => read,
                None => {
                    let _ = arrivals.unbounded_send(Arrival::Lost(format!(
                        "no heart-beat for {} ms",
                        limit.as_millis()
                    )));
                    return;
                }
            },
            None => reader.read(Version::V1_2).await,
        };
        let arrival = match read {
            Ok(Some(Read::Frame(frame))) => Arrival::Frame(frame),
            Ok(Some(Read::HeartBeat)) => continue,
            Ok(None) => Arrival::Lost("the broker closed the connection".into()),
            Err(error) => Arrival::Lost(error.to_string()),
        };
        let lost = matches!(arrival, Arrival::Lost(_));
        if arrivals.unbounded_send(arrival).is_err() || lost {
            return;
        }
    }
}

/// Fisher-Yates with the standard library's randomly seeded hasher as the source.
fn shuffle(addresses: &mut [Address]) {
    for i in (1..addresses.len()).rev() {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        addresses.swap(i, (random % (i as u64 + 1)) as usize);
    }
}
