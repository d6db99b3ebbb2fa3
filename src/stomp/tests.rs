//! Codec tests: parser corner cases from the broker test suites (ActiveMQ,
//! RabbitMQ), limits just under and just over, and encode→parse round trips.
//!
//! Must not: test broker semantics; everything here is bytes in, frames out.

use super::*;

const VERSIONS: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

#[derive(Debug, PartialEq)]
enum Outcome {
    Frame(Frame),
    HeartBeat(usize),
    Incomplete,
    Error(ParseError),
}

fn outcome(wire: &[u8], version: Version, limits: &ParseLimits) -> Outcome {
    match parse(wire, version, limits) {
        Ok(Parsed::Frame { frame, consumed }) => {
            assert_eq!(
                consumed,
                wire.len(),
                "frame should use the whole of {wire:?}"
            );
            Outcome::Frame(frame)
        }
        Ok(Parsed::HeartBeat { consumed }) => Outcome::HeartBeat(consumed),
        Ok(Parsed::Incomplete) => Outcome::Incomplete,
        Err(error) => Outcome::Error(error),
    }
}

fn parse_error(wire: &[u8], version: Version) -> ParseError {
    match outcome(wire, version, &ParseLimits::default()) {
        Outcome::Error(error) => error,
        other => panic!("{wire:?} in {version:?}: expected an error, got {other:?}"),
    }
}

fn parse_frame(wire: &[u8], version: Version) -> Frame {
    match outcome(wire, version, &ParseLimits::default()) {
        Outcome::Frame(frame) => frame,
        other => panic!("{wire:?} in {version:?}: expected a frame, got {other:?}"),
    }
}

#[derive(Debug, Default, PartialEq)]
struct Stream {
    frames: Vec<Frame>,
    heart_beat_bytes: usize,
}

/// Parses all that `buf` holds; returns how many bytes that used.
fn drain(buf: &[u8], version: Version, stream: &mut Stream) -> usize {
    let mut offset = 0;
    loop {
        match parse(&buf[offset..], version, &ParseLimits::default()) {
            Ok(Parsed::Frame { frame, consumed }) => {
                stream.frames.push(frame);
                offset += consumed;
            }
            Ok(Parsed::HeartBeat { consumed }) => {
                stream.heart_beat_bytes += consumed;
                offset += consumed;
            }
            Ok(Parsed::Incomplete) => return offset,
            Err(error) => panic!("{:?}: {error}", &buf[offset..]),
        }
    }
}

/// Delivers `wire` as a socket would, cut at `cuts`, keeping unparsed bytes.
fn feed(wire: &[u8], cuts: impl IntoIterator<Item = usize>, version: Version) -> Stream {
    let mut stream = Stream::default();
    let mut pending = Vec::new();
    let mut fed = 0;
    for cut in cuts.into_iter().chain([wire.len()]) {
        pending.extend_from_slice(&wire[fed..cut]);
        fed = cut;
        let consumed = drain(&pending, version, &mut stream);
        pending.drain(..consumed);
    }
    assert!(pending.is_empty(), "left over: {pending:?}");
    stream
}

fn send(destination: &str) -> Frame {
    Frame::new(Command::Send).with_header("destination", destination)
}

const STREAM_1_2: &[u8] = b"\n\r\n\
CONNECT\r\naccept-version:1.2\r\nhost:/\r\n\r\n\0\r\n\
SEND\ndestination:/queue/a\ncontent-length:5\n\nab\0cd\0\n\n\
SEND\ndestination:/queue/b\\c\n\nhello\0\
MESSAGE\r\nsubscription:1\r\nmessage-id:ID\\cx\r\n\r\nbody \xF0\x9F\x98\x80\0\n";

