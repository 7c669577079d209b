#!/usr/bin/env bash
# The command-line clients the tests use as real users would: curl (with
# HTTP/2) and openssl (to make a throwaway TLS certificate).
set -euo pipefail
. "$(dirname "$0")/lib/apt-install.sh"

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
