//! The verifying load: producers send numbered persistent messages with receipts through
//! the failover URL, consumers acknowledge each one they get, and a ledger records which
//! numbers were receipted and how often each was delivered. A receipted number that is
//! never delivered is a lost message.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use mirrormq::client::{AckMode, Client, ClientError};
use mirrormq::runtime;

pub const QUEUE: &str = "/queue/chaos";
/// Receipts a producer waits for at once.
const WINDOW: usize = 8;

/// What every producer's numbers became, shared by the load's tasks.
#[derive(Default)]
pub struct Ledger {
    /// Per producer, per number: receipted?
    receipted: Mutex<Vec<Vec<bool>>>,
    /// Per producer, per number: deliveries seen.
    delivered: Mutex<Vec<Vec<u32>>>,
    /// When each receipt arrived, in µs since `epoch` (for the stalls around faults).
    receipt_times: Mutex<Vec<u64>>,
    /// µs since `epoch` of the newest receipt (0: none yet).
    last_receipt_us: AtomicU64,
    send_errors: AtomicUsize,
    pub epoch: Option<Instant>,
}

/// The verdict, once the load has drained.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub receipted: usize,
    pub delivered_unique: usize,
    pub lost: usize,
    pub duplicates: usize,
    /// Delivered but never receipted (sent while a broker died: allowed, not lost).
    pub unreceipted_delivered: usize,
    pub first_lost: Vec<String>,
    /// Sends that failed outright (not resent): they were never receipted.
    pub send_errors: usize,
}

fn mark<T: Default + Clone>(
    table: &Mutex<Vec<Vec<T>>>,
    producer: usize,
    n: usize,
    f: impl FnOnce(&mut T),
) {
    let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
    if table.len() <= producer {
        table.resize(producer + 1, Vec::new());
    }
    let row = &mut table[producer];
    if row.len() <= n {
        row.resize(n + 1, T::default());
    }
    f(&mut row[n]);
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger {
            epoch: Some(Instant::now()),
            ..Ledger::default()
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.map_or(0, |e| e.elapsed().as_micros() as u64)
    }

    fn receipted(&self, producer: usize, n: usize) {
        mark(&self.receipted, producer, n, |r| *r = true);
        let now = self.now_us().max(1);
        self.last_receipt_us.store(now, Ordering::Relaxed);
        self.receipt_times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(now);
    }

    fn delivered(&self, producer: usize, n: usize) {
        mark(&self.delivered, producer, n, |d| *d += 1);
    }

    /// When the newest receipt arrived.
    pub fn last_receipt(&self) -> Option<Instant> {
        let us = self.last_receipt_us.load(Ordering::Relaxed);
        (us > 0).then(|| self.epoch.map(|e| e + Duration::from_micros(us)))?
    }

    /// The longest time without a receipt between the last receipt before `from` and the
    /// newest one: how long producers stalled around a fault struck at `from`.
    pub fn longest_stall_since(&self, from: Instant) -> Duration {
        let Some(epoch) = self.epoch else {
            return Duration::ZERO;
        };
        let from_us = from.saturating_duration_since(epoch).as_micros() as u64;
        let times = self.receipt_times.lock().unwrap_or_else(|p| p.into_inner());
        // Producers append concurrently, so the tail is only nearly sorted.
        let start = times.partition_point(|&t| t < from_us.saturating_sub(1_000_000));
        let mut window: Vec<u64> = times[start..].to_vec();
        drop(times);
        window.sort_unstable();
        let before = window.iter().rposition(|&t| t <= from_us);
        let mut longest = 0;
        let mut previous = before.map_or(from_us, |i| window[i]);
        for &t in &window[before.map_or(0, |i| i + 1)..] {
            longest = longest.max(t - previous);
            previous = t;
        }
        Duration::from_micros(longest)
    }

    pub fn receipts(&self) -> usize {
        let table = self.receipted.lock().unwrap_or_else(|p| p.into_inner());
        table
            .iter()
            .map(|row| row.iter().filter(|r| **r).count())
            .sum()
    }

    pub fn tally(&self) -> Tally {
        let receipted = self.receipted.lock().unwrap_or_else(|p| p.into_inner());
        let delivered = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        let mut tally = Tally {
            send_errors: self.send_errors.load(Ordering::Relaxed),
            ..Tally::default()
        };
        let producers = receipted.len().max(delivered.len());
        for p in 0..producers {
            let r = receipted.get(p).map_or(&[][..], |v| v.as_slice());
            let d = delivered.get(p).map_or(&[][..], |v| v.as_slice());
            for n in 0..r.len().max(d.len()) {
                let was_receipted = r.get(n).copied().unwrap_or(false);
                let times = d.get(n).copied().unwrap_or(0) as usize;
                tally.receipted += usize::from(was_receipted);
                tally.delivered_unique += usize::from(times > 0);
                tally.duplicates += times.saturating_sub(1);
                if was_receipted && times == 0 {
                    tally.lost += 1;
                    if tally.first_lost.len() < 10 {
                        tally.first_lost.push(body(p, n));
                    }
                }
                if !was_receipted && times > 0 {
                    tally.unreceipted_delivered += 1;
                }
            }
        }
        tally
    }
}

