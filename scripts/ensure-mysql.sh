#!/usr/bin/env bash
# Makes sure a MariaDB or MySQL server binary is available for the embedded default
# database. Installs Debian's mariadb-server when running as root on Debian/Ubuntu;
# otherwise prints the command to run. Idempotent and quiet when a server exists.
set -euo pipefail

find_server() {
  for name in mariadbd mysqld; do
    for dir in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin /usr/libexec; do
      if [ -x "$dir/$name" ]; then echo "$dir/$name"; return 0; fi
    done
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}

if server=$(find_server); then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "sqlgate: no MariaDB/MySQL server found; installing Debian's mariadb-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Debian's package tries to start a service; policy-rc.d keeps it from doing so.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq >&2 || true
  apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >&2
  server=$(find_server) || { echo "sqlgate: mariadb-server installed but no server binary found" >&2; exit 1; }
  echo "sqlgate: installed $server" >&2
  exit 0
fi

cat >&2 <<'MSG'
sqlgate: no MariaDB or MySQL server binary found (mariadbd or mysqld).
Install one, for example on Debian/Ubuntu:
  sudo apt-get install -y mariadb-server
or point the gateway at an existing server:
  SQLGATE_MYSQL_URL=mysql://user:pass@host:3306/db npm start
MSG
exit 1
