//! `mirrormq bench`: a load generator on the project's own client, as RabbitMQ's PerfTest
//! is for its users. Three workloads:
//! - `produce`: P producers each send N messages of S bytes, up to W receipts outstanding;
//! - `consume`: C consumers drain N messages in total with an ack mode and a prefetch;
//! - `roundtrip`: producers and consumers at once; end-to-end latency from a timestamp
//!   header the producer sets;
//! - `fanout`: C consumers subscribe first, then producers send: on a topic each
//!   consumer gets every message; with `selectors` K on a queue, consumer `i` selects
//!   `bench_bucket = i` and producers spread their messages over K buckets. Its rate is
//!   deliveries per second, from the first send to the last delivery.
//!
//! Each prints msgs/s, MB/s and latency p50/p90/p99/max (µs); `--json` prints one JSON line.
//! With `--verify` producers number their messages and a consumer checks that each came
//! exactly once and in its producer's order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;

use mirrormq::client::{AckMode, Client, ClientError, Subscription};
use mirrormq::error::{Error, Result};
use mirrormq::runtime;

/// Header carrying the send time in µs since the epoch (roundtrip).
const STAMP: &str = "bench-sent-us";
/// Header carrying `PRODUCER:INDEX` (`--verify`).
const SEQ: &str = "bench-seq";
/// Header carrying a message's bucket, `INDEX % selectors` (fanout with selectors).
const BUCKET: &str = "bench_bucket";

/// What every workload needs to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub login: Option<String>,
    pub passcode: Option<String>,
    pub destination: String,
}

#[derive(Debug, Clone)]
pub struct Load {
    pub producers: usize,
    pub consumers: usize,
    /// Messages per producer (produce, roundtrip) or in total (consume).
    pub count: usize,
    pub size: usize,
    pub window: usize,
    pub persistent: bool,
    pub ack: AckMode,
    pub prefetch: Option<u32>,
    pub verify: bool,
    /// Extra headers on every SEND.
    pub headers: Vec<(String, String)>,
    /// Fanout: consumers select one of this many buckets each (0: no selectors).
    pub selectors: usize,
}

/// What a consumer saw of the producers' numbering (`--verify`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sequences {
    /// The next index expected from each producer.
    next: Vec<u64>,
    pub in_order: u64,
    /// Indexes seen again.
    pub duplicates: u64,
    /// Indexes that came after a later one of the same producer (or skipped ahead).
    pub out_of_order: u64,
    /// Messages without a readable `bench-seq`.
    pub unnumbered: u64,
}

impl Sequences {
    pub fn observe(&mut self, seq: Option<&str>) {
        let parsed = seq
            .and_then(|s| s.split_once(':'))
            .and_then(|(p, i)| Some((p.parse::<usize>().ok()?, i.parse::<u64>().ok()?)));
        let Some((producer, index)) = parsed.filter(|(p, _)| *p < 1 << 16) else {
            self.unnumbered += 1;
            return;
        };
        if self.next.len() <= producer {
            self.next.resize(producer + 1, 0);
        }
        let next = &mut self.next[producer];
        if index == *next {
            self.in_order += 1;
            *next += 1;
        } else if index < *next {
            self.duplicates += 1;
        } else {
            self.out_of_order += 1;
            *next = index + 1;
        }
    }

    /// Every message once, in order.
    pub fn clean(&self) -> bool {
        self.duplicates == 0 && self.out_of_order == 0 && self.unnumbered == 0
    }
}

/// Latencies in µs, summarised.
struct Summary {
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
}

fn summarise(mut samples: Vec<u64>) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Some(Summary {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    })
}

/// One workload's result, printed as text or JSON.
struct Report {
    mode: &'static str,
    messages: usize,
    size: usize,
    elapsed: Duration,
    latency: Option<Summary>,
    /// What the latency measures: `receipt` (send to receipt) or `e2e` (send to receive).
    latency_kind: &'static str,
    /// What `--verify` found, on a consume.
    order: Option<Sequences>,
}

