#!/usr/bin/env bash
# Runs HAProxy in the foreground as the per-request load balancer in front of
# several gateway replicas that are already running: one cleartext port for
# HTTP/1.1 and HTTP/2 (h2c prior knowledge), every call balanced on its own
# over HTTP/2 to the replicas. The configuration is the template
# deploy/haproxy/haproxy.cfg; this script renders it for the replicas given,
# writes the owners map, validates the result with `haproxy -c` and then
# becomes HAProxy (`exec ... -db`), so its PID is HAProxy's: Ctrl-C or
# SIGTERM stops it at once, SIGUSR1 lets calls in flight finish first.
# Settings (environment):
#
#   SQLGATE_HAPROXY_BACKENDS   the replicas, "name=host:port" separated    (required)
#                              by spaces, e.g. "g1=127.0.0.1:19001 g2=127.0.0.1:19002";
#                              a name is what `sqlgate-owner` and the
#                              `sqlgate-backend` response header carry
#   SQLGATE_HAPROXY_LISTEN     host:port to serve on                       (127.0.0.1:8081)
#   SQLGATE_HAPROXY_STATE_DIR  rendered haproxy.cfg, owners.map, stats     (.sqlgate/haproxy)
#                              socket haproxy.sock
#   SQLGATE_HAPROXY_CONFIG     the template                                (deploy/haproxy/haproxy.cfg)
#   SQLGATE_HAPROXY_ALLOW_PUBLIC=true
#                              allow a non-loopback SQLGATE_HAPROXY_LISTEN (see below)
#
# `scripts/haproxy.sh --check` renders and validates, prints the rendered
# file's path, and exits without running HAProxy.
#
# A public listen address needs SQLGATE_HAPROXY_ALLOW_PUBLIC=true: replicas
# see every call as coming from HAProxy, so gateways without
# SQLGATE_CREDENTIALS_FILE behind a public HAProxy serve the database to anyone.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
say() { echo "sqlgate-haproxy: $*" >&2; }

check_only=""
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  *)
    say "unknown argument $1 (the only one is --check)"
    exit 2
    ;;
esac

if ! command -v haproxy >/dev/null 2>&1; then
  say "haproxy is not installed; run scripts/ensure-haproxy.sh (Debian's haproxy package)"
  exit 1
fi

listen="${SQLGATE_HAPROXY_LISTEN:-127.0.0.1:8081}"
state="${SQLGATE_HAPROXY_STATE_DIR:-$root/.sqlgate/haproxy}"
template="${SQLGATE_HAPROXY_CONFIG:-$root/deploy/haproxy/haproxy.cfg}"
backends="${SQLGATE_HAPROXY_BACKENDS:-}"

# The listen address: host:port, an IPv6 host in brackets ([::1]:8081).
if [[ "$listen" =~ ^\[([0-9A-Fa-f:.]+)\]:([0-9]+)$ ]] || [[ "$listen" =~ ^([^:[:space:]]+):([0-9]+)$ ]]; then
  listen_host="${BASH_REMATCH[1]}"
  listen_port="${BASH_REMATCH[2]}"
else
  say "SQLGATE_HAPROXY_LISTEN=$listen: expected host:port (e.g. 127.0.0.1:8081, [::1]:8081, 0.0.0.0:8081)"
  exit 1
fi
if [ "${SQLGATE_HAPROXY_ALLOW_PUBLIC:-}" != "true" ]; then
  case "$listen_host" in
    127.* | ::1 | localhost) ;;
    *)
      say "SQLGATE_HAPROXY_LISTEN=$listen is not a loopback address: the replicas see every call as"
      say "coming from HAProxy. Give the gateways SQLGATE_CREDENTIALS_FILE, then set"
      say "SQLGATE_HAPROXY_ALLOW_PUBLIC=true."
      exit 1
      ;;
  esac
fi
# HAProxy reads the port after the last colon, without brackets ("::1:8081").
bind="$listen_host:$listen_port"

