//! `mirrormq status` and `mirrormq admin`: a broker's admin API from the command line.
//! `status` prints the role, the replicas and the queues as tables (`--json` for
//! scripts); `admin purge|delete|move|browse` call the API's operations.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use mirrormq::config::Endpoint;
use mirrormq::error::{Error, Result};
use mirrormq::http::{self, percent_encode};
use mirrormq::tls;

/// How long one call may take: an op waits for the journal and the in-sync slaves.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API is and who asks: the `--admin` URL read once, and for
/// `https://` the CA read once, however many calls a command makes.
pub struct Admin {
    /// The URL as given, for messages.
    url: String,
    /// `HOST:PORT`.
    address: String,
    /// For `https://`: the host the certificate must name, and the client.
    tls: Option<(String, tls::Connector)>,
    login: Option<String>,
    passcode: Option<String>,
}

/// One operation of `mirrormq admin`.
#[derive(structopt::StructOpt)]
pub enum Operation {
    /// Removes a queue's ready messages (a journal record: slaves remove them too).
    Purge { queue: String },
    /// Deletes a queue and its messages (refused while it has consumers).
    Delete { queue: String },
    /// Moves a queue's ready messages to the back of another queue.
    Move {
        queue: String,
        #[structopt(long)]
        to: String,
    },
    /// Prints a queue's first messages (id and body), without consuming them.
    Browse {
        queue: String,
        #[structopt(long, default_value = "20")]
        limit: usize,
    },
}

impl Admin {
    /// `url`: `http://HOST:PORT` (or `HOST:PORT`), or `https://HOST:PORT` with `ca`, the
    /// CA that signed the broker's certificate.
    pub fn new(
        url: String,
        ca: Option<&Path>,
        login: Option<String>,
        passcode: Option<String>,
    ) -> Result<Admin> {
        let (rest, https) = match url.strip_prefix("https://") {
            Some(rest) => (rest, true),
            None => (url.strip_prefix("http://").unwrap_or(&url), false),
        };
        let rest = rest.trim_end_matches('/');
        let Ok(endpoint) = Endpoint::parse(&format!("tcp://{rest}")) else {
            return Err(Error::Tool(format!(
                "--admin {url}: expected http://HOST:PORT or https://HOST:PORT (the broker's [admin] bind)"
            )));
        };
        let tls = match (https, ca) {
            (false, _) => None,
            (true, None) => return Err(Error::Tool(format!(
                "{url}: an https:// admin listener: name the CA that signed its certificate with --ca FILE or MIRRORMQ_CA"
            ))),
            (true, Some(ca)) => {
                let connector =
                    tls::Connector::from_ca(ca).map_err(|e| Error::Tool(format!("{url}: {e}")))?;
                Some((endpoint.host.clone(), connector))
            }
        };
        Ok(Admin {
            address: endpoint.socket_addr(),
            url,
            tls,
            login,
            passcode,
        })
    }

    /// One request and its answer, over HTTPS if the URL says so.
    fn exchange(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
    ) -> std::io::Result<http::Answer> {
        let stream = http::connect(&self.address, TIMEOUT)?;
        match &self.tls {
            None => http::exchange(stream, &self.address, method, target, headers),
            Some((host, connector)) => {
                let secured = connector.connect_blocking(host, stream)?;
                http::exchange(secured, &self.address, method, target, headers)
            }
        }
    }

    /// Calls `method target` and gives the JSON answer, or the API's error.
    fn call(&self, method: &str, target: &str) -> Result<Value> {
        let mut headers = Vec::new();
        if let Some(login) = &self.login {
            let credentials = format!("{login}:{}", self.passcode.as_deref().unwrap_or(""));
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            headers.push(("Authorization", format!("Basic {encoded}")));
        }
        let answer = self
            .exchange(method, target, &headers)
            .map_err(|e| Error::Tool(format!("{}: {e}", self.url)))?;
        let body: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| Error::Tool(format!("{}{target}: not the admin API ({e})", self.url)))?;
        match answer.status {
            200 => Ok(body),
            401 => Err(Error::Tool(format!(
                "{}: an admin login is needed (--login and --passcode, or MIRRORMQ_LOGIN and MIRRORMQ_PASSCODE, of a [[users]] entry with admin = true)",
                self.url
            ))),
            status => Err(Error::Tool(format!(
                "{method} {target}: {status}: {}",
                body["error"].as_str().unwrap_or("refused")
            ))),
        }
    }
}

