//! The fuzz harnesses: one function per cargo-fuzz target, shared with the broker's
//! `tests/fuzz_regressions.rs`, so a saved input replays through exactly the code the
//! fuzzer ran.
//!
//! Each function takes arbitrary bytes, drives one input-facing part of mirrormq the way
//! the broker does, and panics only when mirrormq misbehaves: a panic inside mirrormq, or
//! a broken property checked here. An `Err` from mirrormq is a correct answer to bad
//! input. This file uses only crates the broker itself depends on, because the regression
//! test includes it by path from the broker crate.

#[path = "websocket.rs"]
mod websocket;
pub use websocket::websocket;

use std::path::Path;

use mirrormq::broker::{Broker, Op};
use mirrormq::codec;
use mirrormq::config::Config;
use mirrormq::journal::recovery::{self, Mode};
use mirrormq::journal::segment;
use mirrormq::journal::{Epoch, Placement, Record, Seq};
use mirrormq::journal::{Journal, JOURNAL_DIR};
use mirrormq::repl::message::{MasterMessage, SlaveMessage, MAX_FRAME};
use mirrormq::stomp::{self, Frame, ParseLimits, Parsed, Version};

// ---------------------------------------------------------------------------------------
// stomp_frame

/// `input = selector byte | bytes from a client`. The selector picks the negotiated
/// version and either the default limits or tiny ones (so every limit's edge is near).
/// The bytes are parsed as a connection reads them: frame after frame until `Incomplete`
/// or an error. Checked for every step: the parser's documented invariants, that no
/// prefix of a complete frame is an error or a frame, and that a parsed frame re-encoded
/// parses back to itself.
pub fn stomp_frame(data: &[u8]) {
    let Some((&selector, mut buf)) = data.split_first() else {
        return;
    };
    let version = [Version::V1_0, Version::V1_1, Version::V1_2][usize::from(selector % 3)];
    let limits = if selector & 0x80 == 0 {
        ParseLimits::default()
    } else {
        // Small enough that the fuzzer's short inputs cross every limit.
        let knob = usize::from(selector & 0x7f);
        ParseLimits {
            max_frame_size: 8 + knob * 4,
            max_headers: knob % 5,
            max_header_length: knob % 41,
            max_command_length: knob % 13,
        }
    };
    while !buf.is_empty() {
        let parsed = stomp::parse(buf, version, &limits);
        match parsed {
            Ok(Parsed::Frame { frame, consumed }) => {
                assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                assert!(consumed <= limits.max_frame_size, "over max_frame_size");
                check_prefixes(&buf[..consumed], version, &limits);
                check_round_trip(&frame, version);
                buf = &buf[consumed..];
            }
            Ok(Parsed::HeartBeat { consumed }) => {
                assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                assert!(buf[..consumed].iter().all(|b| *b == b'\n' || *b == b'\r'));
                buf = &buf[consumed..];
            }
            Ok(Parsed::Incomplete) => {
                // The caller never buffers more than max_frame_size + 1 bytes of a frame.
                assert!(
                    buf.len() <= limits.max_frame_size,
                    "Incomplete past the limit"
                );
                return;
            }
            Err(_) => return,
        }
    }
}

/// A frame that parses whole must read as `Incomplete` while its bytes are arriving:
/// the connection would otherwise fail a good client whose frame came in pieces.
fn check_prefixes(frame_bytes: &[u8], version: Version, limits: &ParseLimits) {
    let len = frame_bytes.len();
    for cut in [len - 1, len / 2, len * 2 / 3] {
        let parsed = stomp::parse(&frame_bytes[..cut], version, limits);
        assert_eq!(parsed, Ok(Parsed::Incomplete), "prefix of {cut} bytes");
    }
}

