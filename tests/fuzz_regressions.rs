//! Replays every saved fuzz input on stable Rust, in plain `cargo test`.
//!
//! The cargo-fuzz targets (fuzz/, see fuzz/README.md) need nightly and hours; what they
//! found must stay fixed without them. Every file in `fuzz/corpus/<target>/` (the seeds
//! and what the fuzzer kept) and `fuzz/regressions/<target>/` (the minimized inputs of
//! crashes that were fixed) goes through the same harness function the target calls
//! (`fuzz/src/lib.rs`, included here by path), and must not panic.
//!
//! `write_seeds` (ignored) rebuilds the hand-made seeds in `fuzz/corpus/`.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::panic::{self, AssertUnwindSafe};

use mirrormq::config::Config;
use mirrormq::journal::recovery::{self, Mode};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs `harness` on every corpus and regression input of `target`; names all that panic.
fn replay(target: &str, harness: fn(&[u8])) {
    let mut inputs = 0;
    let mut failed = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        if kind == "regressions" && !dir.exists() {
            // No crash found in this target yet: git keeps no empty directory.
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|item| item.expect("listing inputs").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for path in files {
            let data = std::fs::read(&path).expect("reading an input");
            inputs += 1;
            if panic::catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(inputs > 0, "no inputs for {target}");
    assert!(failed.is_empty(), "{target} panicked on {failed:#?}");
}

#[test]
fn stomp_frame_inputs_do_not_panic() {
    replay("stomp_frame", harness::stomp_frame);
}

#[test]
fn websocket_inputs_do_not_panic() {
    replay("websocket", harness::websocket);
}

#[test]
fn repl_message_inputs_do_not_panic() {
    replay("repl_message", harness::repl_message);
}

#[test]
fn journal_recovery_inputs_do_not_panic() {
    replay("journal_recovery", harness::journal_recovery);
}

#[test]
fn config_inputs_do_not_panic() {
    replay("config", harness::config);
}

#[test]
fn http_request_inputs_do_not_panic() {
    replay("http_request", harness::http_request);
}

#[test]
fn selector_inputs_do_not_panic() {
    replay("selector", harness::selector);
}

/// One regression input, by name.
fn regression(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_dir().join("regressions").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a journal regression through its harness, then checks that read-only recovery
/// of the store it describes stops with a corruption naming `reason`.
fn journal_is_corrupt(name: &str, reason: &str) {
    let input = regression("journal_recovery", name);
    harness::journal_recovery(&input);
    let dir = tempfile::tempdir().unwrap();
    harness::write_store(&input, dir.path());
    let error = recovery::read(dir.path(), Mode::ReadOnly, |_, _, _| Ok(())).unwrap_err();
    assert!(error.to_string().contains(reason), "{error}");
}

/// Found by journal_recovery: segment 1 held only an ack, the next segment (named
/// 0x0005000000000004) a record with seq 4, below its name. Recovery accepted it, the
/// first start deleted segment 1 (nothing live), and the next start failed on "seq 4
/// out of order". Fixed in `recovery::read`: a record outside its segment's range (from
/// its name to the next segment's) is corruption from the first start on.
#[test]
fn journal_record_below_its_segment_name_is_corrupt() {
    journal_is_corrupt(
        "entry-below-segment-name",
        "seq 4 outside its segment's range",
    );
}

/// Found by journal_recovery in its full run: a record with seq u64::MAX passed every
/// check, and start-up computed the next seq as `seq + 1`: an overflow (a panic in
/// debug; in release it wrapped, and new records would have reused older seqs). Fixed
/// in `recovery::read`: that seq, or a segment named with it, is corruption, reported
/// with the file and offset.
#[test]
fn journal_record_with_the_last_seq_is_corrupt() {
    journal_is_corrupt("seq-u64-max", "seq 18446744073709551615: no seq is left");
}

/// Runs a config regression through its harness, then checks that the broker refuses it
/// with an error naming `key`, where it used to accept it.
fn config_is_refused(name: &str, key: &str) {
    let input = regression("config", name);
    harness::config(&input);
    let text = String::from_utf8(input).unwrap();
    let error = Config::parse(&text, Path::new("broker.toml")).unwrap_err();
    assert!(error.to_string().contains(key), "{error}");
}

/// Found while writing the config target (it panics here without the fix):
/// `heartbeat_ms = i64::MAX, heartbeat_misses = 3` loaded, and the link's silence
/// (`heartbeat_ms * heartbeat_misses`, repl/master.rs, repl/slave.rs, server.rs)
/// overflowed: a panic in debug builds, a tiny wrapped timeout in release. Fixed in `Config::validate`: the product must fit in a u64.
#[test]
fn config_heartbeat_silence_that_overflows_is_refused() {
    config_is_refused("heartbeat-silence-overflow", "replication.heartbeat_misses");
}

/// Found while writing the config target (it panics here without the fix):
/// `max_frame_size = "18446744073709551615"` made `Config::validate` itself overflow on
/// `max_frame_size + 1024` (a panic in debug; in release the check passed, allowing
/// frames larger than a segment). Fixed with a
/// saturating add.
#[test]
fn config_max_frame_size_near_u64_max_is_refused() {
    config_is_refused("max-frame-size-overflow", "broker.segment_size");
}

/// Found while writing the config target (it panics here without the fix):
/// `max_pending_frames = i64::MAX` loaded, and every client session would panic
/// creating its outbound queue (futures' mpsc channel refuses a
/// buffer from usize::MAX / 4 up). Fixed in `Config::validate`: at most 2^30.
#[test]
fn config_max_pending_frames_too_large_is_refused() {
    config_is_refused("max-pending-frames-too-large", "stomp.max_pending_frames");
}

/// Writes the hand-made seeds; run with `cargo test --test fuzz_regressions -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus/*/seed-*"]
fn write_seeds() {
    seeds::write_all(&fuzz_dir().join("corpus"));
}

mod seeds {
    //! Small, meaningful inputs: real frames, real messages, real segments, the shipped
    //! configs. Named `seed-*` so they are told apart from what the fuzzer adds.

    use std::path::Path;

    use bytes::Bytes;
    use mirrormq::broker::{Broker, Destination, MessageId, NewMessage, Op, Removal};
    use mirrormq::codec;
    use mirrormq::journal::segment;
    use mirrormq::journal::{Epoch, EpochStart, Journal, Position, Record, Seq, JOURNAL_DIR};
    use mirrormq::repl::message::{
        CatchUp, MasterMessage, SegmentFile, SlaveMessage, Standing, PROTOCOL_VERSION,
    };
    use mirrormq::stomp::{self, Command, Frame, Version};

    pub fn write_all(corpus: &Path) {
        write(corpus, "stomp_frame", stomp_frames());
        write(corpus, "repl_message", repl_messages());
        write(corpus, "journal_recovery", journal_stores());
        write(corpus, "config", configs());
    }

    fn write(corpus: &Path, target: &str, seeds: Vec<(&str, Vec<u8>)>) {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }

    fn with_selector(selector: u8, bytes: &[u8]) -> Vec<u8> {
        let mut input = vec![selector];
        input.extend_from_slice(bytes);
        input
    }

    fn stomp_frames() -> Vec<(&'static str, Vec<u8>)> {
        let connect = b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\nlogin:admin\npasscode:admin\nheart-beat:1000,1000\n\n\0";
        let stomp_1_2 = b"STOMP\r\naccept-version:1.2\r\nhost:localhost\r\n\r\n\0\r\n\n";
        let session = b"SUBSCRIBE\nid:1\ndestination:/queue/orders\nack:client-individual\nactivemq.prefetchSize:10\nreceipt:r1\n\n\0\
SEND\ndestination:/queue/orders\npersistent:true\ncontent-length:5\nreceipt:r2\n\na\0b\0c\0\
ACK\nid:1.mmq-2-0\n\n\0\nNACK\nid:1.mmq-3-0\n\n\0\
BEGIN\ntransaction:t1\n\n\0SEND\ndestination:/topic/news\ntransaction:t1\n\nhi\0COMMIT\ntransaction:t1\n\n\0\
UNSUBSCRIBE\nid:1\n\n\0DISCONNECT\nreceipt:bye\n\n\0";
        let escapes = b"SEND\ndestination:/queue/a\\cb\nweird\\n\\\\:va\\rlue\n\nbody\0";
        let broker_side = {
            let mut out = Vec::new();
            let frames = [
                Frame::new(Command::Connected)
                    .with_header("version", "1.2")
                    .with_header("heart-beat", "0,0"),
                Frame::new(Command::Message)
                    .with_header("destination", "/queue/orders")
                    .with_header("message-id", "mmq-7-0")
                    .with_header("subscription", "1")
                    .with_header("ack", "1.mmq-7-0")
                    .with_header("redelivered", "true")
                    .with_body(Bytes::from_static(b"payload\0with nul")),
                Frame::new(Command::Receipt).with_header("receipt-id", "r2"),
                Frame::error("access refused: unknown login or wrong passcode"),
            ];
            for frame in &frames {
                stomp::encode(frame, Version::V1_2, &mut out);
            }
            out
        };
        vec![
            ("connect", with_selector(0, connect)),
            ("stomp-1.2-crlf", with_selector(2, stomp_1_2)),
            ("session-1.0", with_selector(0, session)),
            ("session-1.1", with_selector(1, session)),
            ("session-1.2", with_selector(2, session)),
            ("escapes-1.2", with_selector(2, escapes)),
            ("escapes-tiny-limits", with_selector(0x80 | 0x7e, escapes)),
            ("heart-beats", with_selector(2, b"\n\r\n\n\r")),
            ("broker-frames-1.2", with_selector(2, &broker_side)),
            ("session-tiny-limits", with_selector(0x80 | 0x31, session)),
        ]
    }

    fn message(destination: Destination, persistent: bool, body: &'static [u8]) -> NewMessage {
        NewMessage {
            destination,
            headers: vec![("dedup-id".into(), "c1-1".into()), ("k".into(), "v".into())],
            body: Bytes::from_static(body),
            persistent,
        }
    }

    fn removal(queue: &str, seq: u64, index: u32) -> Removal {
        Removal::new(queue, MessageId::new(Seq(seq), index))
    }

    /// Records a real broker would write, in order from seq 1.
    fn ops() -> Vec<Op> {
        vec![
            Op::Send(message(Destination::Queue("orders".into()), true, b"one")),
            Op::Send(message(Destination::Queue("orders".into()), true, b"two")),
            Op::Ack(vec![removal("orders", 1, 0)]),
            Op::Commit {
                sends: vec![
                    message(Destination::Queue("orders".into()), true, b"three"),
                    message(Destination::Topic("news".into()), true, b"topic"),
                ],
                acks: vec![removal("orders", 2, 0)],
            },
            Op::DeadLetter(removal("orders", 4, 0)),
            Op::EpochStarted { epoch: Epoch(2) },
            Op::Send(message(
                Destination::Queue("DLQ.orders".into()),
                true,
                b"four",
            )),
        ]
    }

    fn standing() -> Standing {
        Standing {
            store_id: "584b40ac5e65eac15cc6a94e32f3eb9a".into(),
            epochs: vec![
                EpochStart {
                    epoch: Epoch(1),
                    first_seq: Seq(1),
                },
                EpochStart {
                    epoch: Epoch(2),
                    first_seq: Seq(6),
                },
            ],
            last: Some(Position {
                epoch: Epoch(2),
                seq: Seq(7),
                checksum: 0x81c8_30e2,
            }),
            alone_since: Some(Seq(6)),
        }
    }

    /// A length-prefixed frame, as `codec::write_frame` writes it.
    fn frame(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    fn repl_messages() -> Vec<(&'static str, Vec<u8>)> {
        let slave = [
            SlaveMessage::Hello {
                protocol: PROTOCOL_VERSION,
                user: "slave".into(),
                password: "secret".into(),
                standing: standing(),
                advertised: Some("tcp://127.0.0.1:62002".into()),
                name: "slave".into(),
            },
            SlaveMessage::Ack { seq: Seq(7) },
            SlaveMessage::HeartBeat,
            SlaveMessage::Probe,
            SlaveMessage::CopyHello {
                protocol: PROTOCOL_VERSION,
                user: "slave".into(),
                password: "secret".into(),
                name: "slave".into(),
            },
            SlaveMessage::Fetch {
                name: "00000000000000000001.seg".into(),
                offset: 1 << 20,
                len: 1 << 20,
                have: Some(0x81c8_30e2),
            },
        ];
        let records = ops()
            .iter()
            .enumerate()
            .map(|(at, op)| Record {
                epoch: Epoch(1),
                seq: Seq(at as u64 + 1),
                payload: codec::encode(op).unwrap().into(),
            })
            .collect();
        let master = [
            MasterMessage::Welcome {
                store_id: "584b40ac5e65eac15cc6a94e32f3eb9a".into(),
                epochs: standing().epochs,
                catch_up: CatchUp::Append { from: Seq(8) },
                in_sync_at: Seq(7),
            },
            MasterMessage::Welcome {
                store_id: "584b40ac5e65eac15cc6a94e32f3eb9a".into(),
                epochs: standing().epochs,
                catch_up: CatchUp::Replace { from: Seq(1) },
                in_sync_at: Seq(7),
            },
            MasterMessage::Refused {
                reason: "another slave is attached".into(),
                retry: true,
            },
            MasterMessage::Records(records),
            MasterMessage::InSync,
            MasterMessage::Dropped {
                reason: "late ack".into(),
            },
            MasterMessage::HeartBeat,
            MasterMessage::Alive { epoch: Epoch(2) },
            MasterMessage::Following {
                epoch: Epoch(2),
                candidate: true,
                master: Some("tcp://127.0.0.1:62001".into()),
            },
            MasterMessage::Succession(vec![
                "tcp://127.0.0.1:62002".into(),
                "tcp://127.0.0.1:62003".into(),
            ]),
            MasterMessage::CopyStore,
            MasterMessage::Manifest {
                store_id: "584b40ac5e65eac15cc6a94e32f3eb9a".into(),
                epochs: standing().epochs,
                segments: vec![SegmentFile {
                    name: "00000000000000000001.seg".into(),
                    len: 32 << 20,
                }],
            },
            MasterMessage::Chunk {
                offset: 0,
                data: bytes::Bytes::from_static(b"MMQJRNL1\x01\0\0\0\0\0\0\0"),
                checksum: 0x1234_5678,
            },
            MasterMessage::Zeros { offset: 1 << 20 },
            MasterMessage::Same { offset: 2 << 20 },
            MasterMessage::Missing {
                name: "00000000000000000001.seg".into(),
            },
        ];
        let names = ["hello", "ack", "heartbeat", "probe", "copy-hello", "fetch"];
        let mut seeds = Vec::new();
        let mut slave_stream = Vec::new();
        for (name, message) in names.iter().zip(&slave) {
            let bytes = codec::encode(message).unwrap();
            slave_stream.extend(frame(&bytes));
            seeds.push((*name, with_selector(0, &bytes)));
        }
        let names = [
            "welcome-append",
            "welcome-replace",
            "refused",
            "records",
            "in-sync",
            "dropped",
            "master-heartbeat",
            "alive",
            "following",
            "succession",
            "copy-store",
            "manifest",
            "chunk",
            "zeros",
            "same",
            "missing",
        ];
        let mut master_stream = Vec::new();
        for (name, message) in names.iter().zip(&master) {
            let bytes = codec::encode(message).unwrap();
            master_stream.extend(frame(&bytes));
            seeds.push((*name, with_selector(3, &bytes)));
        }
        seeds.push(("slave-stream", with_selector(2, &slave_stream)));
        seeds.push(("master-stream", with_selector(3, &master_stream)));
        seeds
    }

    /// A segment's bytes up to its data plus a little of its zero fill.
    fn trimmed(mut bytes: Vec<u8>) -> Vec<u8> {
        let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |at| at + 1);
        bytes.truncate(end.max(segment::HEADER_LEN as usize) + 32);
        bytes
    }

    /// A store written by the real journal: `Journal::open` on an empty folder, then
    /// `append` of each record as the core does it.
    fn real_segment() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, mut log, _) = Journal::open(
            dir.path(),
            64 << 10,
            Box::new(|_| {}),
            |_, _| unreachable!(),
        )
        .unwrap();
        let mut broker = Broker::new(6, 10_000);
        for (at, op) in ops().into_iter().enumerate() {
            let seq = Seq(at as u64 + 1);
            let payload = codec::encode(&op).unwrap().into();
            let applied = broker.apply(seq, op, true);
            let record = Record {
                epoch: Epoch(1),
                seq,
                payload,
            };
            log.append(record, &applied, |command| journal.send(command));
            journal.pump();
        }
        journal.stopper()();
        let segments = segment::list(&dir.path().join(JOURNAL_DIR)).unwrap();
        let (_, path) = segments.last().expect("a segment");
        trimmed(std::fs::read(path).unwrap())
    }

    /// A segment built from the format: header, then the given records.
    fn segment_of(first_seq: u64, records: &[(u64, Op)]) -> Vec<u8> {
        let mut bytes = segment::MAGIC.to_vec();
        bytes.extend_from_slice(&first_seq.to_le_bytes());
        for (seq, op) in records {
            let payload = codec::encode(op).unwrap().into();
            Record {
                epoch: Epoch(1),
                seq: Seq(*seq),
                payload,
            }
            .encode_into(&mut bytes);
        }
        bytes
    }

    fn journal_stores() -> Vec<(&'static str, Vec<u8>)> {
        const FIX_CRC_RENUMBER: u8 = 3;
        let real = real_segment();
        let ops = ops();
        let numbered: Vec<(u64, Op)> = (1..).zip(ops).collect();
        let older = segment_of(1, &numbered[..3]);
        let newer = segment_of(4, &numbered[3..]);
        let two = [older.clone(), vec![0; 32], newer.clone(), vec![0; 32]].concat();
        // A crash mid-write: the last entry's tail never reached the disk.
        let mut torn = newer.clone();
        torn.truncate(torn.len() - 3);
        torn.extend_from_slice(&[0; 64]);
        let torn_store = [older.clone(), torn].concat();
        let mut flipped = older.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        vec![
            ("real-segment", with_selector(0, &real)),
            ("real-segment-preallocated", with_selector(4, &real)),
            ("two-segments", with_selector(0, &two)),
            ("torn-tail", with_selector(0, &torn_store)),
            ("flipped-byte", with_selector(0, &flipped)),
            (
                "flipped-byte-fixed",
                with_selector(FIX_CRC_RENUMBER, &flipped),
            ),
            ("empty-segment", with_selector(0, &segment_of(1, &[]))),
            ("not-a-segment", with_selector(0, b"hello, journal")),
        ]
    }

    fn configs() -> Vec<(&'static str, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let shipped = |name: &str| std::fs::read(root.join(name)).unwrap();
        let minimal = b"[broker]\nname = \"solo\"\ndata_dir = \"data\"\n".to_vec();
        // Every bound at its edge, a slave with credentials, an IPv6 master.
        let edges = b"[broker]
name = \"b\"
data_dir = \"/var/lib/mmq\"
segment_size = 65537
max_memory = \"1MiB\"

[stomp]
max_frame_size = \"1KiB\"
heartbeat_grace = 10.0
max_pending_frames = 16

[replication]
master_connector_uri = \"tcp://[::1]:62001\"
user = \"u\"
password = \"p\"
heartbeat_ms = 10
heartbeat_misses = 1
"
        .to_vec();
        vec![
            ("broker.toml", shipped("broker.toml")),
            ("master.toml", shipped("master.toml")),
            ("slave.toml", shipped("slave.toml")),
            ("minimal.toml", minimal),
            ("edges.toml", edges),
        ]
    }
}
