//! The admin listener (`[admin]`): the web console at `/`, the JSON API under `/api/`
//! and Prometheus metrics at `/metrics`, on the broker's own runtime.
//!
//! One request per connection (`Connection: close`), read within
//! `admin.request_timeout_ms` under the `http::Limits` of `[admin]`, at most
//! `admin.max_connections` at once. A request is routed (`routes`), authenticated
//! (`auth`), and answered from what the shell reports (`Call`): the core's state is read
//! between two of its steps, so every answer is one consistent moment. An operator's op
//! (purge, move, delete) is a journal record, answered once the record is as safe as a
//! client's receipt would be. Bad requests get a 4xx and the connection closes; nothing
//! a request carries can stop the listener or the broker.
//!
//! - `routes`: the method and path table.
//! - `auth`: Basic credentials of admin users; the same-origin rule for changes.
//! - `api`: the JSON documents.
//! - `metrics`: the Prometheus text exposition.
//! - `console.html`: the one page, with its script, served as it is.

mod api;
mod auth;
mod metrics;
mod routes;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::{AsyncReadExt, AsyncWriteExt, SinkExt};

use crate::broker::{Browsed, DestinationStats};
use crate::config::{AdminConfig, Config};
use crate::core::{AdminOp, CoreStatus};
use crate::http::{self, HttpError, Response};
use crate::journal::Extent;
use crate::runtime::{self, TcpListener, TcpStream};
use crate::tls::Acceptor;
use crate::transport::{Reader, Transport};
pub use api::{browsed, Shown};
pub use routes::{route, Route};

/// The console page: one file, no build step, nothing fetched from elsewhere.
const CONSOLE: &str = include_str!("console.html");
/// Calls waiting for the shell at once; past it a request gets a 503.
const CALL_QUEUE: usize = 64;

/// What a request asks of the shell.
#[derive(Debug)]
pub enum Ask {
    Status,
    Destinations,
    Browse { queue: String, limit: usize },
    Op(AdminOp),
    Connections,
    CloseConnection(u64),
}

/// The shell's answer.
#[derive(Debug)]
pub enum Reply {
    Status(Box<StatusReport>),
    Destinations(DestinationsReport),
    /// `None`: no such queue.
    Browse(Option<Vec<(Browsed, Option<Extent>)>>),
    /// Messages affected, or the status and why it was refused.
    Op(Result<u64, (u16, String)>),
    Connections(Vec<Connection>),
    /// Whether there was such a connection.
    Closed(bool),
}

/// One request's question, with where its answer goes.
#[derive(Debug)]
pub struct Call {
    pub ask: Ask,
    pub reply: oneshot::Sender<Reply>,
}

/// `GET /api/status`: the core's state and the shell's.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub core: CoreStatus,
    pub name: String,
    pub started_at_ms: u64,
    pub now_ms: u64,
    pub connections: usize,
    pub max_connections: usize,
    pub memory_limit: u64,
    pub disk_limit: u64,
    /// The master this broker follows or dials (a slave).
    pub master: Option<String>,
    pub replication_address: Option<String>,
    /// When the shell saw the last role change, in ms since the Unix epoch.
    pub last_change_at_ms: Option<u64>,
    /// Copies of the store this master serves: slave address, bytes sent, total.
    pub copies: Vec<(String, u64, u64)>,
    /// Each attached slave's `broker.name`, by link (as it said in its Hello).
    pub replica_names: std::collections::HashMap<crate::repl::group::LinkId, String>,
    /// Slaves whose links failed lately, newest first.
    pub lost_replicas: Vec<LostReplica>,
}

/// A slave whose link failed: its name, why, and when (Unix ms).
#[derive(Debug, Clone)]
pub struct LostReplica {
    pub name: String,
    pub why: String,
    pub at_ms: u64,
}

/// `GET /api/queues` and `/api/topics`: each queue with the age of its oldest message.
#[derive(Debug, Clone)]
pub struct DestinationsReport {
    pub queues: Vec<(DestinationStats, Option<u64>)>,
    pub topics: Vec<DestinationStats>,
}

/// One client connection.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: u64,
    pub peer: String,
    pub login: Option<String>,
    pub version: String,
    pub connected_at_ms: u64,
}