fn stream_1_2_expected() -> Stream {
    Stream {
        frames: vec![
            Frame::new(Command::Connect)
                .with_header("accept-version", "1.2")
                .with_header("host", "/"),
            send("/queue/a")
                .with_header("content-length", "5")
                .with_body(&b"ab\0cd"[..]),
            send("/queue/b:").with_body("hello"),
            Frame::new(Command::Message)
                .with_header("subscription", "1")
                .with_header("message-id", "ID:x")
                .with_body("body 😀"),
        ],
        heart_beat_bytes: 3 + 2 + 2 + 1,
    }
}

#[test]
fn many_frames_in_one_buffer() {
    assert_eq!(feed(STREAM_1_2, [], Version::V1_2), stream_1_2_expected());
}

#[test]
fn stream_split_at_every_byte_boundary() {
    for cut in 0..=STREAM_1_2.len() {
        assert_eq!(
            feed(STREAM_1_2, [cut], Version::V1_2),
            stream_1_2_expected(),
            "cut at {cut}"
        );
    }
}

#[test]
fn stream_fed_in_chunks() {
    for chunk in [1, 2, 3, 7, 191] {
        let cuts = (chunk..STREAM_1_2.len()).step_by(chunk);
        assert_eq!(
            feed(STREAM_1_2, cuts, Version::V1_2),
            stream_1_2_expected(),
            "chunk {chunk}"
        );
    }
}

#[test]
fn every_proper_prefix_of_a_frame_is_incomplete() {
    let frames: [&[u8]; 4] = [
        b"SEND\ndestination:/q\ncontent-length:3\n\na\0b\0",
        b"SEND\r\ndestination:/q\r\n\r\nabc\0",
        b"CONNECT\naccept-version:1.2\n\n\0",
        b"DISCONNECT\n\n\0",
    ];
    for wire in frames {
        for end in 0..wire.len() {
            let prefix = &wire[..end];
            let got = outcome(prefix, Version::V1_2, &ParseLimits::default());
            assert_eq!(got, Outcome::Incomplete, "prefix {prefix:?}");
        }
    }
}

#[test]
fn lf_and_crlf_framing_give_the_same_frame() {
    let lf: &[u8] = b"SEND\ndestination:/q\nx:y\n\nbody\0";
    let crlf: &[u8] = b"SEND\r\ndestination:/q\r\nx:y\r\n\r\nbody\0";
    let expected = send("/q").with_header("x", "y").with_body("body");
    for version in VERSIONS {
        assert_eq!(parse_frame(lf, version), expected, "{version:?}");
        assert_eq!(parse_frame(crlf, version), expected, "{version:?}");
    }
}

#[test]
fn heart_beats_and_eols_around_frames() {
    let limits = ParseLimits::default();
    let cases: [(&[u8], Outcome); 8] = [
        (b"", Outcome::Incomplete),
        (b"\n", Outcome::HeartBeat(1)),
        (b"\r\n\n\r\n", Outcome::HeartBeat(5)),
        (b"\n\r", Outcome::HeartBeat(1)),
        (b"\r", Outcome::Incomplete),
        (b"\n\nSEND\n\n\0", Outcome::HeartBeat(2)),
        (b"\rX", Outcome::Incomplete),
        (
            b"\rX\n",
            Outcome::Error(ParseError::UnknownCommand("\rX".into())),
        ),
    ];
    for (wire, expected) in cases {
        assert_eq!(outcome(wire, Version::V1_2, &limits), expected, "{wire:?}");
    }
    let wire = b"SEND\n\nx\0\n\r\n";
    let Ok(Parsed::Frame { consumed, .. }) = parse(wire, Version::V1_2, &limits) else {
        panic!("expected a frame");
    };
    assert_eq!(consumed, 8, "the EOLs after the NUL are not the frame's");
    assert_eq!(
        outcome(&wire[consumed..], Version::V1_2, &limits),
        Outcome::HeartBeat(3)
    );
}

