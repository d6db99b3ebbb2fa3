//! `decide` as a table: who follows, who claims and who waits, for each view.

use super::*;

fn candidate(name: &str, epoch: u64, seq: u64) -> Candidate {
    Candidate {
        name: name.into(),
        replication: format!("tcp://{name}:1"),
        epoch: Epoch(epoch),
        seq: Seq(seq),
    }
}

fn master(name: &str, epoch: u64) -> MasterNode {
    MasterNode {
        name: name.into(),
        replication: format!("tcp://{name}:1"),
        epoch: Epoch(epoch),
    }
}

/// The in-sync set of brokers `names`, by their replication addresses.
fn isr(names: &[&str], version: i32) -> Option<(Vec<String>, i32)> {
    Some((
        names.iter().map(|n| format!("tcp://{n}:1")).collect(),
        version,
    ))
}

/// What each of a, b and c decides in `view` (their positions as in `view.candidates`,
/// or empty stores when not registered).
fn decisions(view: &View) -> Vec<String> {
    ["a", "b", "c"]
        .iter()
        .map(|name| {
            let me = view
                .candidates
                .iter()
                .find(|c| c.name == *name)
                .cloned()
                .unwrap_or_else(|| candidate(name, 1, 0));
            match decide(&me, view) {
                Decision::Follow { replication, epoch } => format!("follow {replication} {epoch}"),
                Decision::Claim {
                    epoch,
                    epoch_version,
                    isr_version,
                } => format!("claim {epoch} {epoch_version:?} {isr_version:?}"),
                Decision::Wait(_) => "wait".to_string(),
            }
        })
        .collect()
}

#[test]
fn who_follows_claims_or_waits() {
    let all = vec![
        candidate("a", 1, 10),
        candidate("b", 1, 12),
        candidate("c", 1, 12),
    ];
    let cases: Vec<(&str, View, [&str; 3])> = vec![
        (
            "a master: everyone else follows it; its own old node makes it wait",
            View {
                master: Some(master("b", 3)),
                epoch: Some((Epoch(3), 2)),
                isr: isr(&["b", "a"], 4),
                candidates: all.clone(),
            },
            ["follow tcp://b:1 3", "wait", "follow tcp://b:1 3"],
        ),
        (
            "cold start of a new group: the most advanced store claims epoch 2",
            View {
                candidates: all.clone(),
                ..View::default()
            },
            ["wait", "claim 2 None None", "wait"],
        ),
        (
            "cold start, all empty: the first name",
            View {
                candidates: vec![
                    candidate("c", 1, 0),
                    candidate("a", 1, 0),
                    candidate("b", 1, 0),
                ],
                ..View::default()
            },
            ["claim 2 None None", "wait", "wait"],
        ),
        (
            "master gone: the first live in-sync broker, not the most advanced",
            View {
                epoch: Some((Epoch(3), 2)),
                isr: isr(&["x", "a", "b"], 4),
                candidates: all.clone(),
                ..View::default()
            },
            ["claim 4 Some(2) Some(4)", "wait", "wait"],
        ),
        (
            "master gone, no in-sync broker running: nobody may claim",
            View {
                epoch: Some((Epoch(3), 2)),
                isr: isr(&["x"], 4),
                candidates: all.clone(),
                ..View::default()
            },
            ["wait", "wait", "wait"],
        ),
        (
            "a store ahead of the epoch node (claimed before the node existed): above both",
            View {
                epoch: Some((Epoch(2), 0)),
                isr: isr(&["c"], 0),
                candidates: vec![candidate("c", 5, 1)],
                ..View::default()
            },
            ["wait", "wait", "claim 6 Some(0) Some(0)"],
        ),
        (
            "nobody registered",
            View::default(),
            ["wait", "wait", "wait"],
        ),
    ];
    for (what, view, expected) in cases {
        assert_eq!(decisions(&view), expected, "{what}");
    }
}

#[test]
fn node_texts_round_trip_and_bad_ones_say_why() {
    let node = master("b", 7);
    assert_eq!(MasterNode::parse(node.to_string().as_bytes()), Ok(node));
    let me = candidate("a", 2, 99);
    assert_eq!(Candidate::parse(me.to_string().as_bytes()), Ok(me));
    let names = vec!["a".to_string(), "b".to_string()];
    assert_eq!(parse_isr(isr_text(&names).as_bytes()), Ok(names));
    assert!(MasterNode::parse(b"name=x\nreplication=y\n")
        .unwrap_err()
        .contains("no epoch"));
    assert!(Candidate::parse(b"name=x\nreplication=y\nepoch=1\nseq=z\n")
        .unwrap_err()
        .contains("not a number"));
    assert!(MasterNode::parse(&[0xff]).is_err());
}
