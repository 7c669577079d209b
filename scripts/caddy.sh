#!/usr/bin/env bash
# Runs Caddy in the foreground as sqlgate's HTTP/3 front proxy, in front of one
# gateway or several replicas that are already running: TLS with HTTP/3,
# HTTP/2 and HTTP/1.1 on one port (TCP and UDP), proxied over h2c, each call
# to the next healthy replica in turn. The configuration is
# deploy/caddy/Caddyfile; this script fills in its variables, keeps Caddy's
# state in a project directory (never ~/.local/share/caddy), validates the
# configuration and then becomes Caddy (`exec`), so its PID is Caddy's and
# Ctrl-C or SIGTERM stops it. Settings (environment):
#
#   SQLGATE_CADDY_PORT       TCP and UDP port to serve on          (8443)
#   SQLGATE_CADDY_HOST       site name or IP in the certificate    (127.0.0.1)
#   SQLGATE_CADDY_BIND       addresses to listen on                (the host if it is an IP;
#                                                                   "127.0.0.1 [::1]" for localhost)
#   SQLGATE_CADDY_UPSTREAM   the gateway's host:port (cleartext),  ($SQLGATE_LISTEN or 127.0.0.1:8080)
#                            or several replicas' host:port separated by commas or spaces
#                            ("127.0.0.1:19001,127.0.0.1:19002"; IPv6 as [::1]:19001)
#   SQLGATE_CADDY_CERT, SQLGATE_CADDY_KEY
#                            PEM certificate chain and key         (a throwaway self-signed
#                                                                   ECDSA certificate in the state dir)
#   SQLGATE_CADDY_STATE_DIR  Caddy's HOME and XDG directories      (.sqlgate/caddy)
#   SQLGATE_CADDY_ACCESS_LOG JSON access log                       ($SQLGATE_CADDY_STATE_DIR/access.log)
#   SQLGATE_CADDY_CONFIG     the Caddyfile                         (deploy/caddy/Caddyfile)
#   SQLGATE_CADDY_ALLOW_PUBLIC=true
#                            allow a non-loopback SQLGATE_CADDY_BIND (see below)
#
# With several replicas Caddy balances every call (round robin), checks each
# replica's /readyz every 500 ms and tries a call whose connection could not
# be made on another replica. It does not route by `sqlgate-owner`: a call
# for a transaction that another replica holds is forwarded by the gateway.
#
# A public bind needs SQLGATE_CADDY_ALLOW_PUBLIC=true: the gateway sees every
# proxied call as coming from Caddy on loopback, so a gateway without
# SQLGATE_CREDENTIALS_FILE behind a public Caddy serves the database to anyone.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
say() { echo "sqlgate-caddy: $*" >&2; }

if ! command -v caddy >/dev/null 2>&1; then
  say "caddy is not installed; run scripts/ensure-caddy.sh --proxy-only (Debian's caddy package)"
  exit 1
fi

port="${SQLGATE_CADDY_PORT:-8443}"
host="${SQLGATE_CADDY_HOST:-127.0.0.1}"
upstream="${SQLGATE_CADDY_UPSTREAM:-${SQLGATE_LISTEN:-127.0.0.1:8080}}"
state="${SQLGATE_CADDY_STATE_DIR:-$root/.sqlgate/caddy}"
config="${SQLGATE_CADDY_CONFIG:-$root/deploy/caddy/Caddyfile}"