/// `parse(encode(frame)) == frame`, as stomp/mod.rs promises for representable headers,
/// with `content-length` rewritten by the encoder and bodies kept only where allowed.
fn check_round_trip(frame: &Frame, version: Version) {
    // A CR ending a raw (CONNECT) or 1.1 header value cannot be written: the reader takes
    // it for half of a CRLF. 1.0 trims values and 1.2 escapes CR, so both can.
    let raw_cr = frame.command.is_connect() || version == Version::V1_1;
    if raw_cr && frame.headers.iter().any(|(_, value)| value.ends_with('\r')) {
        return;
    }
    let mut wire = Vec::new();
    stomp::encode(frame, version, &mut wire);
    let roomy = ParseLimits {
        max_frame_size: usize::MAX / 2,
        max_headers: usize::MAX / 2,
        max_header_length: usize::MAX / 2,
        max_command_length: usize::MAX / 2,
    };
    let again = match stomp::parse(&wire, version, &roomy) {
        Ok(Parsed::Frame { frame, consumed }) => {
            assert_eq!(consumed, wire.len(), "re-encoded frame not consumed whole");
            frame
        }
        other => panic!("re-encoded {frame:?} parsed as {other:?}"),
    };
    let without_length = |frame: &Frame| -> Vec<(String, String)> {
        let headers = frame.headers.iter();
        headers
            .filter(|(name, _)| name != "content-length")
            .cloned()
            .collect()
    };
    assert_eq!(again.command, frame.command);
    assert_eq!(
        without_length(&again),
        without_length(frame),
        "headers changed"
    );
    let body = if frame.command.has_body() {
        &frame.body[..]
    } else {
        &[]
    };
    assert_eq!(&again.body[..], body, "body changed");
}

// ---------------------------------------------------------------------------------------
// repl_message

/// Largest Hello a master reads (repl/master.rs `MAX_HELLO`).
const MAX_HELLO: usize = 64 * 1024;

/// `input = selector byte | bytes from the replication link`. Bit 0 picks which end is
/// listening (a slave decodes `MasterMessage`s, a master `SlaveMessage`s), bit 1 the frame
/// limit (a master's Hello limit or `MAX_FRAME`). The bytes are decoded whole as one
/// message, then read as a stream of length-prefixed frames as the link reads them. A
/// decoded message must re-encode to the same value, and a record batch's payloads are
/// decoded as `Op`s, as the slave's core does.
pub fn repl_message(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let max_len = if selector & 2 == 0 {
        MAX_HELLO
    } else {
        MAX_FRAME
    };
    if selector & 1 == 0 {
        if let Ok(message) = codec::decode::<SlaveMessage>(bytes) {
            check_message_round_trip(&message);
        }
        read_frames::<SlaveMessage>(bytes, max_len, |message| check_message_round_trip(&message));
    } else {
        if let Ok(message) = codec::decode::<MasterMessage>(bytes) {
            check_master_message(&message);
        }
        read_frames::<MasterMessage>(bytes, max_len, |message| check_master_message(&message));
    }
}

fn read_frames<T: serde::de::DeserializeOwned>(bytes: &[u8], max_len: usize, each: impl Fn(T)) {
    let mut link = futures::io::Cursor::new(bytes);
    // The cursor never waits, so the lightest executor will do.
    futures::executor::block_on(async {
        while let Ok(Some(message)) = codec::read_frame::<_, T>(&mut link, max_len).await {
            each(message);
        }
    });
}

fn check_master_message(message: &MasterMessage) {
    check_message_round_trip(message);
    if let MasterMessage::Records(records) = message {
        for record in records {
            let _ = codec::decode::<Op>(&record.payload);
        }
    }
}

fn check_message_round_trip<T>(message: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = codec::encode(message).expect("a decoded message encodes");
    let again: T = codec::decode(&bytes).expect("an encoded message decodes");
    assert_eq!(&again, message, "round trip changed the message");
}

// ---------------------------------------------------------------------------------------
// journal_recovery

/// Flags in the journal input's first byte.
const FIX_CRC: u8 = 1;
const RENUMBER: u8 = 2;
const PREALLOCATE: u8 = 4;
/// Segment size for segments `Journal::open` creates: the smallest the config allows.
const SEGMENT_SIZE: u64 = 64 << 10;

