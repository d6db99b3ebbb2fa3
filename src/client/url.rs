//! Failover URLs, as ActiveMQ writes them.
//!
//! `tcp://host:port` (or `ssl://host:port`, TLS), `failover:(uri,uri,...)?options`, `failover://(...)?options` and
//! `failover:uri,uri?options`. Options use ActiveMQ's names and defaults
//! (`FailoverTransport.java`); `backOffMultiplier` (the Ruby gem's and stompest's name) is
//! accepted for `reconnectDelayExponent`. An unknown option or a malformed URL is an error
//! that names it: a misspelt `randomize=false` silently ignored would connect clients to
//! the slave first.

use std::fmt;
use std::time::Duration;

/// One broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
    /// `ssl://` (ActiveMQ's scheme) or `wss://`: TLS, the broker's certificate checked
    /// against the CA in `MIRRORMQ_CA`.
    pub tls: bool,
    /// `ws://` or `wss://`: STOMP over WebSocket, upgrading at this path (`/` without one).
    pub websocket: Option<String>,
}

impl Address {
    pub fn socket_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match (self.tls, self.websocket.is_some()) {
            (false, false) => "tcp",
            (true, false) => "ssl",
            (false, true) => "ws",
            (true, true) => "wss",
        };
        let path = self.websocket.as_deref().unwrap_or_default();
        write!(f, "{scheme}://{}:{}{path}", self.host, self.port)
    }
}

/// The failover transport's options, ActiveMQ's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Shuffle the list before each pass; false tries the addresses in order (master first).
    pub randomize: bool,
    /// Wait before the first reconnect after a working connection was lost.
    pub initial_reconnect_delay: Duration,
    /// Cap on the wait between passes.
    pub max_reconnect_delay: Duration,
    pub use_exponential_backoff: bool,
    pub reconnect_delay_exponent: f64,
    /// Failed passes after a loss before giving up; `None` = forever (ActiveMQ's -1).
    pub max_reconnect_attempts: Option<u32>,
    /// The same before the first connection.
    pub startup_max_reconnect_attempts: Option<u32>,
    /// A request (a send waiting for its receipt, included) that takes longer fails with
    /// `ClientError::Timeout`, connected or not; `None` = wait (ActiveMQ's -1). The
    /// request itself is not withdrawn: a send may still be stored.
    pub timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            randomize: true,
            initial_reconnect_delay: Duration::from_millis(10),
            max_reconnect_delay: Duration::from_millis(30_000),
            use_exponential_backoff: true,
            reconnect_delay_exponent: 2.0,
            max_reconnect_attempts: None,
            startup_max_reconnect_attempts: None,
            timeout: None,
        }
    }
}

/// A parsed connection URL: the addresses in order, and the options.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverUrl {
    pub addresses: Vec<Address>,
    pub options: Options,
}

/// A URL that cannot be used, with the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL '{url}': {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

impl FailoverUrl {
    pub fn parse(url: &str) -> Result<FailoverUrl, UrlError> {
        let fail = |reason: String| UrlError {
            url: url.to_string(),
            reason,
        };
        let text = url.trim();
        let Some(rest) = text.strip_prefix("failover:") else {
            let address = parse_address(text).map_err(fail)?;
            return Ok(FailoverUrl {
                addresses: vec![address],
                options: Options::default(),
            });
        };
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (list, query) = if let Some(inner) = rest.strip_prefix('(') {
            let close = inner
                .find(')')
                .ok_or_else(|| fail("'(' without a closing ')'".into()))?;
            let after = &inner[close + 1..];
            let query = match after {
                "" => None,
                q if q.starts_with('?') => Some(&q[1..]),
                other => return Err(fail(format!("unexpected '{other}' after ')'"))),
            };
            (&inner[..close], query)
        } else {
            match rest.split_once('?') {
                Some((list, query)) => (list, Some(query)),
                None => (rest, None),
            }
        };
        let addresses = list
            .split(',')
            .map(|uri| parse_address(uri.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        if addresses.is_empty() {
            return Err(fail("no addresses".into()));
        }
        let mut options = Options::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| fail(format!("option '{pair}' has no value")))?;
            set_option(&mut options, name, value).map_err(fail)?;
        }
        Ok(FailoverUrl { addresses, options })
    }
}