# Caddy wants its upstreams separated by spaces (the Caddyfile substitutes
# the list into `reverse_proxy`, one upstream per word). Checked here so that
# a typo is named rather than left to Caddy's adapter.
upstreams=""
set -f # "[::1]:8080" is not a glob pattern
for address in ${upstream//,/ }; do
  if ! [[ "$address" =~ ^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$ ]]; then
    say "SQLGATE_CADDY_UPSTREAM: \"$address\" is not host:port (IPv6: [::1]:8080)"
    exit 1
  fi
  upstreams="${upstreams:+$upstreams }$address"
done
set +f
if [ -z "$upstreams" ]; then
  say "SQLGATE_CADDY_UPSTREAM is empty: give the gateway's host:port, or several"
  exit 1
fi

is_ip() { [[ "$1" =~ ^[0-9.]+$ || "$1" == *:* ]]; }
if [ -n "${SQLGATE_CADDY_BIND:-}" ]; then
  bind="$SQLGATE_CADDY_BIND"
elif [ "$host" = "localhost" ]; then
  # localhost resolves to ::1 first; Caddy's UDP listener follows `bind`.
  bind="127.0.0.1 [::1]"
elif is_ip "$host"; then
  bind="$host"
else
  say "set SQLGATE_CADDY_BIND (e.g. 0.0.0.0) to serve $host"
  exit 1
fi

if [ "${SQLGATE_CADDY_ALLOW_PUBLIC:-}" != "true" ]; then
  for address in $bind; do
    case "$address" in
      127.* | "[::1]" | "::1" | localhost) ;;
      *)
        say "SQLGATE_CADDY_BIND=$address is not a loopback address: anyone who reaches it reaches"
        say "the gateway as if from loopback. Give the gateway SQLGATE_CREDENTIALS_FILE, then set"
        say "SQLGATE_CADDY_ALLOW_PUBLIC=true (and open UDP as well as TCP port $port)."
        exit 1
        ;;
    esac
  done
fi

mkdir -p "$state/data" "$state/config"
cert="${SQLGATE_CADDY_CERT:-}"
key="${SQLGATE_CADDY_KEY:-}"
if [ -z "$cert" ] && [ -z "$key" ]; then
  # A throwaway certificate that Chromium accepts over QUIC when pinned by
  # its SPKI: ECDSA P-256, SANs for the loopback names, serverAuth.
  cert="$state/self-signed-$host.pem"
  key="$state/self-signed-$host.key"
  if ! [ -s "$cert" ] || ! openssl x509 -checkend 86400 -noout -in "$cert" >/dev/null 2>&1; then
    san="DNS:localhost,IP:127.0.0.1,IP:::1"
    case "$host" in
      localhost | 127.0.0.1 | ::1) ;;
      *) if is_ip "$host"; then san="$san,IP:$host"; else san="$san,DNS:$host"; fi ;;
    esac
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
      -keyout "$key" -out "$cert" -subj "/CN=$host" \
      -addext "subjectAltName=$san" -addext "extendedKeyUsage=serverAuth" 2>/dev/null
  fi
  spki="$(openssl x509 -in "$cert" -pubkey -noout | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64)"
  say "self-signed certificate $cert; to try HTTP/3 in Chromium:"
  say "  chromium --user-data-dir=\$(mktemp -d) --origin-to-force-quic-on=$host:$port \\"
  say "    --ignore-certificate-errors-spki-list=$spki https://$host:$port/healthz"
elif [ -z "$cert" ] || [ -z "$key" ]; then
  say "set both SQLGATE_CADDY_CERT and SQLGATE_CADDY_KEY, or neither"
  exit 1
fi

export SQLGATE_CADDY_PORT="$port" SQLGATE_CADDY_HOST="$host" SQLGATE_CADDY_BIND="$bind" \
  SQLGATE_CADDY_UPSTREAM="$upstreams" SQLGATE_CADDY_CERT="$cert" SQLGATE_CADDY_KEY="$key" \
  SQLGATE_CADDY_ACCESS_LOG="${SQLGATE_CADDY_ACCESS_LOG:-$state/access.log}"
# Caddy keeps its storage (certificates, locks, autosave.json) under these.
export HOME="$state" XDG_DATA_HOME="$state/data" XDG_CONFIG_HOME="$state/config"

if ! out="$(caddy validate --config "$config" --adapter caddyfile 2>&1)"; then
  echo "$out" >&2
  say "invalid configuration: $config"
  exit 1
fi
say "HTTP/3, HTTP/2 and HTTP/1.1 on https://$host:$port (TCP and UDP, bind $bind) -> h2c://${upstreams// / h2c://}"
exec caddy run --config "$config" --adapter caddyfile