#[test]
fn content_length_body_may_hold_nuls() {
    let frame = parse_frame(b"SEND\ncontent-length:5\n\na\0b\0c\0", Version::V1_2);
    assert_eq!(frame.body, &b"a\0b\0c"[..]);
    assert_eq!(frame.header("content-length"), Some("5"), "kept unchanged");
    let empty = parse_frame(b"SEND\ncontent-length:0\n\n\0", Version::V1_1);
    assert!(empty.body.is_empty());
}

#[test]
fn content_length_body_without_trailing_nul_is_fatal() {
    assert_eq!(
        parse_error(b"SEND\ncontent-length:2\n\nabc\0", Version::V1_2),
        ParseError::MissingNul
    );
    let waiting = outcome(
        b"SEND\ncontent-length:5\n\nabc",
        Version::V1_2,
        &ParseLimits::default(),
    );
    assert_eq!(waiting, Outcome::Incomplete);
}

#[test]
fn bad_content_length_is_fatal_before_the_body_arrives() {
    let limits = ParseLimits {
        max_frame_size: 100,
        ..ParseLimits::default()
    };
    let too_large = ParseError::FrameTooLarge { limit: 100 };
    let invalid = |value: &str| ParseError::InvalidContentLength(value.into());
    let cases = [
        (Version::V1_2, "-1", invalid("-1")),
        (Version::V1_2, "abc", invalid("abc")),
        (Version::V1_2, "", invalid("")),
        (Version::V1_2, "+5", invalid("+5")),
        (Version::V1_2, "1.5", invalid("1.5")),
        (Version::V1_1, " 5", invalid(" 5")),
        (Version::V1_0, "-1", invalid("-1")),
        (Version::V1_2, "100", too_large.clone()),
        (Version::V1_2, "99999999999999999999999999", too_large),
    ];
    for (version, value, expected) in cases {
        let headers_only = format!("SEND\ncontent-length:{value}\n\n");
        let got = outcome(headers_only.as_bytes(), version, &limits);
        assert_eq!(got, Outcome::Error(expected), "{value:?} in {version:?}");
    }
    let message = parse_error(b"SEND\ncontent-length:-1\n\n\0", Version::V1_2).to_string();
    assert!(message.contains("may not be negative"), "{message}");
}

#[test]
fn v1_0_trims_values_and_later_versions_do_not() {
    let wire = b"SEND\nkey:  value \t\ncontent-length: 2 \n\nab\0";
    assert_eq!(
        parse_frame(wire, Version::V1_0).header("key"),
        Some("value")
    );
    for version in [Version::V1_1, Version::V1_2] {
        let frame = parse_frame(b"SEND\nkey:  value \t\n\n\0", version);
        assert_eq!(frame.header("key"), Some("  value \t"), "{version:?}");
    }
}

type DecodedHeader = Result<(String, String), ParseError>;

