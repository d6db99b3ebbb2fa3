#!/usr/bin/env bash
# Makes a certificate authority and, signed by it, the certificates the shipped configs'
# TLS settings name (commented out in configs/*.toml; the README's "TLS" section says how
# to turn them on), with openssl:
#
#   scripts/gen-certs.sh [DIR]        # default: certs/ at the repository root
#
#   DIR/ca.pem, ca.key          the CA (clients and slaves trust ca.pem: --ca, replication.ca)
#   DIR/broker.pem, broker.key  every broker's certificate: localhost and 127.0.0.1
#   DIR/client.pem, client.key  a client certificate, for mutual TLS ([tls] client_ca)
#
# Keys are P-256 ECDSA, in PKCS#8 PEM. CERT_DAYS (default 825) sets how long they last;
# a negative value makes certificates that have already expired (the tests use one).
# An existing CA in DIR is kept and signs again, so clients that trust it keep working.
set -euo pipefail
command -v openssl >/dev/null || { echo "gen-certs: openssl is needed" >&2; exit 1; }
dir=${1:-$(cd "$(dirname "$0")/.." && pwd)/certs}
days=${CERT_DAYS:-825}
mkdir -p "$dir"
cd "$dir"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -s ca.pem ] || [ ! -s ca.key ]; then
  key ca.key
  openssl req -x509 -new -key ca.key -out ca.pem -days "${CA_DAYS:-3650}" \
    -subj "/CN=mirrormq CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "gen-certs: made the CA $dir/ca.pem"
fi

# sign NAME USAGE: NAME.key and NAME.pem for localhost and 127.0.0.1
sign() {
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=mirrormq $1" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
    -days "$days" -extfile <(printf '%s\n' \
      "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=$2") 2>/dev/null
  rm -f "$1.csr"
  echo "gen-certs: made $dir/$1.pem ($(openssl x509 -in "$1.pem" -noout -enddate))"
}
sign broker serverAuth,clientAuth
sign client clientAuth
chmod 644 ./*.pem
