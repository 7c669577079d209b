#!/usr/bin/env bash
# The shared log for BUFFERED ingest across replicas, from Debian's package:
# nats-server (2.9.10 in Debian 12) with JetStream. Quiet when it is present.
# The package ships a system service; none is started (see apt-install.sh):
# sqlgate's tests and scripts run their own servers from their own config.
set -euo pipefail
. "$(dirname "$0")/lib/apt-install.sh"

command -v nats-server >/dev/null 2>&1 || [ -x /usr/bin/nats-server ] || apt_install nats-server