/// `input = flags byte | segment files`. The files are the rest of the input cut before
/// each `MMQJRNL1` magic; a piece with a whole header is named after its first seq, any
/// other piece after its position, so a store can hold several segments, garbage files
/// and torn or corrupt ones. Flags help the fuzzer past checks it cannot solve by
/// mutation: `FIX_CRC` stamps the right checksum on every entry it can frame, `RENUMBER`
/// gives entries increasing seqs first, `PREALLOCATE` appends the zero fill a real
/// segment has. With no flags a real segment's bytes are used as they are.
///
/// The store is then recovered three ways, each decoding and applying every record to a
/// broker like the broker does: a read-only `recovery::read` (`mirrormq verify`, a
/// slave's position), `Journal::open` (start-up, repairing a torn tail), and a second
/// `Journal::open` (a restart). Any `Err` is fine; checked: read-only and repairing
/// recovery accept the same stores and find the same records, and a store that opened
/// once opens again, with no torn tail and the same messages.
pub fn journal_recovery(data: &[u8]) {
    // In TMPDIR: a tmpfs there keeps the fsyncs cheap.
    let data_dir = tempfile::tempdir().expect("creating a temporary data directory");
    let journal_dir = data_dir.path().join(JOURNAL_DIR);
    write_store(data, &journal_dir);

    let mut read_only = Replay::new();
    let read = recovery::read(&journal_dir, Mode::ReadOnly, |_, placement, entry| {
        read_only.apply(&entry, placement).map(|_| ())
    });
    let first = open(data_dir.path());
    match (&read, &first) {
        (Ok(summary), Ok((replay, recovered))) => {
            assert_eq!(summary.entries, recovered.records, "records differ");
            assert_eq!(summary.last, recovered.last, "last record differs");
            assert_eq!(read_only.messages(), replay.messages(), "messages differ");
        }
        (Err(_), Err(OpenError::Recovery(_))) | (_, Err(OpenError::Epochs(_))) => return,
        (Ok(_), Err(OpenError::Recovery(error))) => {
            panic!("read-only recovery accepted the store, Journal::open refused it: {error}")
        }
        (Err(error), Ok(_)) => {
            panic!("Journal::open accepted the store, read-only recovery refused it: {error}")
        }
    }
    let Ok((replay, _)) = first else {
        unreachable!("only two accepting recoveries get here")
    };
    let (again, recovered) = match open(data_dir.path()) {
        Ok(second) => second,
        Err(OpenError::Recovery(error) | OpenError::Epochs(error)) => {
            panic!("a store that opened once does not open again: {error}")
        }
    };
    assert_eq!(recovered.torn_tail, None, "the torn tail was not repaired");
    // Segment deletion at the first open must not change what a restart recovers.
    assert_eq!(
        replay.messages(),
        again.messages(),
        "a restart changed the messages"
    );
}

/// A broker rebuilt from records, as `server::recover` and `verify` rebuild one.
struct Replay {
    broker: Broker,
}

impl Replay {
    fn new() -> Replay {
        // The config defaults: 6 redeliveries, 10 000 dedup ids; and every body paged
        // out once placed, so paging is replayed too.
        let mut broker = Broker::new(6, 10_000);
        broker.set_paging(Some(0));
        Replay { broker }
    }

    /// As recovery does it: replayed, then placed (which pages bodies out).
    fn apply(
        &mut self,
        record: &Record,
        placement: Placement,
    ) -> mirrormq::Result<mirrormq::broker::Replayed> {
        let replayed = self
            .broker
            .replay(record, false)
            .map_err(mirrormq::Error::Codec)?;
        if replayed.applied.durable {
            self.broker.placed(record.seq, placement);
        }
        Ok(replayed)
    }

    fn messages(&self) -> usize {
        self.broker.message_count()
    }
}

/// Writes the segment files a journal input describes (see `journal_recovery`) into
/// `journal_dir`, creating it.
pub fn write_store(data: &[u8], journal_dir: &Path) {
    std::fs::create_dir_all(journal_dir).expect("creating the journal folder");
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let mut files = split_segments(body);
    if flags & RENUMBER != 0 {
        renumber(&mut files);
    }
    for (first_seq, bytes) in &mut files {
        if flags & FIX_CRC != 0 {
            for_each_entry(bytes, |entry| {
                let crc = entry_checksum(entry);
                entry[4..8].copy_from_slice(&crc.to_le_bytes());
            });
        }
        if flags & PREALLOCATE != 0 {
            bytes.resize(bytes.len() + 1024, 0);
        }
        let path = segment::path_for(journal_dir, Seq(*first_seq));
        std::fs::write(&path, bytes).expect("writing a segment");
    }
}

/// Why a start-up failed: in recovery proper, or saving the epochs it found in
/// `store.toml` (TOML integers stop at i64::MAX, so a record with a larger epoch or seq
/// is refused there).
enum OpenError {
    Recovery(mirrormq::Error),
    Epochs(mirrormq::Error),
}

