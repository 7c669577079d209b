#!/usr/bin/env bash
# h2load (Debian's nghttp2-client), the HTTP/2 load generator the point-query
# benchmark drives the gateway with: written in C, it leaves the machine's two
# cores to the gateway and MariaDB, where a Node.js client would spend about
# as much CPU per call as the gateway itself.
set -euo pipefail
. "$(dirname "$0")/lib/apt-install.sh"

command -v h2load >/dev/null 2>&1 || apt_install nghttp2-client
