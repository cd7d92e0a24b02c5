#!/usr/bin/env bash
# Makes the TLS files the SDKs' tests share (test use only: the keys are public):
#   ca.pem                  a CA that signs the two certificates below
#   server.pem, server.key  the dispatcher's certificate, for 127.0.0.1 and localhost
#   client.pem, client.key  a worker's client certificate, for mutual TLS
# Keys are unencrypted PKCS#8. Valid for 100 years from the day they were made; run
# this again to make new ones (needs the openssl command).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
days=36500
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -subj "/CN=trio_pipe test CA" -keyout "$work/ca.key" -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

issue() { # name subject extensions
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
        -keyout "$work/$1.key" -out "$work/$1.csr"
    printf '%s\n' "$3" >"$work/$1.ext"
    openssl x509 -req -in "$work/$1.csr" -CA ca.pem -CAkey "$work/ca.key" \
        -CAcreateserial -CAserial "$work/ca.srl" -days "$days" -extfile "$work/$1.ext" -out "$1.pem"
    openssl pkcs8 -topk8 -nocrypt -in "$work/$1.key" -out "$1.key"
}
issue server "/CN=127.0.0.1" "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
issue client "/CN=worker-1" "extendedKeyUsage=clientAuth"
