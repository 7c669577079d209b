#!/usr/bin/env bash
# Makes sure a MariaDB or MySQL server binary is available for the embedded
# default database: installs Debian's mariadb-server when running as root on
# Debian/Ubuntu, otherwise prints the command to run. Quiet when one exists.
set -euo pipefail
. "$(dirname "$0")/lib/apt-install.sh"

for name in mariadbd mysqld; do
  for dir in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin /usr/libexec; do
    [ -x "$dir/$name" ] && exit 0
  done
  command -v "$name" >/dev/null 2>&1 && exit 0
done

if ! apt_install mariadb-server mariadb-client; then
  cat >&2 <<'MSG'
sqlgate: no MariaDB or MySQL server binary found (mariadbd or mysqld).
Install one, or point the gateway at an existing server:
  SQLGATE_MYSQL_URL=mysql://user:pass@host:3306/db npm start
MSG
  exit 1
fi
