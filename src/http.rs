//! The HTTP/1.1 seam: the only file that names `httparse`.
//!
//! The admin listener (`admin/`) and the `mirrormq status`/`admin` tools speak HTTP
//! through the types here and nothing else, so a swap of the parser edits this file
//! alone. Parsing is incremental and bounded (`Limits`): a head too long, too many
//! headers, a body too large or a malformed request is an `HttpError` carrying the 4xx
//! or 5xx status to answer with, never a panic. Requests have a `Content-Length` body or
//! none; a chunked request body is refused (501), because no admin call needs one.

use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

/// The bounds of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers, in bytes.
    pub max_head: usize,
    pub max_headers: usize,
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 16 << 10,
            max_headers: 64,
            max_body: 64 << 10,
        }
    }
}

/// A request that parsed, with its path percent-decoded and its query split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The decoded path's segments: `/api/queues/a%2Fb` is `["api", "queues", "a/b"]`.
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request refused while parsing: the status to answer with and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub why: String,
}

impl HttpError {
    pub fn new(status: u16, why: impl Into<String>) -> HttpError {
        HttpError {
            status,
            why: why.into(),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, reason(self.status), self.why)
    }
}

/// Parses the request at the start of `buf`: `Ok(None)` while it is incomplete (and
/// within the limits), else the request and the bytes it took.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > limits.max_head => {
            return Err(too_long(limits))
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head => {
            return Err(too_long(limits))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(
                431,
                format!("more than {} headers", limits.max_headers),
            ))
        }
        Err(error) => return Err(HttpError::new(400, format!("malformed request: {error}"))),
    };
    if parsed.version != Some(1) && parsed.version != Some(0) {
        return Err(HttpError::new(505, "only HTTP/1.0 and HTTP/1.1"));
    }
    let method = parsed.method.unwrap_or_default().to_string();
    let target = parsed.path.unwrap_or_default();
    let mut names = Vec::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HttpError::new(400, format!("header {} is not UTF-8", header.name)))?;
        names.push((header.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    if names.iter().any(|(name, _)| name == "transfer-encoding") {
        return Err(HttpError::new(501, "a chunked request body"));
    }
    let body_len = match names.iter().find(|(name, _)| name == "content-length") {
        None => 0,
        Some((_, value)) => value
            .parse::<usize>()
            .map_err(|_| HttpError::new(400, format!("Content-Length {value:?}")))?,
    };
    if body_len > limits.max_body {
        return Err(HttpError::new(
            413,
            format!(
                "a body of {body_len} bytes (the limit is {})",
                limits.max_body
            ),
        ));
    }
    let Some(body) = buf.get(head_len..head_len + body_len) else {
        return Ok(None);
    };
    let (segments, query) = split_target(target)?;
    let request = Request {
        method,
        segments,
        query,
        headers: names,
        body: body.to_vec(),
    };
    Ok(Some((request, head_len + body_len)))
}

fn too_long(limits: &Limits) -> HttpError {
    HttpError::new(
        431,
        format!("a request head over {} bytes", limits.max_head),
    )
}

/// A target's decoded path segments and query pairs.
type Target = (Vec<String>, Vec<(String, String)>);

/// `/a/b%20c?x=1&y` into its decoded segments and query pairs.
fn split_target(target: &str) -> Result<Target, HttpError> {
    if !target.starts_with('/') {
        return Err(HttpError::new(400, "the target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| percent_decode(segment, false))
        .collect::<Result<_, _>>()?;
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(name, true)?, percent_decode(value, true)?))
        })
        .collect::<Result<_, HttpError>>()?;
    Ok((segments, query))
}