impl Report {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn print(&self, json: bool) {
        let mb = self.rate() * self.size as f64 / 1e6;
        if json {
            let latency_json = match &self.latency {
                Some(s) => format!(
                    ",\"{}_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}}",
                    self.latency_kind, s.p50, s.p90, s.p99, s.max
                ),
                None => String::new(),
            };
            let order_json = match &self.order {
                Some(o) => format!(
                    ",\"order\":{{\"in_order\":{},\"duplicates\":{},\"out_of_order\":{},\"unnumbered\":{}}}",
                    o.in_order, o.duplicates, o.out_of_order, o.unnumbered
                ),
                None => String::new(),
            };
            println!(
                "{{\"mode\":\"{}\",\"messages\":{},\"size\":{},\"seconds\":{:.3},\"msgs_per_s\":{:.1},\"mb_per_s\":{:.3}{latency_json}{order_json}}}",
                self.mode, self.messages, self.size, self.elapsed.as_secs_f64(), self.rate(), mb
            );
        } else {
            println!(
                "{}: {} messages of {} bytes in {:.2} s: {:.0} msg/s, {:.2} MB/s",
                self.mode,
                self.messages,
                self.size,
                self.elapsed.as_secs_f64(),
                self.rate(),
                mb
            );
            if let Some(s) = &self.latency {
                println!(
                    "{} latency µs: p50 {} p90 {} p99 {} max {}",
                    self.latency_kind, s.p50, s.p90, s.p99, s.max
                );
            }
            if let Some(o) = &self.order {
                println!(
                    "order: {} in order, {} duplicates, {} out of order, {} unnumbered",
                    o.in_order, o.duplicates, o.out_of_order, o.unnumbered
                );
            }
        }
    }
}

fn client_error(error: ClientError) -> Error {
    Error::Tool(error.to_string())
}

