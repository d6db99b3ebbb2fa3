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

/// The base64 SHA-256 of `cert`'s public key (PEM), as Chromium's
/// `--ignore-certificate-errors-spki-list` takes it: a browser told to trust exactly that
/// certificate, as one trusting the CA would.
pub fn spki(cert: &Path) -> String {
    let hashed = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -in \"$0\" -pubkey -noout | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | base64",
        )
        .arg(cert)
        .output()
        .expect("openssl runs");
    let spki = String::from_utf8(hashed.stdout).unwrap().trim().to_string();
    assert_eq!(spki.len(), 44, "a base64 SHA-256 of {}", cert.display());
    spki
}
