#!/usr/bin/env bash
# The per-request HTTP/2 load balancer for several gateway replicas, from
# Debian's package: haproxy (2.6 in Debian 12; scripts/haproxy.sh runs it with
# deploy/haproxy/haproxy.cfg). Quiet when it is present. The package ships a
# system service with its own /etc/haproxy/haproxy.cfg; none is started (see
# apt-install.sh), and sqlgate never uses that file.
set -euo pipefail
. "$(dirname "$0")/lib/apt-install.sh"

command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || apt_install haproxy
