//! Recovery tests: torn tails are cut, flipped bytes stop the start with file and offset.

use super::*;
use crate::journal::segment::{create, path_for, Fill, HEADER_LEN};
use std::os::unix::fs::FileExt;

fn write_entries(dir: &Path, first_seq: u64, seqs: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    let file = create(dir, Seq(first_seq), 64 * 1024, Fill::Zeros).unwrap();
    let mut buf = Vec::new();
    let mut offsets = Vec::new();
    for seq in seqs {
        offsets.push(HEADER_LEN + buf.len() as u64);
        Record {
            epoch: super::super::record::Epoch(1),
            seq: Seq(seq),
            payload: bytes::Bytes::from(format!("record {seq}")),
        }
        .encode_into(&mut buf);
    }
    file.write_all_at(&buf, HEADER_LEN).unwrap();
    offsets
}

fn seqs_read(dir: &Path, mode: Mode) -> Result<(Vec<u64>, Summary)> {
    let mut seqs = Vec::new();
    let summary = read(dir, mode, |_, _, e| {
        seqs.push(e.seq.0);
        Ok(())
    })?;
    Ok((seqs, summary))
}

#[test]
fn reads_every_segment_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), 1, 1..=3);
    write_entries(dir.path(), 4, 4..=6);
    let (seqs, summary) = seqs_read(dir.path(), Mode::Repair).unwrap();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(summary.segments, vec![Seq(1), Seq(4)]);
    assert_eq!(summary.last.map(|l| l.seq), Some(Seq(6)));
}

#[test]
fn torn_tail_is_cut_and_zeroed_so_appends_start_clean() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_entries(dir.path(), 1, 1..=3);
    let path = path_for(dir.path(), Seq(1));
    // A crash mid-write: the last record's payload is half there.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0u8; 4], offsets[2] + 26).unwrap();
    let (seqs, summary) = seqs_read(dir.path(), Mode::Repair).unwrap();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(summary.torn_tail_at, Some((path.clone(), offsets[2])));
    assert_eq!(summary.tail, Some((Seq(1), offsets[2])));
    // Repaired: a second read sees a clean end, no torn tail.
    let (seqs, summary) = seqs_read(dir.path(), Mode::Repair).unwrap();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(summary.torn_tail_at, None);
}

#[test]
fn flipped_byte_in_the_middle_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_entries(dir.path(), 1, 1..=3);
    let path = path_for(dir.path(), Seq(1));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offsets[1] + 30).unwrap();
    file.write_all_at(&[byte[0] ^ 1], offsets[1] + 30).unwrap();
    let error = seqs_read(dir.path(), Mode::Repair).unwrap_err().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains(&format!("offset {}", offsets[1])), "{error}");
}

#[test]
fn damage_in_an_older_segment_is_corruption_not_a_tail() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_entries(dir.path(), 1, 1..=3);
    write_entries(dir.path(), 4, 4..=5);
    let path = path_for(dir.path(), Seq(1));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xff], offsets[2] + 25).unwrap();
    assert!(matches!(
        seqs_read(dir.path(), Mode::Repair),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn read_only_mode_reports_a_torn_tail_without_repairing_it() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_entries(dir.path(), 1, 1..=2);
    let path = path_for(dir.path(), Seq(1));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0u8; 2], offsets[1] + 24).unwrap();
    for _ in 0..2 {
        let (seqs, summary) = seqs_read(dir.path(), Mode::ReadOnly).unwrap();
        assert_eq!(seqs, vec![1]);
        assert!(summary.torn_tail_at.is_some());
    }
}

#[test]
fn bad_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(path_for(dir.path(), Seq(1)), b"not a segment at all").unwrap();
    let error = seqs_read(dir.path(), Mode::Repair).unwrap_err().to_string();
    assert!(error.contains("bad magic"), "{error}");
}

#[test]
fn a_segment_named_with_the_last_seq_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), 1, 1..=2);
    create(dir.path(), Seq::LAST, 64 * 1024, Fill::Zeros).unwrap();
    let error = seqs_read(dir.path(), Mode::Repair).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("segment named seq 18446744073709551615"),
        "{text}"
    );
    assert!(text.contains(&format!("{:020}", u64::MAX)), "{text}");
}