async fn connect(target: &Target) -> Result<Client> {
    Client::connect(
        &target.url,
        target.login.as_deref(),
        target.passcode.as_deref(),
    )
    .await
    .map_err(client_error)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Progress on stderr about once a second.
async fn progress(done: Arc<AtomicUsize>, total: usize, verb: &'static str) {
    let started = Instant::now();
    loop {
        runtime::sleep(Duration::from_secs(1)).await;
        let n = done.load(Ordering::Relaxed);
        eprintln!(
            "{verb} {n}/{total} ({:.0} msg/s)",
            n as f64 / started.elapsed().as_secs_f64()
        );
        if n >= total {
            return;
        }
    }
}

/// Runs P producers; returns every send's receipt latency in µs, and the time from the
/// first send to the last receipt. Every producer is connected before the clock starts,
/// and disconnects after it stops: neither is part of the rate.
async fn produce(
    target: &Target,
    load: &Load,
    done: Arc<AtomicUsize>,
    stamp: bool,
) -> Result<(Vec<u64>, Duration)> {
    let body = vec![b'x'; load.size];
    let mut clients = Vec::new();
    for _ in 0..load.producers {
        clients.push(connect(target).await?);
    }
    let first_send = Instant::now();
    let mut producers = Vec::new();
    for (producer, client) in clients.into_iter().enumerate() {
        let (target, load, body, done) = (target.clone(), load.clone(), body.clone(), done.clone());
        producers.push(runtime::spawn(async move {
            let load = &load;
            let sends = (0..load.count).map(|index| {
                let (client, body, target) = (client.clone(), body.clone(), &target);
                async move {
                    let started = Instant::now();
                    let sent = now_us().to_string();
                    let seq = format!("{producer}:{index}");
                    let bucket = (index % load.selectors.max(1)).to_string();
                    let mut headers = vec![];
                    if load.selectors > 0 {
                        headers.push((BUCKET, bucket.as_str()));
                    }
                    if load.persistent {
                        headers.push(("persistent", "true"));
                    }
                    if stamp {
                        headers.push((STAMP, sent.as_str()));
                    }
                    if load.verify {
                        headers.push((SEQ, seq.as_str()));
                    }
                    for (name, value) in &load.headers {
                        headers.push((name.as_str(), value.as_str()));
                    }
                    client
                        .send(&target.destination, body, &headers)
                        .await
                        .map(|()| started.elapsed().as_micros() as u64)
                }
            });
            let mut latencies = Vec::with_capacity(load.count);
            let mut results = futures::stream::iter(sends).buffer_unordered(load.window.max(1));
            while let Some(result) = results.next().await {
                latencies.push(result?);
                done.fetch_add(1, Ordering::Relaxed);
            }
            let last_receipt = Instant::now();
            drop(results);
            client.disconnect().await?;
            Ok::<_, ClientError>((latencies, last_receipt))
        }));
    }
    let mut all = Vec::new();
    let mut last_receipt = first_send;
    for producer in producers {
        let (latencies, last) = producer.await.map_err(client_error)?;
        all.extend(latencies);
        last_receipt = last_receipt.max(last);
    }
    Ok((all, last_receipt - first_send))
}

/// Runs C consumers until `total` messages arrived; returns (end-to-end latencies in µs
/// where stamped, when the first message arrived).
async fn consume(
    target: &Target,
    load: &Load,
    total: usize,
    done: Arc<AtomicUsize>,
    order: Arc<Mutex<Sequences>>,
) -> Result<(Vec<u64>, Option<Instant>)> {
    let subscribed = subscribe(target, load).await?;
    run_consumers(subscribed, load, total, done, order).await
}

/// Connects C consumers, each subscribed (with `selectors`, consumer `i` to bucket `i`).
async fn subscribe(target: &Target, load: &Load) -> Result<Vec<(Client, Subscription)>> {
    let mut subscribed = Vec::new();
    for consumer in 0..load.consumers.max(1) {
        let client = connect(target).await?;
        let headers = match load.selectors {
            0 => Vec::new(),
            k => vec![("selector".into(), format!("{BUCKET} = '{}'", consumer % k))],
        };
        let subscription = client
            .subscribe_with_headers(&target.destination, load.ack, load.prefetch, headers)
            .await
            .map_err(client_error)?;
        subscribed.push((client, subscription));
    }
    Ok(subscribed)
}

/// Runs subscribed consumers until `total` messages arrived among them.
async fn run_consumers(
    subscribed: Vec<(Client, Subscription)>,
    load: &Load,
    total: usize,
    done: Arc<AtomicUsize>,
    order: Arc<Mutex<Sequences>>,
) -> Result<(Vec<u64>, Option<Instant>)> {
    let mut consumers = Vec::new();
    for (client, mut subscription) in subscribed {
        let (ack, done, order, verify) = (load.ack, done.clone(), order.clone(), load.verify);
        consumers.push(runtime::spawn(async move {
            let mut latencies = Vec::new();
            let mut first = None;
            while done.load(Ordering::Relaxed) < total {
                let Some(Some(message)) =
                    runtime::timeout(Duration::from_millis(200), subscription.next()).await
                else {
                    continue;
                };
                first.get_or_insert_with(Instant::now);
                if let Some(sent) = message.header(STAMP).and_then(|s| s.parse::<u64>().ok()) {
                    latencies.push(now_us().saturating_sub(sent));
                }
                if verify {
                    if let Ok(mut order) = order.lock() {
                        order.observe(message.header(SEQ));
                    }
                }
                if ack != AckMode::Auto {
                    client.ack(&message).await?;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            client.disconnect().await?;
            Ok::<_, ClientError>((latencies, first))
        }));
    }
    let mut all = Vec::new();
    let mut first: Option<Instant> = None;
    for consumer in consumers {
        let (latencies, started) = consumer.await.map_err(client_error)?;
        all.extend(latencies);
        first = match (first, started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok((all, first))
}

pub fn run(mode: &str, target: Target, load: Load, json: bool) -> Result<i32> {
    runtime::block_on(async {
        let report = match mode {
            "produce" => {
                let total = load.producers * load.count;
                let done = Arc::new(AtomicUsize::new(0));
                let ticker = runtime::spawn(progress(done.clone(), total, "sent"));
                let (latencies, elapsed) = produce(&target, &load, done, false).await?;
                drop(ticker);
                Report {
                    mode: "produce",
                    messages: latencies.len(),
                    size: load.size,
                    elapsed,
                    latency: summarise(latencies),
                    latency_kind: "receipt",
                    order: None,
                }
            }
            "consume" => {
                let done = Arc::new(AtomicUsize::new(0));
                let ticker = runtime::spawn(progress(done.clone(), load.count, "received"));
                let order = Arc::new(Mutex::new(Sequences::default()));
                let (_, first) =
                    consume(&target, &load, load.count, done.clone(), order.clone()).await?;
                drop(ticker);
                let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
                let order = std::mem::take(&mut *order.lock().unwrap_or_else(|e| e.into_inner()));
                Report {
                    mode: "consume",
                    messages: done.load(Ordering::Relaxed),
                    size: load.size,
                    elapsed,
                    latency: None,
                    latency_kind: "",
                    order: load.verify.then_some(order),
                }
            }
            "roundtrip" => {
                let total = load.producers * load.count;
                let received = Arc::new(AtomicUsize::new(0));
                let sent = Arc::new(AtomicUsize::new(0));
                let ticker = runtime::spawn(progress(received.clone(), total, "round trips"));
                let started = Instant::now();
                let order = Arc::new(Mutex::new(Sequences::default()));
                let (consumed, produced) = futures::join!(
                    consume(&target, &load, total, received.clone(), order),
                    produce(&target, &load, sent, true)
                );
                produced?;
                let (latencies, _) = consumed?;
                drop(ticker);
                Report {
                    mode: "roundtrip",
                    messages: received.load(Ordering::Relaxed),
                    size: load.size,
                    elapsed: started.elapsed(),
                    latency: summarise(latencies),
                    latency_kind: "e2e",
                    order: None,
                }
            }
            "fanout" => fanout(&target, &load).await?,
            other => {
                return Err(Error::Config(format!(
                    "unknown bench mode '{other}': use produce, consume, roundtrip or fanout"
                )))
            }
        };
        report.print(json);
        // A verified consume that saw a duplicate, a gap or disorder fails the run.
        Ok(i32::from(report.order.as_ref().is_some_and(|o| !o.clean())))
    })
}

/// Consumers subscribed first, then the producers: deliveries per second.
async fn fanout(target: &Target, load: &Load) -> Result<Report> {
    let per_message = match load.selectors {
        0 => load.consumers.max(1),
        _ => 1,
    };
    let total = load.producers * load.count * per_message;
    let subscribed = subscribe(target, load).await?;
    let received = Arc::new(AtomicUsize::new(0));
    let ticker = runtime::spawn(progress(received.clone(), total, "delivered"));
    let order = Arc::new(Mutex::new(Sequences::default()));
    let started = Instant::now();
    let (consumed, produced) = futures::join!(
        run_consumers(subscribed, load, total, received.clone(), order),
        produce(target, load, Arc::default(), false)
    );
    produced?;
    consumed?;
    drop(ticker);
    Ok(Report {
        mode: "fanout",
        messages: received.load(Ordering::Relaxed),
        size: load.size,
        elapsed: started.elapsed(),
        latency: None,
        latency_kind: "",
        order: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_taken_from_the_sorted_samples() {
        let summary = summarise((1..=100).rev().collect()).unwrap();
        assert_eq!(
            (summary.p50, summary.p90, summary.p99, summary.max),
            (51, 90, 99, 100)
        );
        assert!(summarise(Vec::new()).is_none());
    }

    #[test]
    fn sequences_count_each_producers_order_duplicates_and_gaps() {
        let mut seen = Sequences::default();
        for seq in ["0:0", "1:0", "0:1", "1:1", "0:2"] {
            seen.observe(Some(seq));
        }
        assert!(seen.clean() && seen.in_order == 5);
        seen.observe(Some("0:1")); // again
        seen.observe(Some("1:3")); // 1:2 skipped
        seen.observe(Some("1:2")); // late
        seen.observe(Some("junk"));
        seen.observe(None);
        assert_eq!(
            (
                seen.in_order,
                seen.duplicates,
                seen.out_of_order,
                seen.unnumbered
            ),
            (5, 2, 1, 2)
        );
        assert!(!seen.clean());
    }
}
