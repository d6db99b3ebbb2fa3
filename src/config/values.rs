//! The kinds of value a config file spells as text: a `tcp://HOST:PORT` endpoint, a byte
//! size such as `"32MiB"`, and a secret. Each parses from the TOML string (or, for a
//! size, a plain number) and says what it expected when it cannot.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A `tcp://HOST:PORT` address. Port 0 asks the OS for a free port (tests use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(text: &str) -> std::result::Result<Endpoint, String> {
        let rest = text
            .strip_prefix("tcp://")
            .ok_or_else(|| format!("'{text}' is not a tcp://HOST:PORT address"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("'{text}' has no port (tcp://HOST:PORT)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(format!("'{text}' has no valid host (tcp://HOST:PORT)"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("'{text}' has an invalid port (0-65535)"))?;
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port`, as the socket functions take it.
    pub fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp://{}", self.socket_addr())
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Endpoint::parse(&text).map_err(de::Error::custom)
    }
}

/// A size in bytes, written as a number or as "64KiB", "10MiB", "1GiB".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> std::result::Result<ByteSize, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("'{text}' is not a size (e.g. 512KiB, 10MiB, 1GiB)"))?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit '{other}' (use B, KiB, MiB or GiB)"
                ))
            }
        };
        n.checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("'{text}' is too large"))
    }

    pub fn bytes(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(de::Error::custom),
        }
    }
}

/// A password: a string that never reaches a log line, not even through `{:?}`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}
