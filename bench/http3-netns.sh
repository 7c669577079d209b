#!/usr/bin/env bash
# Runs bench/http3-latency.ts inside a private network namespace whose
# loopback loses and delays packets, to compare HTTP/3 (QUIC) with HTTP/2
# (TCP) where it matters: on a lossy, distant link.
#
# This kernel has no netem (CONFIG_NET_SCH_NETEM is unset) and nft has no
# `queue`, so the impairment is a small NFQUEUE program (compiled here from the
# C below against Debian's libnetfilter-queue-dev): iptables-legacy queues the
# packets of the two measured ports on INPUT (not OUTPUT, where TCP Small
# Queues adds a spurious half RTT), the program drops each with probability
# LOSS and releases the others after DELAY_MS. Every packet crosses INPUT once,
# so the round-trip time is twice DELAY_MS. Only client <-> Caddy and
# client <-> direct gateway are impaired; Caddy <-> its gateway and MariaDB stay
# fast, as on one host. lo's MTU is set to 1500 so TCP sends Internet-sized
# segments. Everything happens inside the namespace, which is removed at exit.
#
#   bench/http3-netns.sh                         # 1% loss, 40 ms RTT
#   BENCH_LOSS=0.02 BENCH_DELAY_MS=50 BENCH_REQUESTS=200 bench/http3-netns.sh
#
# Settings: BENCH_LOSS (0.01, per packet and direction), BENCH_DELAY_MS (20,
# one way), and those of bench/http3-latency.ts (BENCH_REQUESTS defaults to
# 300 here, BENCH_RUNS to 2: each sequential call takes a round trip or more).
# Needs root (namespaces, iptables); installs iptables, gcc and
# libnetfilter-queue-dev from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/apt-install.sh

loss="${BENCH_LOSS:-0.01}"
delay_ms="${BENCH_DELAY_MS:-20}"
caddy_port=18443
direct_port=18080

if [ "$(id -u)" != "0" ]; then
  echo "http3-netns: needs root (network namespaces, iptables)" >&2
  exit 1
fi
missing=()
command -v iptables-legacy >/dev/null 2>&1 || missing+=(iptables)
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
[ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || missing+=(libnetfilter-queue-dev)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
scripts/ensure-mysql.sh
scripts/ensure-caddy.sh
npm run --silent build

work="$(mktemp -d)"
ns="sqlgate-h3-$$"
impair_pid=""
cleanup() {
  [ -z "$impair_pid" ] || kill "$impair_pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/impair.c" <<'C'
/* Drops each queued packet with probability LOSS and accepts the others
 * DELAY_MS after they arrived, in arrival order. Usage: impair LOSS DELAY_MS */
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#define CAPACITY 65536
static struct { uint32_t id; double due; } held[CAPACITY];
static size_t head, count;
static double loss, delay_s;
static unsigned long seen, dropped;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int on_packet(struct nfq_q_handle *q, struct nfgenmsg *m, struct nfq_data *d, void *u) {
  (void)m; (void)u;
  struct nfqnl_msg_packet_hdr *h = nfq_get_msg_packet_hdr(d);
  uint32_t id = ntohl(h->packet_id);
  seen++;
  if (drand48() < loss || count == CAPACITY) {
    dropped++;
    return nfq_set_verdict(q, id, NF_DROP, 0, NULL);
  }
  held[(head + count) % CAPACITY].id = id;
  held[(head + count) % CAPACITY].due = now() + delay_s;
  count++;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: impair LOSS DELAY_MS\n"); return 2; }
  loss = atof(argv[1]);
  delay_s = atof(argv[2]) / 1000.0;
  srand48(time(NULL));
  struct nfq_handle *h = nfq_open();
  if (!h) { perror("nfq_open"); return 1; }
  struct nfq_q_handle *q = nfq_create_queue(h, 0, on_packet, NULL);
  if (!q) { perror("nfq_create_queue"); return 1; }
  nfq_set_mode(q, NFQNL_COPY_META, 0);
  nfq_set_queue_maxlen(q, CAPACITY);
  int fd = nfq_fd(h);
  int rcvbuf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  fprintf(stderr, "impair: loss %.3f, delay %.1f ms\n", loss, delay_s * 1000);
  char buf[65536];
  for (;;) {
    int timeout_ms = -1;
    if (count > 0) {
      double wait = held[head].due - now();
      timeout_ms = wait <= 0 ? 0 : (int)(wait * 1000) + 1;
    }
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, timeout_ms) > 0) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) nfq_handle_packet(h, buf, (int)n);
      else if (n < 0 && errno == ENOBUFS) fprintf(stderr, "impair: ENOBUFS\n");
    }
    double t = now();
    while (count > 0 && held[head].due <= t) {
      nfq_set_verdict(q, held[head].id, NF_ACCEPT, 0, NULL);
      head = (head + 1) % CAPACITY;
      count--;
    }
    if (seen > 0 && seen % 100000 == 0) fprintf(stderr, "impair: %lu packets, %lu dropped\n", seen, dropped);
  }
}
C
gcc -O2 -o "$work/impair" "$work/impair.c" -lnetfilter_queue

ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link set lo up
in_ns ip link set lo mtu 1500
for port in "$caddy_port" "$direct_port"; do
  for proto in tcp udp; do
    for side in --dport --sport; do
      in_ns iptables-legacy -A INPUT -p "$proto" "$side" "$port" \
        -j NFQUEUE --queue-num 0 --queue-bypass
    done
  done
done
ip netns exec "$ns" "$work/impair" "$loss" "$delay_ms" &
impair_pid=$!
sleep 0.2
kill -0 "$impair_pid"

rtt_ms=$((2 * delay_ms))
loss_pct="$(awk -v l="$loss" 'BEGIN { printf "%g", l * 100 }')"
in_ns env \
  BENCH_CADDY_PORT="$caddy_port" BENCH_DIRECT_PORT="$direct_port" \
  BENCH_REQUESTS="${BENCH_REQUESTS:-300}" BENCH_RUNS="${BENCH_RUNS:-2}" \
  BENCH_WARMUP="${BENCH_WARMUP:-50}" \
  BENCH_CONDITIONS="${loss_pct}% loss per packet, ${rtt_ms} ms RTT, network namespace" \
  BENCH_REPORT="${BENCH_REPORT:-http3-latency-lossy.md}" \
  node dist/bench/http3-latency.js