/// Start-up recovery as `server::recover` does it, then a clean stop of the writer.
fn open(data_dir: &Path) -> Result<(Replay, mirrormq::journal::Recovered), OpenError> {
    let mut replay = Replay::new();
    let mut epochs = Vec::new();
    let (mut journal, _log, mut recovered) = Journal::open(
        data_dir,
        SEGMENT_SIZE,
        Box::new(|_| {}),
        |record, placement| {
            let replayed = replay.apply(record, placement)?;
            epochs.extend(replayed.epoch_started);
            Ok(replayed.applied)
        },
    )
    .map_err(OpenError::Recovery)?;
    let merged = if recovered.meta.merge_epochs(&epochs) {
        recovered.meta.save(data_dir)
    } else {
        Ok(())
    };
    replay.broker.mark_all_maybe_delivered();
    // Stop the writer: it performs the segment deletions the open queued.
    journal.stopper()();
    merged.map_err(OpenError::Epochs)?;
    Ok((replay, recovered))
}

/// Cuts the input before each segment magic; names each piece (see `journal_recovery`).
/// A later piece with the same name replaces an earlier one, as a file would.
fn split_segments(body: &[u8]) -> std::collections::BTreeMap<u64, Vec<u8>> {
    let mut starts: Vec<usize> = (0..body.len())
        .filter(|at| body[*at..].starts_with(segment::MAGIC))
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let mut files = std::collections::BTreeMap::new();
    for (position, start) in starts.iter().enumerate() {
        let end = starts.get(position + 1).copied().unwrap_or(body.len());
        let piece = &body[*start..end];
        let name = match piece.get(8..16) {
            Some(seq) if piece.starts_with(segment::MAGIC) => {
                u64::from_le_bytes(seq.try_into().expect("8 bytes"))
            }
            _ => position as u64,
        };
        if !piece.is_empty() {
            files.insert(name, piece.to_vec());
        }
    }
    files
}

/// Calls `each(entry bytes)` for every entry that can be framed: a non-zero
/// length whose payload fits in the segment. Stops at the first that cannot.
fn for_each_entry(segment_bytes: &mut [u8], mut each: impl FnMut(&mut [u8])) {
    let mut offset = segment::HEADER_LEN as usize;
    while let Some(header) = segment_bytes.get(offset..offset + segment::ENTRY_HEADER_LEN) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let end = offset + segment::ENTRY_HEADER_LEN + len;
        if len == 0 || end > segment_bytes.len() {
            return;
        }
        each(&mut segment_bytes[offset..end]);
        offset = end;
    }
}

/// The checksum `segment::read_slot` expects for one entry's bytes.
fn entry_checksum(entry: &[u8]) -> u32 {
    let long = |at: usize| u64::from_le_bytes(entry[at..at + 8].try_into().expect("8 bytes"));
    Record {
        epoch: Epoch(long(8)),
        seq: Seq(long(16)),
        payload: entry[segment::ENTRY_HEADER_LEN..].to_vec().into(),
    }
    .checksum()
}

/// Gives entries the seqs a broker would: increasing across segments, each segment's
/// first at least its name.
fn renumber(files: &mut std::collections::BTreeMap<u64, Vec<u8>>) {
    let mut last: Option<u64> = None;
    for (first_seq, bytes) in files.iter_mut() {
        let mut first_in_segment = true;
        for_each_entry(bytes, |entry| {
            let next = last.map_or(*first_seq, |seq| seq.saturating_add(1));
            let seq = if first_in_segment {
                next.max(*first_seq)
            } else {
                next
            };
            first_in_segment = false;
            entry[16..24].copy_from_slice(&seq.to_le_bytes());
            last = Some(seq);
        });
    }
}

// ---------------------------------------------------------------------------------------
// config

/// Where the fuzzed config file claims to live; relative paths resolve against it.
const CONFIG_PATH: &str = "fuzz/broker.toml";