/// Decodes `%XX` escapes (and `+` as a space, in a query).
fn percent_decode(text: &str, plus_is_space: bool) -> Result<String, HttpError> {
    let bad = || HttpError::new(400, format!("bad percent-encoding in {text:?}"));
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'%' => {
                let hex = rest.get(..2).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                rest = &rest[2..];
            }
            b'+' if plus_is_space => bytes.push(b' '),
            _ => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

/// Encodes `text` for one path segment or query value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A response; always sent with `Connection: close` (one request per connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire; a HEAD request gets the head alone.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The reason phrase of the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A response as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One blocking request from a tool (`mirrormq status`, `mirrormq admin`): connects to
/// `addr` (`host:port`), sends `method target` with `headers`, reads the whole answer.
pub fn call(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    timeout: Duration,
) -> std::io::Result<Answer> {
    let stream = connect(addr, timeout)?;
    exchange(stream, addr, method, target, headers)
}

/// A blocking connection to `addr` (`host:port`) whose connect, reads and writes each
/// wait at most `timeout`.
pub fn connect(addr: &str, timeout: Duration) -> std::io::Result<std::net::TcpStream> {
    use std::net::ToSocketAddrs;
    let socket = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
    let stream = std::net::TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Sends one request for `host` on `stream` (plain, or HTTPS made by the caller) and
/// reads the whole answer, to the end of the connection.
pub fn exchange(
    mut stream: impl Read + Write,
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
) -> std::io::Result<Answer> {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    parse_answer(&bytes).map_err(std::io::Error::other)
}

/// Parses a whole response read to the end of its connection.
pub fn parse_answer(bytes: &[u8]) -> Result<Answer, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(head_len)) => Ok(Answer {
            status: parsed.code.unwrap_or_default(),
            body: bytes[head_len..].to_vec(),
        }),
        Ok(httparse::Status::Partial) => Err("the answer ended before its head did".into()),
        Err(error) => Err(format!("a malformed answer: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<(Request, usize)>, HttpError> {
        parse_request(text.as_bytes(), &Limits::default())
    }

    #[test]
    fn parses_a_request_with_segments_query_and_body() {
        let text = "POST /api/queues/a%2Fb/move?to=c+d&x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi";
        let (request, used) = parse(text).unwrap().unwrap();
        assert_eq!(used, text.len());
        assert_eq!(request.method, "POST");
        assert_eq!(request.segments, ["api", "queues", "a/b", "move"]);
        assert_eq!(request.param("to"), Some("c d"));
        assert_eq!(request.param("x"), Some(""));
        assert_eq!(request.header("host"), Some("h"));
        assert_eq!(request.body, b"hi");
    }

    #[test]
    fn incomplete_requests_wait() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: h\r\n"), Ok(None));
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"),
            Ok(None)
        );
    }

    #[test]
    fn bad_requests_get_their_status() {
        let limits = Limits {
            max_head: 64,
            max_headers: 2,
            max_body: 4,
        };
        let status = |text: &str| parse_request(text.as_bytes(), &limits).unwrap_err().status;
        assert_eq!(
            status("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
            431
        );
        assert_eq!(
            status(&format!("GET /{} HTTP/1.1\r\n", "a".repeat(80))),
            431
        );
        assert_eq!(status("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), 413);
        assert_eq!(status("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(status("GET /%zz HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /%ff HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET http://x/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET\0 / HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn encodes_responses_and_reads_them_back() {
        let response = Response::new(404, "text/plain", "no").with_header("X-A", "1");
        let bytes = response.to_bytes(false);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Content-Length: 2\r\n") && text.contains("X-A: 1\r\n"));
        let answer = parse_answer(&bytes).unwrap();
        assert_eq!((answer.status, answer.body), (404, b"no".to_vec()));
        assert!(!String::from_utf8(response.to_bytes(true))
            .unwrap()
            .ends_with("no"));
    }

    #[test]
    fn percent_encoding_round_trips() {
        let name = "orders/eu west+ü";
        let target = format!("/q/{}?n={}", percent_encode(name), percent_encode(name));
        let (segments, query) = split_target(&target).unwrap();
        assert_eq!(segments[1], name);
        assert_eq!(query[0].1, name);
    }
}