fn body(producer: usize, n: usize) -> String {
    format!("p{producer}-{n}")
}

fn parse_body(body: &[u8]) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(body).ok()?;
    let (producer, n) = text.strip_prefix('p')?.split_once('-')?;
    Some((producer.parse().ok()?, n.parse().ok()?))
}

/// The running load: tasks to stop and a ledger to read.
pub struct Load {
    pub ledger: Arc<Ledger>,
    stop_producing: Arc<AtomicBool>,
    stop_consuming: Arc<AtomicBool>,
    producers: Vec<runtime::JoinHandle<()>>,
    consumers: Vec<runtime::JoinHandle<()>>,
}

pub struct Target {
    pub url: String,
    pub login: String,
    pub passcode: String,
}

impl Load {
    /// `consumer_rate`: messages a second each consumer takes at most (0: no limit).
    pub async fn start(
        target: &Target,
        producers: usize,
        consumers: usize,
        consumer_rate: u32,
    ) -> Result<Load, ClientError> {
        let ledger = Arc::new(Ledger::new());
        let stop_producing = Arc::new(AtomicBool::new(false));
        let stop_consuming = Arc::new(AtomicBool::new(false));
        let mut load = Load {
            ledger: ledger.clone(),
            stop_producing: stop_producing.clone(),
            stop_consuming: stop_consuming.clone(),
            producers: Vec::new(),
            consumers: Vec::new(),
        };
        for _ in 0..consumers {
            let client = connect(target).await?;
            let subscription = client.subscribe(QUEUE, AckMode::ClientIndividual).await?;
            let (ledger, stop) = (ledger.clone(), stop_consuming.clone());
            load.consumers.push(runtime::spawn(async move {
                consume(client, subscription, ledger, stop, consumer_rate).await
            }));
        }
        for producer in 0..producers {
            let client = connect(target).await?;
            let (ledger, stop) = (ledger.clone(), stop_producing.clone());
            load.producers.push(runtime::spawn(async move {
                produce(client, producer, ledger, stop).await
            }));
        }
        Ok(load)
    }

    /// Stops sending and waits for every send in flight to be receipted (or fail).
    pub async fn stop_producing(&mut self) {
        self.stop_producing.store(true, Ordering::SeqCst);
        for producer in self.producers.drain(..) {
            producer.await;
        }
    }

    /// Waits until every receipted message was delivered, or until nothing new arrives
    /// for `idle`; then stops the consumers.
    pub async fn drain(&mut self, idle: Duration) -> Tally {
        let mut last_progress = (Instant::now(), self.ledger.tally().delivered_unique);
        loop {
            let tally = self.ledger.tally();
            if tally.lost == 0 || last_progress.0.elapsed() > idle {
                break;
            }
            if tally.delivered_unique != last_progress.1 {
                last_progress = (Instant::now(), tally.delivered_unique);
            }
            runtime::sleep(Duration::from_millis(50)).await;
        }
        self.stop_consuming.store(true, Ordering::SeqCst);
        for consumer in self.consumers.drain(..) {
            consumer.await;
        }
        self.ledger.tally()
    }
}

async fn connect(target: &Target) -> Result<Client, ClientError> {
    Client::connect(&target.url, Some(&target.login), Some(&target.passcode)).await
}

async fn produce(client: Client, producer: usize, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let numbers = (0..).take_while(|_| !stop.load(Ordering::SeqCst));
    let sends = futures::stream::iter(numbers).map(|n| {
        let client = client.clone();
        async move {
            let sent = client
                .send(QUEUE, body(producer, n), &[("persistent", "true")])
                .await;
            (n, sent)
        }
    });
    let mut sends = sends.buffer_unordered(WINDOW);
    while let Some((n, sent)) = sends.next().await {
        match sent {
            Ok(()) => ledger.receipted(producer, n),
            Err(error) => {
                log::warn!("chaos: send p{producer}-{n} failed: {error}");
                ledger.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    drop(sends);
    let _ = client.disconnect().await;
}

async fn consume(
    client: Client,
    mut subscription: mirrormq::client::Subscription,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    rate: u32,
) {
    // A rate is kept by a 10 ms pause after each hundredth of it.
    let per_pause = (rate / 100).max(1);
    let mut taken = 0;
    while !stop.load(Ordering::SeqCst) {
        if rate > 0 {
            taken += 1;
            if taken % per_pause == 0 {
                runtime::sleep(Duration::from_millis(10)).await;
            }
        }
        let Some(Some(message)) =
            runtime::timeout(Duration::from_millis(100), subscription.next()).await
        else {
            continue;
        };
        if let Some((producer, n)) = parse_body(&message.body) {
            ledger.delivered(producer, n);
        }
        // An ACK lost in a failover only means a redelivery (a duplicate, counted).
        let _ = client.ack(&message).await;
    }
    let _ = client.disconnect().await;
}
