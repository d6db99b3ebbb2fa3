//! Which admin call a request is: the method and path table of the console, the JSON API
//! and `/metrics`, with no I/O, so every route and every refusal is a table test.

use crate::core::AdminOp;
use crate::http::{HttpError, Request};

/// Messages a browse returns when the request names no `limit`.
pub const DEFAULT_BROWSE: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Console,
    Status,
    Queues,
    Topics,
    Browse { queue: String, limit: usize },
    Op(AdminOp),
    Connections,
    CloseConnection(u64),
    Metrics,
}

impl Route {
    /// Whether it changes the broker (and so must not come from another site's page).
    pub fn changes(&self) -> bool {
        matches!(self, Route::Op(_) | Route::CloseConnection(_))
    }
}

/// The route of `request`; a browse's limit is capped at `max_browse`.
pub fn route(request: &Request, max_browse: usize) -> Result<Route, HttpError> {
    let method = request.method.as_str();
    // HEAD is GET without the body (`http::Response::to_bytes`).
    let reads = matches!(method, "GET" | "HEAD");
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let allow = |ok: bool, allowed: &str| {
        if ok {
            Ok(())
        } else {
            Err(HttpError::new(405, format!("{method} here: use {allowed}")))
        }
    };
    match segments.as_slice() {
        [] | ["index.html"] => allow(reads, "GET").map(|()| Route::Console),
        ["metrics"] => allow(reads, "GET").map(|()| Route::Metrics),
        ["api", "status"] => allow(reads, "GET").map(|()| Route::Status),
        ["api", "queues"] => allow(reads, "GET").map(|()| Route::Queues),
        ["api", "topics"] => allow(reads, "GET").map(|()| Route::Topics),
        ["api", "connections"] => allow(reads, "GET").map(|()| Route::Connections),
        ["api", "connections", id] => {
            allow(method == "DELETE", "DELETE")?;
            let id = id
                .parse()
                .map_err(|_| HttpError::new(400, format!("connection id {id:?}")))?;
            Ok(Route::CloseConnection(id))
        }
        ["api", "queues", queue] => {
            allow(method == "DELETE", "DELETE")?;
            Ok(Route::Op(AdminOp::Delete {
                queue: queue_name(queue)?,
            }))
        }
        ["api", "queues", queue, "messages"] => {
            allow(reads, "GET")?;
            let limit = match request.param("limit") {
                None => DEFAULT_BROWSE,
                Some(text) => text
                    .parse::<usize>()
                    .map_err(|_| HttpError::new(400, format!("limit {text:?}")))?,
            };
            Ok(Route::Browse {
                queue: queue_name(queue)?,
                limit: limit.min(max_browse),
            })
        }
        ["api", "queues", queue, "purge"] => {
            allow(method == "POST", "POST")?;
            Ok(Route::Op(AdminOp::Purge {
                queue: queue_name(queue)?,
            }))
        }
        ["api", "queues", queue, "move"] => {
            allow(method == "POST", "POST")?;
            let to = request
                .param("to")
                .ok_or_else(|| HttpError::new(400, "move needs ?to=QUEUE"))?;
            Ok(Route::Op(AdminOp::Move {
                from: queue_name(queue)?,
                to: queue_name(to)?,
            }))
        }
        _ => Err(HttpError::new(404, "no such page or API call")),
    }
}

/// A queue's name as the API takes it: without `/queue/`, which is also accepted.
fn queue_name(text: &str) -> Result<String, HttpError> {
    let name = text.strip_prefix("/queue/").unwrap_or(text);
    if name.is_empty() || name.len() > 1024 || name.chars().any(char::is_control) {
        return Err(HttpError::new(400, format!("queue name {text:?}")));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str) -> Request {
        let text = format!("{method} {target} HTTP/1.1\r\n\r\n");
        crate::http::parse_request(text.as_bytes(), &Default::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn op(op: AdminOp) -> Result<Route, u16> {
        Ok(Route::Op(op))
    }

    #[test]
    fn routes_every_call_and_refuses_the_rest() {
        let purge = |q: &str| {
            op(AdminOp::Purge {
                queue: q.to_string(),
            })
        };
        let cases: Vec<(&str, &str, Result<Route, u16>)> = vec![
            ("GET", "/", Ok(Route::Console)),
            ("HEAD", "/index.html", Ok(Route::Console)),
            ("GET", "/metrics", Ok(Route::Metrics)),
            ("GET", "/api/status", Ok(Route::Status)),
            ("GET", "/api/status/", Ok(Route::Status)),
            ("GET", "/api/queues", Ok(Route::Queues)),
            ("GET", "/api/topics", Ok(Route::Topics)),
            ("GET", "/api/connections", Ok(Route::Connections)),
            (
                "DELETE",
                "/api/connections/7",
                Ok(Route::CloseConnection(7)),
            ),
            ("DELETE", "/api/connections/x", Err(400)),
            (
                "GET",
                "/api/queues/orders/messages?limit=5",
                Ok(Route::Browse {
                    queue: "orders".into(),
                    limit: 5,
                }),
            ),
            (
                "GET",
                "/api/queues/orders/messages?limit=99999",
                Ok(Route::Browse {
                    queue: "orders".into(),
                    limit: 1000,
                }),
            ),
            (
                "GET",
                "/api/queues/orders/messages",
                Ok(Route::Browse {
                    queue: "orders".into(),
                    limit: DEFAULT_BROWSE,
                }),
            ),
            ("GET", "/api/queues/orders/messages?limit=-1", Err(400)),
            ("POST", "/api/queues/a%2Fb/purge", purge("a/b")),
            ("POST", "/api/queues/%2Fqueue%2Fa/purge", purge("a")),
            ("GET", "/api/queues/a/purge", Err(405)),
            (
                "DELETE",
                "/api/queues/a",
                op(AdminOp::Delete { queue: "a".into() }),
            ),
            (
                "POST",
                "/api/queues/a/move?to=b",
                op(AdminOp::Move {
                    from: "a".into(),
                    to: "b".into(),
                }),
            ),
            ("POST", "/api/queues/a/move", Err(400)),
            ("POST", "/api/queues/a/move?to=", Err(400)),
            ("POST", "/api/queues/%01/purge", Err(400)),
            ("POST", "/api/status", Err(405)),
            ("GET", "/api/nothing", Err(404)),
            ("GET", "/favicon.ico", Err(404)),
        ];
        for (method, target, expected) in cases {
            let got = route(&request(method, target), 1000).map_err(|e| e.status);
            assert_eq!(got, expected, "{method} {target}");
        }
    }

    #[test]
    fn only_ops_change_the_broker() {
        assert!(Route::CloseConnection(1).changes());
        assert!(Route::Op(AdminOp::Purge { queue: "a".into() }).changes());
        assert!(!Route::Status.changes() && !Route::Metrics.changes());
    }
}
