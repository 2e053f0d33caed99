#!/usr/bin/env bash
# Generates the TEST-ONLY certificates committed under config/examples/certs/: a CA, server
# certificates for `localhost` (+ 127.0.0.1, twice: the second for rotation tests) and `www.example.test` (+ `*.example.test`), a
# client certificate for mTLS, and a CA the proxy does not trust (for rejection tests).
# Never use these keys for anything real: they are public.
#
#   scripts/gen-test-certs.sh [DIR]      (default: config/examples/certs)
set -euo pipefail
DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)/config/examples/certs}
mkdir -p "$DIR"
cd "$DIR"
DAYS=3650

ca() { # name subject
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" -days $DAYS \
    -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() { # name ca subject san usage
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$3" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$4" "$5" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -out "$1.crt" \
    -days $DAYS -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "corelane test CA"
ca other-ca "untrusted test CA"
leaf localhost ca localhost "DNS:localhost,IP:127.0.0.1" serverAuth
leaf localhost-rotated ca "localhost rotated" "DNS:localhost,IP:127.0.0.1" serverAuth
leaf example ca www.example.test "DNS:www.example.test,DNS:*.example.test" serverAuth
leaf client ca "corelane test client" "DNS:client.test" clientAuth
leaf other-client other-ca "untrusted client" "DNS:client.test" clientAuth
rm -f ./*.srl
echo "test certificates written to $DIR"
