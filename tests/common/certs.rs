//! Certificates for the TLS tests, made the way a user makes them: scripts/gen-certs.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes a CA and its certificates in `dir`, lasting `days` (negative: already
/// expired); returns `dir`.
pub fn make(dir: &Path, days: i32) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-certs.sh");
    let made = Command::new(script)
        .arg(dir)
        .env("CERT_DAYS", days.to_string())
        .output()
        .expect("gen-certs.sh runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    dir.to_path_buf()
}

/// A `[tls]` section serving the broker certificate in `dir`, with `extra` lines.
pub fn section(dir: &Path, extra: &str) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
        dir.join("broker.pem").display(),
        dir.join("broker.key").display()
    )
}
