//! Talking to a broker's admin listener as a user would: HTTP with Basic credentials,
//! JSON answers, and waiting until an answer shows what a test expects.

use std::time::{Duration, Instant};

use base64::Engine;
use mirrormq::http::{self, Answer};

use super::PATIENCE;

/// `[admin]` on an ephemeral port with the admin user `ops`/`ops`, for a config's `rest`.
pub fn admin_section(extra: &str) -> String {
    format!("[admin]\nbind = \"tcp://127.0.0.1:0\"\n{extra}\n[[users]]\nname = \"ops\"\npassword = \"ops\"\nadmin = true\n")
}

/// The client user `Client::connect` logs in as, for a config that lists users.
pub const CLIENT_USER: &str = "[[users]]\nname = \"admin\"\npassword = \"admin\"\n";

/// Calls `method path` on the admin port with `credentials` (`login:password`, or none).
pub fn call(port: u16, method: &str, path: &str, credentials: Option<&str>) -> Answer {
    let mut headers = Vec::new();
    if let Some(credentials) = credentials {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        headers.push(("Authorization", format!("Basic {encoded}")));
    }
    http::call(
        &format!("127.0.0.1:{port}"),
        method,
        path,
        &headers,
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Calls as `ops` and parses the JSON answer, which must be 200.
pub fn json(port: u16, method: &str, path: &str) -> serde_json::Value {
    let answer = call(port, method, path, Some("ops:ops"));
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert_eq!(answer.status, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

/// GETs `path` until `check` accepts the answer; panics with the last one after PATIENCE.
pub fn eventually(
    port: u16,
    path: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let value = json(port, "GET", path);
        if check(&value) {
            return value;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "GET {path} never showed it: {value}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The queue called `name` in a `/api/queues` answer.
pub fn queue<'a>(queues: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    queues["queues"]
        .as_array()?
        .iter()
        .find(|q| q["name"] == name)
}

/// The depth of queue `name`, `None` if there is no such queue.
pub fn depth(queues: &serde_json::Value, name: &str) -> Option<u64> {
    queue(queues, name).and_then(|q| q["depth"].as_u64())
}

/// Requests `/api/status` until one answer has `status` (true), or PATIENCE passes.
pub fn wait_for_status(port: u16, status: u16) -> bool {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if call(port, "GET", "/api/status", Some("ops:ops")).status == status {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