/// `mirrormq status`.
pub fn status(admin: &Admin, json: bool) -> Result<i32> {
    let status = admin.call("GET", "/api/status")?;
    let queues = admin.call("GET", "/api/queues")?;
    let topics = admin.call("GET", "/api/topics")?;
    if json {
        let all = serde_json::json!({ "status": status, "queues": queues["queues"], "topics": topics["topics"] });
        println!("{all}");
        return Ok(0);
    }
    println!(
        "{} ({}) epoch {} seq {} durable {}; up {}; {} connection(s); {} message(s); memory {} of {} MiB",
        status["name"].as_str().unwrap_or("?"),
        status["role"].as_str().unwrap_or("?"),
        status["epoch"],
        status["seq"],
        status["durable_seq"],
        age(status["uptime_ms"].as_u64()),
        status["connections"],
        status["messages"],
        status["memory"]["used"].as_u64().unwrap_or(0) >> 20,
        status["memory"]["limit"].as_u64().unwrap_or(0) >> 20,
    );
    if let Some(master) = status["master"].as_str() {
        println!("mirrors {master}");
    }
    if let Some(change) = status["last_role_change"].as_object() {
        println!(
            "last role change: {} -> {} ({})",
            change["from"].as_str().unwrap_or("?"),
            change["to"].as_str().unwrap_or("?"),
            change["why"].as_str().unwrap_or("")
        );
    }
    let replicas = rows(&status["replicas"], |r| {
        vec![
            text(&r["name"]),
            text(&r["address"]),
            text(&r["state"]),
            text(&r["acked_seq"]),
            text(&r["lag_records"]),
            (r["lag_bytes"].as_u64().unwrap_or(0) / 1024).to_string(),
            text(&r["lag_ms"]),
        ]
    });
    table(
        "replicas",
        &[
            "slave", "address", "state", "acked", "lag", "lag KiB", "lag ms",
        ],
        &replicas,
    );
    let queues = rows(&queues["queues"], |q| {
        vec![
            text(&q["name"]),
            text(&q["depth"]),
            text(&q["consumers"]),
            text(&q["enqueued"]),
            text(&q["dequeued"]),
            text(&q["in_flight"]),
            (q["bytes"].as_u64().unwrap_or(0) / 1024).to_string(),
            age(q["oldest_age_ms"].as_u64()),
        ]
    });
    table(
        "queues",
        &[
            "queue",
            "depth",
            "consumers",
            "enqueued",
            "dequeued",
            "in flight",
            "KiB",
            "oldest",
        ],
        &queues,
    );
    let topics = rows(&topics["topics"], |t| {
        vec![
            text(&t["name"]),
            text(&t["consumers"]),
            text(&t["enqueued"]),
        ]
    });
    table("topics", &["topic", "subscribers", "published"], &topics);
    Ok(0)
}

/// `mirrormq admin OPERATION`.
pub fn operate(admin: &Admin, operation: &Operation) -> Result<i32> {
    let queue_path = |queue: &str| format!("/api/queues/{}", percent_encode(queue));
    match operation {
        Operation::Purge { queue } => {
            let done = admin.call("POST", &format!("{}/purge", queue_path(queue)))?;
            println!("purged {} message(s) from {queue}", done["affected"]);
        }
        Operation::Delete { queue } => {
            let done = admin.call("DELETE", &queue_path(queue))?;
            println!("deleted {queue} and its {} message(s)", done["affected"]);
        }
        Operation::Move { queue, to } => {
            let target = format!("{}/move?to={}", queue_path(queue), percent_encode(to));
            let done = admin.call("POST", &target)?;
            println!("moved {} message(s) from {queue} to {to}", done["affected"]);
        }
        Operation::Browse { queue, limit } => {
            let browsed = admin.call(
                "GET",
                &format!("{}/messages?limit={limit}", queue_path(queue)),
            )?;
            for message in browsed["messages"].as_array().into_iter().flatten() {
                let body = message["body"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| {
                        message["body_base64"]
                            .as_str()
                            .map(|b| format!("base64:{b}"))
                    })
                    .or_else(|| {
                        message["unreadable"]
                            .as_str()
                            .map(|w| format!("(unreadable: {w})"))
                    })
                    .unwrap_or_default();
                println!("{}\t{body}", text(&message["message_id"]));
            }
        }
    }
    Ok(0)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn age(ms: Option<u64>) -> String {
    match ms {
        None => "-".to_string(),
        Some(ms) if ms < 1000 => "<1 s".to_string(),
        Some(ms) if ms < 120_000 => format!("{} s", ms / 1000),
        Some(ms) if ms < 7_200_000 => format!("{} min", ms / 60_000),
        Some(ms) => format!("{} h", ms / 3_600_000),
    }
}

fn rows(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array().into_iter().flatten().map(row).collect()
}

/// Prints `rows` under `headers`, each column as wide as its widest cell.
fn table(title: &str, headers: &[&str], rows: &[Vec<String>]) {
    println!("\n{title}:");
    if rows.is_empty() {
        println!("  (none)");
        return;
    }
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
