//! A producer and a consumer on a failover URL, for tests that strike a broker mid-run:
//! the producer sends numbered persistent messages and says when a third is receipted;
//! the consumer takes everything the queue holds.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures::StreamExt;
use mirrormq::client::{AckMode, Client};
use mirrormq::runtime;

/// Sends `m0`..`m{total-1}` to `queue` through `url`, 32 outstanding; the receiver hears
/// once a third are receipted. The thread returns how many were receipted (all, or it
/// panics).
pub fn produce_through(
    url: &str,
    queue: &str,
    total: usize,
) -> (JoinHandle<usize>, mpsc::Receiver<()>) {
    let (third_tx, third_rx) = mpsc::channel::<()>();
    let (url, queue) = (url.to_string(), queue.to_string());
    let producer = std::thread::spawn(move || {
        runtime::block_on(async move {
            let client = Client::connect(&url, Some("admin"), Some("admin"))
                .await
                .unwrap();
            let sends = (0..total).map(|i| {
                let (client, queue) = (client.clone(), queue.clone());
                async move {
                    client
                        .send(&queue, format!("m{i}"), &[("persistent", "true")])
                        .await
                }
            });
            let mut results = futures::stream::iter(sends).buffer_unordered(32);
            let mut receipted = 0;
            while let Some(result) = results.next().await {
                result.expect("every send is receipted, across the fault");
                receipted += 1;
                if receipted == total / 3 {
                    let _ = third_tx.send(());
                }
            }
            drop(results);
            client.disconnect().await.unwrap();
            receipted
        })
    });
    (producer, third_rx)
}

/// Every message `queue` holds, acked one by one, until none comes for 2 s.
pub fn consume_all(url: &str, queue: &str) -> Vec<String> {
    runtime::block_on(async {
        let client = Client::connect(url, Some("admin"), Some("admin"))
            .await
            .unwrap();
        let mut subscription = client
            .subscribe(queue, AckMode::ClientIndividual)
            .await
            .unwrap();
        let mut bodies = Vec::new();
        while let Some(Some(message)) =
            runtime::timeout(Duration::from_secs(2), subscription.next()).await
        {
            bodies.push(String::from_utf8_lossy(&message.body).into_owned());
            client.ack(&message).await.unwrap();
        }
        bodies
    })
}
