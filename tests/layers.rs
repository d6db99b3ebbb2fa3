//! The library's dependencies point one way. Every `crate::` path in `src/` is checked
//! against the layers below: a module may name only the modules its row allows, and the
//! table itself has no cycle. A new edge has to be added here, on purpose, in review.
//!
//! ```text
//! server, verify                      wiring, and the read-only store check
//! link, session, connection, client,  sockets: replication link, clients, client library,
//!   admin                               the admin listener
//! core                                the pure state machine
//! stomp, selector, broker, journal,  models: wire format, selectors, state, records,
//!   repl                              replication
//! error, deadline, runtime, codec,    the foundation and the seams
//!   http, meter, zk, ws, tls,
//!   transport, config
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const FOUNDATION: &[&str] = &[
    "error",
    "deadline",
    "runtime",
    "codec",
    "http",
    "meter",
    "zk",
    "ws",
    "tls",
    "transport",
    "config",
];

/// Each module and the modules it may name (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("deadline", &[]),
    ("runtime", &["deadline"]),
    ("codec", &["error", "runtime"]),
    ("http", &[]),
    ("meter", &[]),
    ("zk", &[]),
    ("ws", &[]),
    ("tls", &[]),
    ("transport", &["runtime", "tls"]),
    ("config", &["error", "http"]),
    ("stomp", &["error"]),
    ("selector", &[]),
    ("journal", &["error", "codec", "meter"]),
    ("broker", &["error", "codec", "journal", "selector"]),
    ("repl", &["error", "codec", "journal"]),
    (
        "core",
        &[
            "error", "codec", "config", "stomp", "broker", "journal", "repl",
        ],
    ),
    ("connection", &["error", "runtime", "stomp", "meter"]),
    (
        "client",
        &[
            "error",
            "runtime",
            "stomp",
            "connection",
            "tls",
            "ws",
            "transport",
        ],
    ),
    (
        "link",
        &[
            "error",
            "runtime",
            "codec",
            "config",
            "journal",
            "repl",
            "core",
            "tls",
            "transport",
        ],
    ),
    (
        "session",
        &[
            "error",
            "runtime",
            "config",
            "stomp",
            "selector",
            "broker",
            "core",
            "connection",
            "meter",
            "transport",
        ],
    ),
    (
        "admin",
        &[
            "error",
            "runtime",
            "config",
            "http",
            "meter",
            "broker",
            "journal",
            "repl",
            "core",
            "tls",
            "transport",
        ],
    ),
    ("verify", &["error", "broker", "journal"]),
    ("election", &["error", "runtime", "journal", "repl", "zk"]),
    (
        "server",
        &[
            "error",
            "runtime",
            "codec",
            "config",
            "stomp",
            "broker",
            "journal",
            "repl",
            "core",
            "link",
            "session",
            "admin",
            "election",
            "zk",
            "ws",
            "tls",
            "transport",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The library's source files, with the top-level module each belongs to. The binary's
/// own files (`main.rs`, `tools/`) and `lib.rs` are not library modules.
fn library_files() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let root = src();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&root).unwrap().to_path_buf();
            let first = relative
                .components()
                .next()?
                .as_os_str()
                .to_str()?
                .to_string();
            let module = first.trim_end_matches(".rs").to_string();
            (!["main", "lib", "tools"].contains(&module.as_str())).then_some((module, path))
        })
        .collect()
}

/// The top-level modules a source text names through `crate::` paths, including every
/// branch of a `use crate::{a, b::{c, d}}` group. `crate::Error` and `crate::Result` are
/// the error module's re-exports.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut start = 0;
            let inner = &group[..end];
            for (i, c) in inner.char_indices().chain([(inner.len(), ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        named.insert(first_segment(&inner[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            named.insert(first_segment(rest));
        }
    }
    named.remove("");
    named
}

fn first_segment(path: &str) -> String {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    match name.as_str() {
        "Error" | "Result" => "error".to_string(),
        "self" => String::new(),
        _ => name,
    }
}

#[test]
fn every_crate_path_follows_the_layers() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut breaches = Vec::new();
    let files = library_files();
    assert!(files.len() > 40, "found only {} library files", files.len());
    for (module, path) in files {
        let Some(may) = allowed.get(module.as_str()) else {
            breaches.push(format!(
                "{}: module `{module}` has no row in ALLOWED",
                path.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        for named in named_modules(&text) {
            if named != module && !may.contains(&named.as_str()) {
                breaches.push(format!(
                    "{}: `{module}` may not use `crate::{named}`",
                    path.display()
                ));
            }
        }
    }
    assert!(breaches.is_empty(), "{}", breaches.join("\n"));
}

#[test]
fn the_layers_have_no_cycle_and_the_foundation_names_no_model() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    // Depth-first from every module: meeting a module already on the path is a cycle.
    fn visit<'a>(
        module: &'a str,
        allowed: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
    ) {
        assert!(
            !path.contains(&module),
            "cycle: {} -> {module}",
            path.join(" -> ")
        );
        path.push(module);
        for next in allowed.get(module).copied().unwrap_or_default() {
            visit(next, allowed, path);
        }
        path.pop();
    }
    for module in allowed.keys() {
        visit(module, &allowed, &mut Vec::new());
    }
    for module in FOUNDATION {
        for named in allowed[module] {
            assert!(FOUNDATION.contains(named), "{module} names {named}");
        }
    }
}

#[test]
fn grouped_and_nested_uses_are_all_seen() {
    let text = "use crate::{broker::{A, B}, journal::Seq};\nfn f() -> crate::Result<()> { crate::core::x(); }";
    let named: Vec<String> = named_modules(text).into_iter().collect();
    assert_eq!(named, ["broker", "core", "error", "journal"]);
}