/// `input = the text of a config file`. It goes through `Config::parse`, the function
/// behind `Config::load` (which only reads the file first; bytes that are not UTF-8 fail
/// there). A config that loads must also survive what the broker computes from it at
/// start-up: the checks below repeat that arithmetic, so a value `validate` lets through
/// but the broker cannot use shows up here as an overflow.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new(CONFIG_PATH)) else {
        return;
    };
    let _ = config.connect_timeout();
    let _ = config.requires_login();
    let _ = config.authenticate("admin", "admin");
    let stomp = &config.stomp;
    // session/mod.rs: the parser's limits, the outbound queue, the prefetch clamp.
    let _ = stomp.max_frame_size.bytes();
    let _ = futures::channel::mpsc::channel::<()>(stomp.max_pending_frames);
    let _ = (stomp.max_pending_frames / 2).max(1);
    // session/mod.rs: a client's heart-beat interval (at least min_heartbeat_ms) x grace.
    let floor = std::time::Duration::from_millis(stomp.min_heartbeat_ms);
    let _ = floor.mul_f64(stomp.heartbeat_grace);
    // repl/master.rs, repl/slave.rs, server.rs: the link's silence and patience.
    let replication = &config.replication;
    let silence = replication.heartbeat_ms * u64::from(replication.heartbeat_misses);
    let patience = std::time::Duration::from_millis(silence.max(2000));
    let _ = patience + std::time::Duration::from_millis(replication.ack_timeout_ms);
    let endpoints = [
        &replication.bind,
        &replication.advertised_uri,
        &replication.master_connector_uri,
    ];
    for endpoint in endpoints.into_iter().flatten() {
        let _ = endpoint.socket_addr();
        let _ = endpoint.to_string();
    }
    let _ = config.stomp.bind.socket_addr();
}

// ---------------------------------------------------------------------------------------
// http_request

/// `input = selector byte | bytes from an admin client`. The selector picks the default
/// limits or tiny ones. The bytes are parsed as the admin listener reads them, then
/// routed. Checked: a complete request took at most the bytes there were, every strict
/// prefix of it is incomplete (never an error, never a request), routing never panics,
/// and a browse's limit never exceeds the cap.
pub fn http_request(data: &[u8]) {
    use mirrormq::http::{parse_request, Limits};
    let Some((&selector, buf)) = data.split_first() else {
        return;
    };
    let limits = if selector & 0x80 == 0 {
        Limits::default()
    } else {
        let knob = usize::from(selector & 0x7f);
        Limits {
            max_head: 16 + knob * 8,
            max_headers: knob % 9,
            max_body: knob % 17,
        }
    };
    let Ok(Some((request, used))) = parse_request(buf, &limits) else {
        return;
    };
    assert!(
        used > 0 && used <= buf.len(),
        "used {used} of {}",
        buf.len()
    );
    if used <= 4096 {
        for end in 0..used {
            assert_eq!(
                parse_request(&buf[..end], &limits),
                Ok(None),
                "a prefix of {end} bytes of a {used}-byte request"
            );
        }
    }
    if let Ok(mirrormq::admin::Route::Browse { limit, .. }) = mirrormq::admin::route(&request, 7) {
        assert!(limit <= 7, "browse limit {limit} over the cap");
    }
}

/// A message for `selector`: a few fixed headers and `x`, whose value the input gives.
struct SelectorMessage<'a>(&'a str);

impl mirrormq::selector::Headers for SelectorMessage<'_> {
    fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        let value = match name {
            "x" => self.0,
            "color" => "blue",
            "weight" => "2500",
            "price" => "9.5",
            "flag" => "true",
            "priority" => "7",
            _ => return None,
        };
        Some(std::borrow::Cow::Borrowed(value))
    }
}

/// A SUBSCRIBE's `selector`: the text before the first NUL, `x`'s value after it. Parsing
/// never panics and an error names a column inside the text (or just past it); a parsed
/// selector evaluates without panicking, and `NOT (it)` never selects what it selects.
pub fn selector(data: &[u8]) {
    use mirrormq::selector::{Limits, Selector};
    let text = String::from_utf8_lossy(data);
    let (text, x) = text.split_once('\0').unwrap_or((&text, "12"));
    let limits = Limits {
        max_length: 4096,
        max_depth: 16,
        max_pattern: 64,
    };
    let selector = match Selector::parse(text, limits) {
        Ok(selector) => selector,
        Err(error) => {
            let length = text.chars().count();
            assert!(
                error.column >= 1 && error.column <= length.max(limits.max_length) + 1,
                "column {} of a {length}-character selector",
                error.column
            );
            assert!(!error.message.is_empty());
            return;
        }
    };
    let message = SelectorMessage(x);
    let selected = selector.matches(&message);
    if let Ok(negated) = Selector::parse(&format!("NOT ({text})"), limits) {
        assert!(
            !(selected && negated.matches(&message)),
            "both {text:?} and its negation select x = {x:?}"
        );
    }
}