# The replicas: name=host:port, names unique and usable as HAProxy server and
# backend names (they also go into a map file and a response header).
if [ -z "${backends//[[:space:]]/}" ]; then
  say "set SQLGATE_HAPROXY_BACKENDS, e.g. \"g1=127.0.0.1:19001 g2=127.0.0.1:19002\""
  exit 1
fi
names=()
addresses=()
for entry in $backends; do
  if ! [[ "$entry" =~ ^([A-Za-z0-9_.-]+)=([^=[:space:]]+:[0-9]+)$ ]]; then
    say "SQLGATE_HAPROXY_BACKENDS: \"$entry\" is not name=host:port (names: letters, digits, _ . -)"
    exit 1
  fi
  for seen in "${names[@]}"; do
    if [ "$seen" = "${BASH_REMATCH[1]}" ]; then
      say "SQLGATE_HAPROXY_BACKENDS: the name ${BASH_REMATCH[1]} is used twice"
      exit 1
    fi
  done
  names+=("${BASH_REMATCH[1]}")
  addresses+=("${BASH_REMATCH[2]}")
done

# The state directory goes into the configuration unquoted (the map path is an
# argument of a sample converter): keep it to characters that need no quoting.
mkdir -p "$state"
state="$(cd "$state" && pwd)"
if ! [[ "$state" =~ ^[A-Za-z0-9_./+@-]+$ ]]; then
  say "SQLGATE_HAPROXY_STATE_DIR=$state: use a path of letters, digits and _ . / + @ - only"
  exit 1
fi
if [ ! -r "$template" ]; then
  say "no template at $template"
  exit 1
fi

config="$state/haproxy.cfg"
map="$state/owners.map"
# owners.map: the value of `sqlgate-owner` -> that replica's own backend. The
# SDK sends the replica's URL (its SQLGATE_NODE_URL, http://ADDRESS, from the
# `sqlgate-node` answer header); a person may send its name.
for i in "${!names[@]}"; do
  echo "${names[$i]} owner_${names[$i]}"
  echo "http://${addresses[$i]} owner_${names[$i]}"
done >"$map.tmp"
mv "$map.tmp" "$map"

# Render: @LISTEN@ and @STATE_DIR@ everywhere; each "#@each-replica" ... "#@end"
# block once per replica with @NAME@ and @ADDRESS@ filled in.
replicas=""
for i in "${!names[@]}"; do
  replicas+="${names[$i]} ${addresses[$i]}"$'\n'
done
REPLICAS="$replicas" BIND="$bind" STATE="$state" awk '
  BEGIN {
    n = split(ENVIRON["REPLICAS"], lines, "\n")
    for (i = 1; i <= n; i++) if (lines[i] != "") { split(lines[i], f, " "); count++; name[count] = f[1]; addr[count] = f[2] }
  }
  function fill(s) { gsub(/@LISTEN@/, ENVIRON["BIND"], s); gsub(/@STATE_DIR@/, ENVIRON["STATE"], s); return s }
  /^#@each-replica[[:space:]]*$/ { inside = 1; size = 0; next }
  /^#@end[[:space:]]*$/ {
    for (r = 1; r <= count; r++)
      for (j = 1; j <= size; j++) {
        line = fill(block[j]); gsub(/@NAME@/, name[r], line); gsub(/@ADDRESS@/, addr[r], line); print line
      }
    inside = 0; next
  }
  inside { block[++size] = $0; next }
  { print fill($0) }
' "$template" >"$config.tmp"
mv "$config.tmp" "$config"

if ! out="$(haproxy -c -f "$config" 2>&1)"; then
  echo "$out" >&2
  say "invalid configuration: $config (rendered from $template)"
  exit 1
fi
if [ -n "$check_only" ]; then
  echo "$out"
  echo "$config"
  exit 0
fi
say "HTTP/1.1 and h2c on http://$listen -> ${#names[@]} replica(s) over h2c: ${backends//  / }"
say "stats: echo 'show stat' | socat stdio $state/haproxy.sock"
exec haproxy -db -f "$config"
