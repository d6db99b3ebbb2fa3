//! The client subcommands: `send` and `receive` on the failover client, and `demo`, the
//! one-command tour of the main job (a pair, messages, kill -9, consume from the slave).

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;

use mirrormq::client::{AckMode, Client, ClientError};
use mirrormq::error::{Error, Result};
use mirrormq::runtime;

/// Reports progress on stderr about once a second, for long runs.
struct Progress {
    verb: &'static str,
    total: Option<usize>,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(verb: &'static str, total: Option<usize>) -> Progress {
        let now = Instant::now();
        Progress {
            verb,
            total,
            started: now,
            last: now,
        }
    }

    fn tick(&mut self, done: usize) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64();
            match self.total {
                Some(total) => eprintln!("{} {done}/{total} ({rate:.0} msg/s)", self.verb),
                None => eprintln!("{} {done} ({rate:.0} msg/s)", self.verb),
            }
        }
    }

    fn finish(&self, done: usize) {
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!(
            "{} {done} messages in {seconds:.2} s ({:.0} msg/s)",
            self.verb,
            done as f64 / seconds.max(1e-9)
        );
    }
}

fn client_error(error: ClientError) -> Error {
    Error::Tool(error.to_string())
}

/// What `send` sends.
pub enum Bodies {
    /// The same body `count` times.
    Repeat(Vec<u8>, usize),
    /// One message per line of standard input.
    StdinLines,
}

pub struct SendArgs {
    pub url: String,
    pub destination: String,
    pub bodies: Bodies,
    pub persistent: bool,
    pub window: usize,
    pub headers: Vec<(String, String)>,
    pub login: Option<String>,
    pub passcode: Option<String>,
}

/// `mirrormq send`: every message resolves on its receipt; up to `window` in flight.
pub fn send(args: SendArgs) -> Result<i32> {
    runtime::block_on(async {
        let client = Client::connect(&args.url, args.login.as_deref(), args.passcode.as_deref())
            .await
            .map_err(client_error)?;
        let mut headers: Vec<(&str, &str)> = args
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if args.persistent {
            headers.push(("persistent", "true"));
        }
        let lines: Box<dyn Iterator<Item = Vec<u8>>> = match args.bodies {
            Bodies::Repeat(body, count) => Box::new(std::iter::repeat_n(body, count)),
            Bodies::StdinLines => Box::new(
                std::io::stdin()
                    .lock()
                    .lines()
                    .map_while(|l| l.ok())
                    .map(String::into_bytes)
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
        };
        let total = lines.size_hint().1;
        let mut progress = Progress::new("sent", total);
        let mut in_flight: FuturesUnordered<_> = FuturesUnordered::new();
        let mut done = 0;
        for body in lines {
            if in_flight.len() >= args.window.max(1) {
                if let Some(result) = in_flight.next().await {
                    let result: std::result::Result<(), ClientError> = result;
                    result.map_err(client_error)?;
                    done += 1;
                    progress.tick(done);
                }
            }
            in_flight.push(client.send(&args.destination, body, &headers));
        }
        while let Some(result) = in_flight.next().await {
            result.map_err(client_error)?;
            done += 1;
            progress.tick(done);
        }
        drop(in_flight);
        progress.finish(done);
        client.disconnect().await.map_err(client_error)?;
        Ok(0)
    })
}

pub struct ReceiveArgs {
    pub url: String,
    pub destination: String,
    pub count: Option<usize>,
    pub ack: AckMode,
    pub idle: Option<Duration>,
    pub login: Option<String>,
    pub passcode: Option<String>,
}

/// `mirrormq receive`: prints one body per line, acknowledging each after printing it.
pub fn receive(args: ReceiveArgs) -> Result<i32> {
    runtime::block_on(async {
        let client = Client::connect(&args.url, args.login.as_deref(), args.passcode.as_deref())
            .await
            .map_err(client_error)?;
        let mut subscription = client
            .subscribe(&args.destination, args.ack)
            .await
            .map_err(client_error)?;
        let mut progress = Progress::new("received", args.count);
        let mut stdout = std::io::stdout().lock();
        let mut done = 0;
        while args.count.is_none_or(|count| done < count) {
            let next = match args.idle {
                Some(idle) => match runtime::timeout(idle, subscription.next()).await {
                    Some(next) => next,
                    None => break,
                },
                None => subscription.next().await,
            };
            let Some(message) = next else { break };
            stdout
                .write_all(&message.body)
                .and_then(|_| stdout.write_all(b"\n"))
                .map_err(|e| Error::io("stdout", e))?;
            if args.ack != AckMode::Auto {
                client.ack(&message).await.map_err(client_error)?;
            }
            done += 1;
            progress.tick(done);
        }
        stdout.flush().map_err(|e| Error::io("stdout", e))?;
        progress.finish(done);
        // The receipt of DISCONNECT comes after every ACK above is durable.
        client.disconnect().await.map_err(client_error)?;
        Ok(if args.count.is_some_and(|count| done < count) {
            1
        } else {
            0
        })
    })
}
