#!/usr/bin/env bash
# A self-signed TLS certificate for running the docker-compose stack locally
# (docs/operations.md). nginx reads deploy/certs/tls.crt and deploy/certs/tls.key.
#
#   scripts/make-dev-cert.sh                    # localhost and 127.0.0.1
#   scripts/make-dev-cert.sh ml.internal 10.0.0.5   # more names or addresses
#   CERT_DIR=/tmp/certs scripts/make-dev-cert.sh  # somewhere else
#   FORCE=1 scripts/make-dev-cert.sh            # replace an existing certificate
#
# Browsers and clients will not trust it: use `curl -k` or `--cacert deploy/certs/tls.crt`.
# For a real deployment put the certificate and key of your CA (or Let's Encrypt) in the
# same two files instead. deploy/certs/ is git-ignored: a private key never gets committed.
set -euo pipefail
cd "$(dirname "$0")/.."

CERT_DIR="${CERT_DIR:-deploy/certs}"
DAYS="${DAYS:-825}"  # the longest validity that macOS and iOS still accept
crt="$CERT_DIR/tls.crt"
key="$CERT_DIR/tls.key"

if [[ -e "$crt" && -z "${FORCE:-}" ]]; then
    echo "$crt exists; FORCE=1 $0 to replace it." >&2
    exit 0
fi
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
    if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then
        san="$san,IP:$name"
    else
        san="$san,DNS:$name"
    fi
done

mkdir -p "$CERT_DIR"
umask 077  # the key is readable by its owner only (nginx's master process reads it as root)
openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days "$DAYS" \
    -subj "/CN=${1:-localhost}" \
    -addext "subjectAltName=$san" \
    -addext "keyUsage=digitalSignature,keyEncipherment" \
    -addext "extendedKeyUsage=serverAuth" \
    -keyout "$key" -out "$crt" 2>/dev/null
chmod 644 "$crt"
echo "Wrote $crt and $key (valid $DAYS days for $san)."
