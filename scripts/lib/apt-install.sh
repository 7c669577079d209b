# Installs Debian packages when running as root on Debian/Ubuntu; otherwise
# prints the command and fails. Sourced by the ensure-* scripts.
apt_install() {
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "sqlgate: installing Debian packages: $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Packages such as mariadb-server try to start a service; policy-rc.d
    # (exit 101) keeps them from doing so.
    local made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    apt-get update -qq >&2 || true
    local status=0
    apt-get install -y -qq --no-install-recommends "$@" >&2 || status=$?
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    return $status
  fi
  echo "sqlgate: missing packages; install them with: sudo apt-get install -y $*" >&2
  return 1
}
