//! STOMP frame encoder: appends the wire bytes of one frame to a buffer.
//!
//! Must not: do I/O, fail, or trust a `content-length` header from the frame
//! (the body's real length is the only one ever written).
//!
//! Invariants: output uses LF only (valid in every version); header names and
//! values are escaped with the same table the parser unescapes with; SEND,
//! MESSAGE and ERROR always end their headers with `content-length`, so any
//! body (NULs included) survives; other commands never carry a body.
//!
//! Not representable, by the protocol: LF or CR in 1.0 headers, a CR ending a
//! 1.1 header line, colons or LFs in CONNECTED headers. They are written as
//! they are; the broker must not put such text there.

use std::io::Write;

use super::frame::{Frame, HeaderCoding, Version};

const CONTENT_LENGTH: &str = "content-length";
/// Room for `content-length:` + a 20-digit length + LF, plus the blank line and NUL.
const FIXED_OVERHEAD: usize = 48;

/// Appends the wire bytes of `frame` to `out` for `version`.
pub fn encode(frame: &Frame, version: Version, out: &mut Vec<u8>) {
    let coding = HeaderCoding::for_frame(frame.command, version);
    let carries_body = frame.command.has_body();
    let headers_len: usize = frame
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 2)
        .sum();
    let body_len = if carries_body { frame.body.len() } else { 0 };
    out.reserve(frame.command.as_str().len() + headers_len + body_len + FIXED_OVERHEAD);

    out.extend_from_slice(frame.command.as_str().as_bytes());
    out.push(b'\n');
    for (name, value) in &frame.headers {
        if name == CONTENT_LENGTH {
            continue;
        }
        write_header_text(name, coding, out);
        out.push(b':');
        write_header_text(value, coding, out);
        out.push(b'\n');
    }
    if carries_body {
        // io::Write on a Vec<u8> cannot fail.
        let _ = writeln!(out, "{CONTENT_LENGTH}:{}", frame.body.len());
    }
    out.push(b'\n');
    if carries_body {
        out.extend_from_slice(&frame.body);
    }
    out.push(0);
}

