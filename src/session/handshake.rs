//! CONNECT negotiation: version, heart-beats, authentication. Pure: a frame in, the
//! CONNECTED (or ERROR) frame out, so every case is a table test.

use std::time::Duration;

use crate::config::Config;
use crate::stomp::{Command, Frame, Version};

/// What a successful CONNECT settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub version: Version,
    /// Send something at least this often (our heart-beats to the client).
    pub send_every: Option<Duration>,
    /// Expect something at least this often from the client.
    pub expect_every: Option<Duration>,
}

const SUPPORTED: &str = "1.0,1.1,1.2";

/// Answers a CONNECT or STOMP frame; `session` names the connection in CONNECTED.
pub fn negotiate(
    frame: &Frame,
    config: &Config,
    session: &str,
) -> Result<(Negotiated, Frame), Frame> {
    if !frame.command.is_connect() || frame.command == Command::Connected {
        return Err(Frame::error(format!(
            "expected CONNECT or STOMP, got {}",
            frame.command.as_str()
        )));
    }
    let version = match frame.header("accept-version") {
        None => Version::V1_0,
        Some(list) => list
            .split(',')
            .filter_map(|v| Version::parse(v.trim()))
            .max()
            .ok_or_else(|| {
                Frame::error(format!(
                    "unsupported protocol version '{list}'; supported: {SUPPORTED}"
                ))
                .with_header("version", SUPPORTED)
            })?,
    };
    let (client_sends, client_wants) = match frame.header("heart-beat") {
        None => (0, 0),
        Some(text) => parse_heart_beat(text).ok_or_else(|| {
            Frame::error(format!(
                "invalid heart-beat header '{text}': expected two non-negative integers 'cx,cy'"
            ))
        })?,
    };
    if config.requires_login() {
        let login = frame.header("login").unwrap_or("");
        let passcode = frame.header("passcode").unwrap_or("");
        if !config.authenticate(login, passcode) {
            return Err(Frame::error(
                "access refused: unknown login or wrong passcode",
            ));
        }
    }
    // Honour what the client asks for, but never faster than our floor.
    let floor = config.stomp.min_heartbeat_ms;
    let we_send = if client_wants == 0 {
        0
    } else {
        client_wants.max(floor)
    };
    let we_expect = if client_sends == 0 {
        0
    } else {
        client_sends.max(floor)
    };
    let negotiated = Negotiated {
        version,
        send_every: (we_send > 0).then(|| Duration::from_millis(we_send)),
        expect_every: (we_expect > 0).then(|| Duration::from_millis(we_expect)),
    };
    let connected = Frame::new(Command::Connected)
        .with_header("version", version.as_str())
        .with_header("session", session)
        .with_header("server", format!("mirrormq/{}", env!("CARGO_PKG_VERSION")))
        .with_header("heart-beat", format!("{we_send},{we_expect}"));
    Ok((negotiated, connected))
}

fn parse_heart_beat(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(users: bool) -> Config {
        let mut text = String::from("[broker]\nname = \"t\"\ndata_dir = \"d\"\n");
        if users {
            text.push_str("[[users]]\nname = \"admin\"\npassword = \"pw\"\n");
        }
        Config::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn connect(headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new(Command::Connect), |f, (k, v)| {
                f.with_header(*k, *v)
            })
    }

    #[test]
    fn version_negotiation_picks_the_highest_common_version() {
        let cases: &[(Option<&str>, Option<Version>)] = &[
            (None, Some(Version::V1_0)),
            (Some("1.0"), Some(Version::V1_0)),
            (Some("1.0,1.1"), Some(Version::V1_1)),
            (Some("1.1,1.2"), Some(Version::V1_2)),
            (Some("1.0,10.1"), Some(Version::V1_0)),
            (Some("9.0,10.1"), None),
        ];
        for (accept, expected) in cases {
            let frame = match accept {
                Some(a) => connect(&[("accept-version", a)]),
                None => connect(&[]),
            };
            match (negotiate(&frame, &config(false), "s"), expected) {
                (Ok((n, connected)), Some(v)) => {
                    assert_eq!(n.version, *v);
                    assert_eq!(connected.header("version"), Some(v.as_str()));
                }
                (Err(error), None) => {
                    assert_eq!(error.header("version"), Some(SUPPORTED));
                    assert!(error.header("message").unwrap().contains("version"));
                }
                (other, _) => panic!("{accept:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn heart_beats_are_mirrored_with_a_floor_and_bad_ones_refused() {
        let frame = connect(&[("accept-version", "1.2"), ("heart-beat", "1000,5")]);
        let (n, connected) = negotiate(&frame, &config(false), "s").unwrap();
        assert_eq!(n.expect_every, Some(Duration::from_millis(1000)));
        assert_eq!(n.send_every, Some(Duration::from_millis(100)));
        assert_eq!(connected.header("heart-beat"), Some("100,1000"));
        let silent = negotiate(&connect(&[("heart-beat", "0,0")]), &config(false), "s")
            .unwrap()
            .0;
        assert_eq!((silent.send_every, silent.expect_every), (None, None));
        for bad in ["0", "T,0", "100,10,50", "-1,5", ""] {
            assert!(
                negotiate(&connect(&[("heart-beat", bad)]), &config(false), "s").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn login_is_checked_only_when_users_are_configured() {
        let good = connect(&[("login", "admin"), ("passcode", "pw")]);
        let bad = connect(&[("login", "admin"), ("passcode", "nope")]);
        assert!(negotiate(&good, &config(true), "s").is_ok());
        let refused = negotiate(&bad, &config(true), "s").unwrap_err();
        assert!(refused
            .header("message")
            .unwrap()
            .contains("access refused"));
        assert!(negotiate(&connect(&[]), &config(true), "s").is_err());
        assert!(negotiate(&bad, &config(false), "s").is_ok());
    }

    #[test]
    fn only_connect_or_stomp_opens_a_session() {
        assert!(negotiate(&Frame::new(Command::Stomp), &config(false), "s").is_ok());
        assert!(negotiate(&Frame::new(Command::Send), &config(false), "s").is_err());
    }
}