/// What every admin connection shares.
struct Shared {
    config: Arc<Config>,
    admin: AdminConfig,
    /// HTTPS (`admin.tls`).
    tls: Option<Acceptor>,
    calls: mpsc::Sender<Call>,
    active: AtomicUsize,
}

/// The channel the shell reads calls from, and its sending end for `serve`.
pub fn channel() -> (mpsc::Sender<Call>, mpsc::Receiver<Call>) {
    mpsc::channel(CALL_QUEUE)
}

/// Accepts admin connections until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Config>,
    calls: mpsc::Sender<Call>,
    tls: Option<Acceptor>,
) {
    let Some(admin) = config.admin.clone() else {
        return;
    };
    let shared = Arc::new(Shared {
        config,
        admin,
        tls,
        calls,
        active: AtomicUsize::new(0),
    });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, most likely: wait rather than spin.
                log::warn!("admin: accept failed: {error}");
                runtime::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        runtime::spawn(async move {
            let open = shared.active.fetch_add(1, Ordering::SeqCst);
            if let Some(mut transport) = open_transport(stream, &shared).await {
                if open >= shared.admin.max_connections {
                    // Read what came first: closing with a request unread can reset the
                    // connection and lose the 503 on the way.
                    let mut scratch = [0u8; 4096];
                    let first = transport.reader.read(&mut scratch);
                    let _ = runtime::timeout(Duration::from_millis(100), first).await;
                    let busy = Response::new(503, "text/plain", "too many admin connections\n");
                    let timeout = Duration::from_millis(shared.admin.request_timeout_ms);
                    respond(&mut transport, &busy, false, timeout).await;
                } else {
                    serve_one(&mut transport, &shared).await;
                }
            }
            shared.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// The connection as the listener speaks: plain, or HTTPS once its handshake is done
/// within the request timeout (a failed one is logged and closed).
async fn open_transport(stream: TcpStream, shared: &Shared) -> Option<Transport> {
    let Some(acceptor) = &shared.tls else {
        return Some(Transport::tcp(stream));
    };
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let timeout = Duration::from_millis(shared.admin.request_timeout_ms);
    Transport::accept_tls_within(stream, acceptor, timeout)
        .await
        .map_err(|why| log::warn!("admin: connection from {peer} refused: {why}"))
        .ok()
}

/// Reads one request, answers it, closes.
async fn serve_one(stream: &mut Transport, shared: &Shared) {
    let timeout = Duration::from_millis(shared.admin.request_timeout_ms);
    let reading = read_request(&mut stream.reader, &shared.admin);
    let request = match runtime::timeout(timeout, reading).await {
        Some(Ok(Some(request))) => request,
        Some(Ok(None)) => return,
        Some(Err(error)) => return respond(stream, &refusal(&error), false, timeout).await,
        None => {
            let late = HttpError::new(408, "the request did not arrive in time");
            return respond(stream, &refusal(&late), false, timeout).await;
        }
    };
    let head_only = request.method == "HEAD";
    let response = match answer(&request, shared, timeout).await {
        Ok(response) => response,
        Err(error) => refusal(&error),
    };
    respond(stream, &response, head_only, timeout).await;
}

/// The request on `stream`, or `None` if it closed before sending anything.
async fn read_request(
    stream: &mut Reader,
    admin: &AdminConfig,
) -> Result<Option<http::Request>, HttpError> {
    let limits = admin.limits();
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if !buffer.is_empty() {
            if let Some((request, _)) = http::parse_request(&buffer, &limits)? {
                return Ok(Some(request));
            }
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| HttpError::new(400, format!("reading the request: {e}")))?;
        if n == 0 {
            return match buffer.is_empty() {
                true => Ok(None),
                false => Err(HttpError::new(400, "the request ended early")),
            };
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Writes the response within `timeout` (a client that does not read loses it), closes.
async fn respond(stream: &mut Transport, response: &Response, head_only: bool, timeout: Duration) {
    let bytes = response.to_bytes(head_only);
    let written = async {
        stream.writer.write_all(&bytes).await?;
        // HTTPS's close_notify, then the end of our direction.
        stream.writer.close().await
    };
    let _ = runtime::timeout(timeout, written).await;
    stream.cut();
}

fn refusal(error: &HttpError) -> Response {
    let response = Response::new(
        error.status,
        "application/json",
        api::error_body(error.status, &error.why),
    );
    if error.status == 401 {
        response.with_header("WWW-Authenticate", auth::CHALLENGE)
    } else {
        response
    }
}

/// Routes, checks and answers one request.
async fn answer(
    request: &http::Request,
    shared: &Shared,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let route = routes::route(request, shared.admin.max_browse)?;
    let public = route == Route::Metrics && shared.admin.metrics_public;
    if !public && !auth::is_admin(request, &shared.config) {
        return Err(HttpError::new(401, "an admin login is needed"));
    }
    if route.changes() && !auth::same_origin(request) {
        return Err(HttpError::new(
            403,
            "changes come from the console's own page",
        ));
    }
    let ask = |ask| call(&shared.calls, ask, timeout);
    let json = |body: String| Ok(Response::new(200, "application/json", body));
    match route {
        Route::Console => Ok(Response::new(200, "text/html; charset=utf-8", CONSOLE)
            .with_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'; frame-ancestors 'none'")),
        Route::Status => match ask(Ask::Status).await? {
            Reply::Status(status) => json(api::status(&status)),
            other => unexpected(other),
        },
        Route::Queues | Route::Topics => match ask(Ask::Destinations).await? {
            Reply::Destinations(report) if route == Route::Queues => json(api::queues(&report)),
            Reply::Destinations(report) => json(api::topics(&report)),
            other => unexpected(other),
        },
        Route::Browse { queue, limit } => {
            let browse = Ask::Browse {
                queue: queue.clone(),
                limit,
            };
            match ask(browse).await? {
                Reply::Browse(Some(items)) => {
                    let dir = shared.config.data_dir().join(crate::journal::JOURNAL_DIR);
                    let budget = shared.admin.max_browse_bytes.bytes();
                    let messages =
                        runtime::spawn_blocking(move || api::browsed(&dir, items, budget)).await;
                    json(api::browse(&queue, &messages))
                }
                Reply::Browse(None) => Err(HttpError::new(404, format!("no queue named {queue}"))),
                other => unexpected(other),
            }
        }
        Route::Op(op) => match ask(Ask::Op(op)).await? {
            Reply::Op(Ok(affected)) => json(api::done(affected)),
            Reply::Op(Err((status, why))) => Err(HttpError::new(status, why)),
            other => unexpected(other),
        },
        Route::Connections => match ask(Ask::Connections).await? {
            Reply::Connections(connections) => json(api::connections(&connections)),
            other => unexpected(other),
        },
        Route::CloseConnection(id) => match ask(Ask::CloseConnection(id)).await? {
            Reply::Closed(true) => json(api::done(1)),
            Reply::Closed(false) => Err(HttpError::new(404, format!("no connection {id}"))),
            other => unexpected(other),
        },
        Route::Metrics => {
            let status = match ask(Ask::Status).await? {
                Reply::Status(status) => status,
                other => return unexpected(other),
            };
            let destinations = match ask(Ask::Destinations).await? {
                Reply::Destinations(report) => report,
                other => return unexpected(other),
            };
            Ok(Response::new(
                200,
                metrics::CONTENT_TYPE,
                metrics::render(&status, &destinations),
            ))
        }
    }
}

/// Asks the shell and waits for its answer, at most `timeout`.
async fn call(calls: &mpsc::Sender<Call>, ask: Ask, timeout: Duration) -> Result<Reply, HttpError> {
    let (reply, answer) = oneshot::channel();
    let mut calls = calls.clone();
    let asked = async {
        calls
            .send(Call { ask, reply })
            .await
            .map_err(|_| HttpError::new(503, "the broker is stopping"))?;
        answer
            .await
            .map_err(|_| HttpError::new(503, "the broker did not answer"))
    };
    runtime::timeout(timeout, asked).await.unwrap_or_else(|| {
        Err(HttpError::new(
            504,
            "no answer within admin.request_timeout_ms (an op waits for the journal and the in-sync slaves)",
        ))
    })
}

fn unexpected(reply: Reply) -> Result<Response, HttpError> {
    log::error!("admin: the shell answered the wrong question: {reply:?}");
    Err(HttpError::new(
        500,
        "the broker answered the wrong question",
    ))
}
