#!/usr/bin/env bash
# The MQTT broker that test/mqtt-bridge.test.ts runs privately (its own port
# and config file) to feed client/examples/mqtt-bridge.ts. Debian's package
# also ships a system service; none is started here (see apt-install.sh).
set -euo pipefail
. "$(dirname "$0")/lib/apt-install.sh"

command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_install mosquitto
