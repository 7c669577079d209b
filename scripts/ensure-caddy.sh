#!/usr/bin/env bash
# The optional HTTP/3 front proxy and what its tests drive it with, from
# Debian's packages: caddy (2.6.2 in Debian 12; scripts/caddy.sh runs it), and
# for test/http3.test.ts the two HTTP/3 clients that work here: gtlsclient
# (ngtcp2-client) and chromium (driven by playwright-core, which downloads no
# browser). Quiet when all are present. `--proxy-only` installs caddy alone.
# The caddy package ships a system service; none is started (see apt-install.sh).
set -euo pipefail
. "$(dirname "$0")/lib/apt-install.sh"

missing=()
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
if [ "${1:-}" != "--proxy-only" ]; then
  command -v gtlsclient >/dev/null 2>&1 || missing+=(ngtcp2-client)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