#[test]
fn header_escapes_per_version() {
    let ok = |name: &str, value: &str| Ok((name.to_owned(), value.to_owned()));
    let bad = |sequence: &str, header: &str| {
        Err(ParseError::InvalidEscape {
            sequence: sequence.into(),
            header: header.into(),
        })
    };
    let cases: [(Version, &str, DecodedHeader); 14] = [
        (Version::V1_2, r"colon:\c", ok("colon", ":")),
        (Version::V1_2, r"linefeed:\n", ok("linefeed", "\n")),
        (
            Version::V1_2,
            r"carriagereturn:\r",
            ok("carriagereturn", "\r"),
        ),
        (Version::V1_2, r"backslash:\\", ok("backslash", "\\")),
        (Version::V1_2, r"a\cb:c\nd:e", ok("a:b", "c\nd:e")),
        (Version::V1_2, r"tab:\t", bad(r"\t", r"tab:\t")),
        (Version::V1_2, r"trailing:x\", bad(r"\", r"trailing:x\")),
        (Version::V1_1, r"colon:\c\\\n", ok("colon", ":\\\n")),
        (
            Version::V1_1,
            r"carriagereturn:\r",
            bad(r"\r", r"carriagereturn:\r"),
        ),
        (Version::V1_1, r"tab:\t", bad(r"\t", r"tab:\t")),
        (Version::V1_1, r"na\me:v", bad(r"\m", r"na\me:v")),
        (Version::V1_0, r"path:C:\dir", ok("path", r"C:\dir")),
        (Version::V1_0, r"tab:\t", ok("tab", r"\t")),
        (Version::V1_0, r"colon:\c", ok("colon", r"\c")),
    ];
    for (version, line, expected) in cases {
        let wire = format!("SEND\n{line}\n\n\0");
        let got = match outcome(wire.as_bytes(), version, &ParseLimits::default()) {
            Outcome::Frame(mut frame) => Ok(frame.headers.remove(0)),
            Outcome::Error(error) => Err(error),
            other => panic!("{other:?}"),
        };
        assert_eq!(got, expected, "{line} in {version:?}");
    }
}

#[test]
fn connect_frames_are_never_unescaped() {
    for version in VERSIONS {
        for command in ["CONNECT", "STOMP", "CONNECTED"] {
            let wire =
                format!("{command}\nlogin:x\\cy\npasscode:a:b\nhost: / \nsession:ID:h-1:2\n\n\0");
            let frame = parse_frame(wire.as_bytes(), version);
            assert_eq!(
                frame.header("login"),
                Some(r"x\cy"),
                "{command} {version:?}"
            );
            assert_eq!(frame.header("passcode"), Some("a:b"));
            assert_eq!(frame.header("host"), Some(" / "), "raw means untrimmed too");
            assert_eq!(frame.header("session"), Some("ID:h-1:2"));
        }
    }
}

#[test]
fn repeated_header_first_value_wins() {
    let frame = parse_frame(b"SEND\nfoo:first\nfoo:second\n\n\0", Version::V1_2);
    assert_eq!(frame.header("foo"), Some("first"));
    assert_eq!(frame.headers.len(), 2, "duplicates are kept");
}

#[test]
fn four_byte_utf8_in_headers_and_body() {
    let wire = "SEND\n😀name:value😀\ncontent-length:4\n\n😀\0";
    for version in VERSIONS {
        let frame = parse_frame(wire.as_bytes(), version);
        assert_eq!(frame.header("😀name"), Some("value😀"));
        assert_eq!(frame.body, "😀".as_bytes());
    }
}

#[test]
fn headers_must_be_utf8_but_bodies_need_not_be() {
    for wire in [
        &b"SEND\nkey:\xFF\n\n\0"[..],
        b"SEND\n\xF0\x9F:v\n\n\0",
        b"SUBSCRIBE\nid:\xC3\n\n\0",
    ] {
        assert_eq!(
            parse_error(wire, Version::V1_2),
            ParseError::InvalidUtf8,
            "{wire:?}"
        );
    }
    let frame = parse_frame(b"SEND\n\n\xFF\xFE\0", Version::V1_2);
    assert_eq!(frame.body, &b"\xFF\xFE"[..]);
}

#[test]
fn unknown_and_lowercase_commands_are_rejected() {
    for command in ["SED", "send", "WRONGCOMMAND", "SEND ", "Connect"] {
        let wire = format!("{command}\n\n\0");
        let expected = ParseError::UnknownCommand(command.into());
        assert_eq!(parse_error(wire.as_bytes(), Version::V1_2), expected);
    }
    assert_eq!(
        ParseError::UnknownCommand("SED".into()).to_string(),
        "unknown command 'SED'"
    );
}

#[test]
fn header_without_colon_is_malformed() {
    for version in VERSIONS {
        for command in ["SEND", "CONNECT"] {
            let wire = format!("{command}\nnocolon\n\n\0");
            let expected = ParseError::MalformedHeader("nocolon".into());
            assert_eq!(parse_error(wire.as_bytes(), version), expected);
        }
    }
}

#[test]
fn limits_just_under_pass_and_just_over_fail() {
    let default = ParseLimits::default();
    let command = ParseLimits {
        max_command_length: 4,
        ..default.clone()
    };
    let headers = ParseLimits {
        max_headers: 2,
        ..default.clone()
    };
    let header = ParseLimits {
        max_header_length: 5,
        ..default.clone()
    };
    let frame = ParseLimits {
        max_frame_size: 10,
        ..default.clone()
    };
    let frame_with_length = ParseLimits {
        max_frame_size: 27,
        ..default.clone()
    };
    let frame_just_too_small = ParseLimits {
        max_frame_size: 26,
        ..default
    };
    let command_too_long = ParseError::CommandTooLong { limit: 4 };
    let header_too_long = ParseError::HeaderTooLong { limit: 5 };
    let frame_too_large = |limit| ParseError::FrameTooLarge { limit };
    use Outcome::{Error, Incomplete};
    let cases: [(&ParseLimits, &[u8], Outcome); 20] = [
        (&command, b"SEND\n\n\0", frame_outcome(b"SEND\n\n\0")),
        (&command, b"SEND\r", Incomplete),
        (&command, b"ABORT\n\n\0", Error(command_too_long.clone())),
        (&command, b"ABORT", Error(command_too_long)),
        (
            &headers,
            b"SEND\na:1\nb:2\n\n\0",
            frame_outcome(b"SEND\na:1\nb:2\n\n\0"),
        ),
        (
            &headers,
            b"SEND\na:1\nb:2\nc:3\n",
            Error(ParseError::TooManyHeaders { limit: 2 }),
        ),
        (
            &header,
            b"SEND\na:bcd\r\n\n\0",
            frame_outcome(b"SEND\na:bcd\r\n\n\0"),
        ),
        (&header, b"SEND\na:bcd\r", Incomplete),
        (
            &header,
            b"SEND\na:bcde\n\n\0",
            Error(header_too_long.clone()),
        ),
        (&header, b"SEND\na:bcde", Error(header_too_long)),
        (&frame, b"SEND\n\nabc\0", frame_outcome(b"SEND\n\nabc\0")),
        (&frame, b"SEND\n\nabc", Incomplete),
        (&frame, b"SEND\n\nabcd", Incomplete),
        (&frame, b"SEND\n\nabcde", Error(frame_too_large(10))),
        (&frame, b"SEND\n\nabcd\0", Error(frame_too_large(10))),
        (&frame, b"SEND\nabcdefgh:", Error(frame_too_large(10))),
        (
            &frame_with_length,
            b"SEND\ncontent-length:3\n\nabc\0",
            frame_outcome(b"SEND\ncontent-length:3\n\nabc\0"),
        ),
        (
            &frame_with_length,
            b"SEND\ncontent-length:3\n\n",
            Incomplete,
        ),
        (
            &frame_just_too_small,
            b"SEND\ncontent-length:3\n\n",
            Error(frame_too_large(26)),
        ),
        (
            &frame_just_too_small,
            b"SEND\ncontent-length:3\n\nabc\0",
            Error(frame_too_large(26)),
        ),
    ];
    for (limits, wire, expected) in cases {
        assert_eq!(
            outcome(wire, Version::V1_2, limits),
            expected,
            "{wire:?} with {limits:?}"
        );
    }
}

fn frame_outcome(wire: &[u8]) -> Outcome {
    Outcome::Frame(parse_frame(wire, Version::V1_2))
}

#[test]
fn frame_at_the_size_limit_followed_by_more_bytes_passes() {
    let limits = ParseLimits {
        max_frame_size: 10,
        ..ParseLimits::default()
    };
    let parsed = parse(b"SEND\n\nabc\0SEND\n\nxyz\0", Version::V1_2, &limits);
    assert!(
        matches!(parsed, Ok(Parsed::Frame { consumed: 10, .. })),
        "{parsed:?}"
    );
}