fn parse_address(uri: &str) -> Result<Address, String> {
    // Scheme, TLS, WebSocket.
    let (rest, tls, websocket) = [
        ("tcp://", false, false),
        ("stomp://", false, false),
        ("ssl://", true, false),
        ("stomp+ssl://", true, false),
        ("ws://", false, true),
        ("wss://", true, true),
    ]
    .iter()
    .find_map(|(scheme, tls, ws)| uri.strip_prefix(scheme).map(|rest| (rest, *tls, *ws)))
    .ok_or_else(|| format!("'{uri}' is not a tcp://, ssl://, ws:// or wss:// HOST:PORT address"))?;
    // Per-address options (tcp://h:p?x=y) are not supported; say so rather than drop them.
    if rest.contains('?') {
        return Err(format!(
            "options on a single address ('{uri}') are not supported; put them after the list"
        ));
    }
    // A WebSocket address may name the upgrade's path.
    let (rest, path) = match rest.find('/') {
        Some(at) if websocket => (&rest[..at], rest[at..].to_string()),
        Some(_) => {
            return Err(format!(
                "'{uri}' has a path; only ws:// and wss:// take one"
            ))
        }
        None => (rest, "/".to_string()),
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("'{uri}' has no port"))?;
    if host.is_empty() {
        return Err(format!("'{uri}' has no host"));
    }
    let port = port
        .parse()
        .map_err(|_| format!("'{uri}' has an invalid port"))?;
    Ok(Address {
        host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port,
        tls,
        websocket: websocket.then_some(path),
    })
}

