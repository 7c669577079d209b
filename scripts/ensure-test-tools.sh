#!/usr/bin/env bash
# The command-line clients the tests use as real users would: curl (with
# HTTP/2), openssl (to make a throwaway TLS certificate), and systemd-analyze
# (to check the systemd unit in deploy/).
set -euo pipefail
. "$(dirname "$0")/lib/apt-install.sh"

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
