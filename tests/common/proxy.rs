//! A TCP proxy that can be cut: the tests' network partition.
//!
//! While open it forwards both ways. Cut, it keeps every connection open but drops what
//! arrives on either side, and holds new connections without dialling upstream, so each
//! side sees a peer that has gone silent, as in a real partition (nobody gets a reset).
//! Healing forwards again, but only on connections made after the heal: a partition
//! loses what was in flight. A tapped proxy also keeps every byte it forwarded, each
//! direction apart, for tests that look at what crossed the wire.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Bumped by each cut: connections from an earlier generation stay dead.
    generation: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tap: Option<Tap>,
}

/// What a tapped proxy forwarded: to the upstream, and from it.
type Tap = Arc<[Mutex<Vec<u8>>; 2]>;

impl Proxy {
    /// Listens on an ephemeral port and forwards to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> Proxy {
        Proxy::listen(upstream, None)
    }

    /// `start`, keeping what it forwards (see `sent` and `received`).
    pub fn tapped(upstream: u16) -> Proxy {
        Proxy::listen(upstream, Some(Arc::new(Default::default())))
    }

    /// Every byte forwarded to the upstream so far, connection after connection.
    pub fn sent(&self) -> Vec<u8> {
        self.tap.as_ref().expect("a tapped proxy")[0]
            .lock()
            .unwrap()
            .clone()
    }

    /// Every byte forwarded from the upstream so far.
    pub fn received(&self) -> Vec<u8> {
        self.tap.as_ref().expect("a tapped proxy")[1]
            .lock()
            .unwrap()
            .clone()
    }

    fn listen(upstream: u16, tap: Option<Tap>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, g, s, t) = (cut.clone(), generation.clone(), stop.clone(), tap.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let born = g.load(Ordering::SeqCst);
                if c.load(Ordering::SeqCst) {
                    // Hold it, silent: the peer waits for an answer that never comes.
                    thread::spawn(move || drain(client));
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let live = {
                    let (c, g) = (c.clone(), g.clone());
                    move || !c.load(Ordering::SeqCst) && g.load(Ordering::SeqCst) == born
                };
                let record = |direction: usize| {
                    let tap = t.clone();
                    move |bytes: &[u8]| {
                        if let Some(tap) = &tap {
                            tap[direction].lock().unwrap().extend_from_slice(bytes);
                        }
                    }
                };
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    live.clone(),
                    record(0),
                );
                pump(server, client, live, record(1));
            }
        });
        Proxy {
            port,
            cut,
            generation,
            stop,
            tap,
        }
    }

    /// Partitions: from now on nothing crosses, in either direction.
    pub fn cut(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cut.store(true, Ordering::SeqCst);
    }

    /// New connections are forwarded again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` while `live()`, then swallows whatever else arrives; `record`
/// sees what is copied.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    live: impl Fn() -> bool + Send + 'static,
    record: impl Fn(&[u8]) + Send + 'static,
) {
    thread::spawn(move || {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) if live() => {
                    record(&buffer[..n]);
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
            }
        }
        // One side closed: pass that on only if the link is still up.
        if live() {
            let _ = to.shutdown(Shutdown::Both);
        }
    });
}

fn drain(mut stream: TcpStream) {
    let mut buffer = [0u8; 4096];
    while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
}