fn set_option(options: &mut Options, name: &str, value: &str) -> Result<(), String> {
    let bool_value = || {
        value
            .parse::<bool>()
            .map_err(|_| format!("option {name}={value}: expected true or false"))
    };
    let millis = || {
        value
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("option {name}={value}: expected milliseconds"))
    };
    // -1 means "no limit", as in ActiveMQ.
    let attempts = || match value.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(n) if n >= 0 => Ok(Some(n as u32)),
        _ => Err(format!("option {name}={value}: expected -1 or a count")),
    };
    match name {
        "randomize" => options.randomize = bool_value()?,
        "initialReconnectDelay" => options.initial_reconnect_delay = millis()?,
        "maxReconnectDelay" => options.max_reconnect_delay = millis()?,
        "useExponentialBackOff" => options.use_exponential_backoff = bool_value()?,
        "reconnectDelayExponent" | "backOffMultiplier" => {
            options.reconnect_delay_exponent = match value.parse::<f64>() {
                Ok(x) if x >= 1.0 => x,
                _ => {
                    return Err(format!(
                        "option {name}={value}: expected a number of at least 1"
                    ))
                }
            }
        }
        "maxReconnectAttempts" => options.max_reconnect_attempts = attempts()?,
        "startupMaxReconnectAttempts" => options.startup_max_reconnect_attempts = attempts()?,
        "timeout" => {
            options.timeout = match value.parse::<i64>() {
                Ok(-1) => None,
                Ok(ms) if ms >= 0 => Some(Duration::from_millis(ms as u64)),
                _ => {
                    return Err(format!(
                        "option {name}={value}: expected -1 or milliseconds"
                    ))
                }
            }
        }
        other => return Err(format!("unknown option '{other}'")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(url: &FailoverUrl) -> Vec<String> {
        url.addresses.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn activemq_documentation_examples() {
        let pure = FailoverUrl::parse(
            "failover://(tcp://masterhost:61616,tcp://slavehost:61616)?randomize=false",
        )
        .unwrap();
        assert_eq!(
            addresses(&pure),
            ["tcp://masterhost:61616", "tcp://slavehost:61616"]
        );
        assert!(!pure.options.randomize);
        let plain = FailoverUrl::parse(
            "failover:(tcp://localhost:61616,tcp://remotehost:61616)?initialReconnectDelay=100",
        )
        .unwrap();
        assert_eq!(
            plain.options.initial_reconnect_delay,
            Duration::from_millis(100)
        );
        assert!(plain.options.randomize, "ActiveMQ's default");
        let bare = FailoverUrl::parse("failover:tcp://a:1,tcp://b:2").unwrap();
        assert_eq!(addresses(&bare), ["tcp://a:1", "tcp://b:2"]);
        let secure = FailoverUrl::parse("failover:(ssl://a:1,stomp+ssl://b:2,tcp://c:3)").unwrap();
        assert_eq!(addresses(&secure), ["ssl://a:1", "ssl://b:2", "tcp://c:3"]);
        assert!(secure.addresses[0].tls && !secure.addresses[2].tls);
        let web = FailoverUrl::parse("failover:(ws://a:1,wss://b:2/stomp,ws://[::1]:3)").unwrap();
        assert_eq!(
            addresses(&web),
            ["ws://a:1/", "wss://b:2/stomp", "ws://::1:3/"]
        );
        assert_eq!(web.addresses[1].websocket.as_deref(), Some("/stomp"));
        assert!(web.addresses[1].tls && !web.addresses[0].tls);
        assert!(
            FailoverUrl::parse("tcp://a:1/path").is_err(),
            "only ws takes a path"
        );
        let single = FailoverUrl::parse("tcp://127.0.0.1:61613").unwrap();
        assert_eq!(single.options, Options::default());
        let all = FailoverUrl::parse(
            "failover:(tcp://a:1)?randomize=false&initialReconnectDelay=5&maxReconnectDelay=1000&useExponentialBackOff=false&backOffMultiplier=1.5&maxReconnectAttempts=3&startupMaxReconnectAttempts=-1&timeout=2000",
        )
        .unwrap()
        .options;
        assert_eq!(all.max_reconnect_delay, Duration::from_millis(1000));
        assert!(!all.use_exponential_backoff);
        assert_eq!(all.reconnect_delay_exponent, 1.5);
        assert_eq!(all.max_reconnect_attempts, Some(3));
        assert_eq!(all.startup_max_reconnect_attempts, None);
        assert_eq!(all.timeout, Some(Duration::from_millis(2000)));
        let defaults = Options::default();
        assert_eq!(defaults.max_reconnect_attempts, None);
        assert_eq!(defaults.reconnect_delay_exponent, 2.0);
    }

    #[test]
    fn every_error_names_what_is_wrong() {
        let cases = [
            (
                "failover:(tcp://a:1)?randomise=false",
                "unknown option 'randomise'",
            ),
            ("failover:(tcp://a:1)?randomize=maybe", "randomize=maybe"),
            (
                "failover:(tcp://a:1)?maxReconnectAttempts=-5",
                "maxReconnectAttempts=-5",
            ),
            ("failover:(tcp://a:1)?timeout", "has no value"),
            ("failover:(tcp://a:1", "closing"),
            ("failover:(tcp://a:1)x", "after ')'"),
            ("failover:(tcp://a:1,udp://b:2)", "udp://b:2"),
            ("failover:(tcp://a)", "no port"),
            ("failover:(tcp://:5)", "no host"),
            ("failover:(tcp://a:99999)", "invalid port"),
            ("failover:(tcp://a:1?x=1)", "not supported"),
            ("http://a:1", "not a tcp://"),
            ("failover:()", "not a tcp://"),
            ("failover:(tcp://a:1)?backOffMultiplier=0.5", "at least 1"),
        ];
        for (url, fragment) in cases {
            let error = FailoverUrl::parse(url).unwrap_err().to_string();
            assert!(
                error.contains(fragment) && error.contains(url),
                "{url}: {error}"
            );
        }
    }
}