/// Copies runs of plain bytes in one go; only escaped bytes are handled singly.
fn write_header_text(text: &str, coding: HeaderCoding, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    if !coding.may_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut plain_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if let Some(code) = coding.escape_code(byte) {
            out.extend_from_slice(&bytes[plain_start..index]);
            out.extend_from_slice(&[b'\\', code]);
            plain_start = index + 1;
        }
    }
    out.extend_from_slice(&bytes[plain_start..]);
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Command, Frame, ParseLimits, Parsed, Version};
    use super::encode;

    const VERSIONS: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    fn encoded(frame: &Frame, version: Version) -> Vec<u8> {
        let mut out = Vec::new();
        encode(frame, version, &mut out);
        out
    }

    #[test]
    fn encodes_exact_wire_bytes() {
        let send = Frame::new(Command::Send)
            .with_header("destination", "/queue/a")
            .with_header("content-length", "999")
            .with_header("key", "a:b\nc\\d\re")
            .with_body("hello");
        let connected = Frame::new(Command::Connected)
            .with_header("session", "ID:host-1:2")
            .with_header("version", "1.2");
        let subscribe = Frame::new(Command::Subscribe)
            .with_header("id", "1")
            .with_body("ignored");
        let cases: [(&Frame, Version, &[u8]); 6] = [
            (
                &send,
                Version::V1_2,
                b"SEND\ndestination:/queue/a\nkey:a\\cb\\nc\\\\d\\re\ncontent-length:5\n\nhello\0",
            ),
            (
                &send,
                Version::V1_1,
                b"SEND\ndestination:/queue/a\nkey:a\\cb\\nc\\\\d\re\ncontent-length:5\n\nhello\0",
            ),
            (
                &send,
                Version::V1_0,
                b"SEND\ndestination:/queue/a\nkey:a:b\nc\\d\re\ncontent-length:5\n\nhello\0",
            ),
            (
                &connected,
                Version::V1_2,
                b"CONNECTED\nsession:ID:host-1:2\nversion:1.2\n\n\0",
            ),
            (&subscribe, Version::V1_2, b"SUBSCRIBE\nid:1\n\n\0"),
            (
                &Frame::new(Command::Error),
                Version::V1_2,
                b"ERROR\ncontent-length:0\n\n\0",
            ),
        ];
        for (frame, version, wire) in cases {
            let got = encoded(frame, version);
            assert_eq!(got, wire, "{:?}", String::from_utf8_lossy(&got));
        }
    }

    #[test]
    fn appends_to_what_the_buffer_holds() {
        let mut out = b"\n".to_vec();
        encode(&Frame::new(Command::Disconnect), Version::V1_2, &mut out);
        assert_eq!(out, b"\nDISCONNECT\n\n\0");
    }

    /// What the peer parses back: the real content-length, bodies only where allowed.
    fn as_received(frame: &Frame) -> Frame {
        let mut expected = Frame::new(frame.command);
        for (name, value) in &frame.headers {
            if name != "content-length" {
                expected = expected.with_header(name, value);
            }
        }
        if frame.command.has_body() {
            let length = frame.body.len().to_string();
            expected = expected
                .with_header("content-length", length)
                .with_body(frame.body.clone());
        }
        expected
    }

    /// Each frame with the lowest version whose header coding can carry it.
    fn round_trip_table() -> Vec<(Frame, Version)> {
        let message = |name: &str, value: &str| {
            Frame::new(Command::Message)
                .with_header("destination", "/queue/a")
                .with_header(name, value)
                .with_body("m")
        };
        vec![
            (
                Frame::new(Command::Send)
                    .with_header("destination", "/q")
                    .with_body(&b"a\0b\0"[..]),
                Version::V1_0,
            ),
            (
                Frame::new(Command::Send)
                    .with_header("content-length", "7")
                    .with_body("abc"),
                Version::V1_0,
            ),
            (
                Frame::new(Command::Send)
                    .with_header("x", "1")
                    .with_header("x", "2"),
                Version::V1_0,
            ),
            (
                Frame::new(Command::Send)
                    .with_header("😀", "v😀")
                    .with_body("😀"),
                Version::V1_0,
            ),
            (
                Frame::new(Command::Connect)
                    .with_header("passcode", "a:b\\c")
                    .with_header("host", " / "),
                Version::V1_0,
            ),
            (
                Frame::new(Command::Connected).with_header("session", "ID:h-1:2"),
                Version::V1_0,
            ),
            (
                Frame::new(Command::Subscribe)
                    .with_header("id", "0")
                    .with_header("ack", "client"),
                Version::V1_0,
            ),
            (
                Frame::new(Command::Ack)
                    .with_header("id", "7")
                    .with_body("dropped"),
                Version::V1_0,
            ),
            (
                Frame::new(Command::Error)
                    .with_header("message", "bad")
                    .with_body("trace"),
                Version::V1_0,
            ),
            (
                Frame::new(Command::Receipt).with_header("receipt-id", "r-1"),
                Version::V1_0,
            ),
            (Frame::new(Command::Disconnect), Version::V1_0),
            (message("message-id", "ID:host:1"), Version::V1_1),
            (message("colon:name", "a:b"), Version::V1_1),
            (message("linefeed", "a\nb"), Version::V1_1),
            (message("backslash\\", "\\\\"), Version::V1_1),
            (message("padded", "  x  "), Version::V1_1),
            (message("carriagereturn", "a\r"), Version::V1_2),
        ]
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let limits = ParseLimits::default();
        for (frame, lowest) in round_trip_table() {
            for version in VERSIONS.into_iter().filter(|version| *version >= lowest) {
                let wire = encoded(&frame, version);
                let parsed = parse(&wire, version, &limits);
                let expected = Parsed::Frame {
                    frame: as_received(&frame),
                    consumed: wire.len(),
                };
                assert_eq!(parsed, Ok(expected), "{frame:?} in {version:?}");
            }
        }
    }

    #[test]
    fn encoded_stream_parses_back_byte_by_byte() {
        let limits = ParseLimits::default();
        let table = round_trip_table();
        let mut wire = Vec::new();
        for (frame, _) in &table {
            encode(frame, Version::V1_2, &mut wire);
            wire.push(b'\n');
        }
        let mut pending = Vec::new();
        let mut received = Vec::new();
        for &byte in &wire {
            pending.push(byte);
            match parse(&pending, Version::V1_2, &limits) {
                Ok(Parsed::Frame { frame, consumed }) => {
                    received.push(frame);
                    pending.drain(..consumed);
                }
                Ok(Parsed::HeartBeat { consumed }) => {
                    pending.drain(..consumed);
                }
                Ok(Parsed::Incomplete) => {}
                Err(error) => panic!("{error}"),
            }
        }
        let expected: Vec<Frame> = table.iter().map(|(frame, _)| as_received(frame)).collect();
        assert_eq!(received, expected);
        assert!(pending.is_empty());
    }
}
