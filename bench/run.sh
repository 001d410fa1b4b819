#!/usr/bin/env bash
# The benchmark harness: serves one hello component with `shoal run`, with
# `wasmtime serve -Scli` (when `wasmtime` is installed), the same hello
# written with shoal-sdk under `shoal run`, and with a raw hyper
# server (no Wasm: the ceiling), loads each in turns on loopback with wrk,
# and prints req/s, p50, p99, the ratios, and the CPU time the servers
# and wrk spent per request (from /proc and bash's `time`). Rounds
# alternate between the systems so a noisy machine hurts them alike; the
# table gives medians.
# A realistic mix follows: the probe guest answering 64 KiB
# (`GET /bytes?n=65536`) and echoing a 64 KiB POST (`/echo`), under
# `shoal run` and `wasmtime serve` (MIX=0 skips). Then bench/footprint.py
# prints cold start, idle RSS and RSS under load (FOOTPRINT=0 skips).
# Beside them, a mesh of two `shoal host`s serves the same hello from one
# node: loaded directly, and through the other node, which forwards; the
# difference is what forwarding costs (MESH=0 skips it).
# State rows (KV=0 skips): the kv-probe guest (tests/guests) doing one get
# and one increment per request (`/bench/counter`) and one get of a
# 100-byte value (`/bench/read`), and examples/counter's `/count` (one
# increment through shoal-sdk), under `shoal run --kv default` on a
# durable SQLite store in KV_DIR (default: under CARGO_TARGET_DIR, so on
# a disk and not a tmpfs); the summary gives the CPU per request each adds
# over hello and the fsync latency of KV_DIR's disk (dd ... oflag=dsync),
# which bounds what group commit can do.
#
#   bench/run.sh                      # 3 rounds of 10 s at 8 and 64 connections
#   ROUNDS=5 DURATION=20s bench/run.sh
#   COMPONENT=path/to/other.wasm PATH_=/x bench/run.sh
#
# Install the baseline with: cargo install wasmtime-cli --version 48.0.8 --locked
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-8 64}"
THREADS="${THREADS:-1}"
# Servers on one core, wrk on the other, so neither dilutes the other's
# share (PIN=0 runs both unpinned).
if [ "${PIN:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 1); WRK_PIN=(taskset -c 0)
else
  SERVER_PIN=(); WRK_PIN=()
fi
URL_PATH="${PATH_:-/}"

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else
    echo "bench: wrk is missing; install it with \`sudo apt-get install wrk\`" >&2; exit 1; fi
fi

cargo build --release -q -p shoal-host -p hyper-hello
SDK_COMPONENT=""
if [ -z "${COMPONENT:-}" ]; then
  # `hello` on raw bindings, and `sdk-hello`: the same response written
  # with shoal-sdk, to measure what the SDK costs per request.
  GUESTS=(-p hello -p sdk-hello -p probe)
  if [ "${KV:-1}" != 0 ]; then
    if [ -d tests/guests/kv-probe ]; then GUESTS+=(-p kv-probe); else
      echo "bench: tests/guests/kv-probe is missing; skipping its key-value rows" >&2; fi
    cargo build --release -q --target wasm32-wasip2 --manifest-path examples/Cargo.toml \
      -p counter --target-dir "$CARGO_TARGET_DIR/examples"
    COUNTER="$CARGO_TARGET_DIR/examples/wasm32-wasip2/release/counter.wasm"
  fi
  cargo build --release -q --target wasm32-wasip2 --manifest-path tests/guests/Cargo.toml \
    "${GUESTS[@]}" --target-dir "$CARGO_TARGET_DIR/guests"
  COMPONENT="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release/hello.wasm"
  SDK_COMPONENT="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release/sdk_hello.wasm"
  PROBE="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release/probe.wasm"
  if [[ " ${GUESTS[*]} " == *" kv-probe "* ]]; then
    KV_PROBE="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release/kv_probe.wasm"
  fi
fi
BIN="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
# The key-value stores: on the disk the data dir would be on, not a tmpfs.
KV_DIR="${KV_DIR:-$CARGO_TARGET_DIR/bench-kv}"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  if [ -n "${KV_STATE:-}" ]; then rm -rf "$KV_STATE"; fi
}
trap cleanup EXIT

# start NAME COMMAND...: runs a server on 127.0.0.1:0 and waits (60 s at
# most) for the `http://ADDR/` it prints; sets ADDR_<NAME>.
start() {
  local name="$1"; shift
  "${SERVER_PIN[@]}" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  printf -v "PID_$name" "%s" "$!"
  for _ in $(seq 600); do
    local addr
    addr="$(grep -o 'http://[0-9.:]*/' "$WORK/$name.log" | head -1 || true)"
    if [ -n "$addr" ]; then addr="${addr#http://}"; printf -v "ADDR_$name" "%s" "${addr%/}"; return; fi
    sleep 0.1
  done
  echo "bench: $name did not start:" >&2; cat "$WORK/$name.log" >&2; exit 1
}

SYSTEMS=(shoal)
start shoal env SHOAL_CACHE_DIR="$WORK/cache" SHOAL_LOG=warn "$BIN/shoal" run "$COMPONENT" --listen 127.0.0.1:0
if [ -n "$SDK_COMPONENT" ]; then
  SYSTEMS+=(sdk)
  start sdk env SHOAL_CACHE_DIR="$WORK/cache" SHOAL_LOG=warn "$BIN/shoal" run "$SDK_COMPONENT" --listen 127.0.0.1:0
fi
if command -v wasmtime >/dev/null; then
  SYSTEMS+=(wasmtime)
  start wasmtime wasmtime serve -Scli --addr 127.0.0.1:0 "$COMPONENT"
else
  echo "bench: wasmtime not installed; skipping the baseline (cargo install wasmtime-cli --version 48.0.8 --locked)" >&2
fi
SYSTEMS+=(hyper)
start hyper "$BIN/hyper-hello" 127.0.0.1:0

# The mix: 64 KiB out and 64 KiB echoed, on the probe guest.
if [ -n "${PROBE:-}" ] && [ "${MIX:-1}" != 0 ]; then
  python3 -c 'print("wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", 65536)")' >"$WORK/post64k.lua"
  start probe_shoal env SHOAL_CACHE_DIR="$WORK/cache" SHOAL_LOG=warn "$BIN/shoal" run "$PROBE" --listen 127.0.0.1:0
  for kind in out echo; do
    SYSTEMS+=("shoal_$kind"); printf -v "ADDR_shoal_$kind" "%s" "$ADDR_probe_shoal"
  done
  if command -v wasmtime >/dev/null; then
    start probe_wasmtime wasmtime serve -Scli --addr 127.0.0.1:0 "$PROBE"
    for kind in out echo; do
      SYSTEMS+=("wasmtime_$kind"); printf -v "ADDR_wasmtime_$kind" "%s" "$ADDR_probe_wasmtime"
    done
  fi
  URL_shoal_out="/bytes?n=65536"; URL_wasmtime_out="/bytes?n=65536"
  URL_shoal_echo=/echo; URL_wasmtime_echo=/echo
  SCRIPT_shoal_echo="$WORK/post64k.lua"; SCRIPT_wasmtime_echo="$WORK/post64k.lua"
fi

# The state rows: kv-probe's get+increment and get, and the SDK counter,
# each on its own durable store.
if [ -n "${KV_PROBE:-}${COUNTER:-}" ] && [ "${KV:-1}" != 0 ]; then
  KV_STATE="$KV_DIR/run.$$"
  mkdir -p "$KV_STATE"
  # fsync latency of that disk: 1000 synchronous 4 KiB writes.
  dd_line="$(LC_ALL=C dd if=/dev/zero of="$KV_STATE/fsync.probe" bs=4k count=1000 oflag=dsync 2>&1 | tail -1)"
  rm -f "$KV_STATE/fsync.probe"
  FSYNC_US="$(echo "$dd_line" | sed -n 's/.* copied, \([0-9.e+-]*\) s,.*/\1/p' | awk '{printf "%.0f", $1 * 1000}')"
  export FSYNC_US FSYNC_FS="$(stat -f -c %T "$KV_STATE") at $KV_DIR"
  if [ -n "${KV_PROBE:-}" ]; then
    start kv env SHOAL_CACHE_DIR="$WORK/cache" SHOAL_LOG=warn "$BIN/shoal" run "$KV_PROBE" --listen 127.0.0.1:0 \
      --kv default --state-dir "$KV_STATE/kv-probe"
    # What /bench/read reads: a 100-byte value.
    head -c 100 /dev/zero | tr '\0' v | curl -sf -X PUT --data-binary @- "http://$ADDR_kv/kv/default/read" >/dev/null \
      || { echo "bench: kv-probe did not store the value /bench/read reads" >&2; exit 1; }
    SYSTEMS+=(kv_counter kv_read)
    ADDR_kv_counter="$ADDR_kv"; URL_kv_counter=/bench/counter
    ADDR_kv_read="$ADDR_kv"; URL_kv_read=/bench/read
  fi
  if [ -n "${COUNTER:-}" ]; then
    start counter env SHOAL_CACHE_DIR="$WORK/cache" SHOAL_LOG=warn "$BIN/shoal" run "$COUNTER" --listen 127.0.0.1:0 \
      --kv default --state-dir "$KV_STATE/counter"
    SYSTEMS+=(sdk_counter)
    ADDR_sdk_counter="$ADDR_counter"; URL_sdk_counter=/count
  fi
fi

if [ "${MESH:-1}" != 0 ]; then
  "$BIN/shoal" keygen "$WORK/cluster.key" 2>/dev/null
  mesh_host() { # NAME [--join ADDR]
    local name="$1"; shift
    start "$name" env SHOAL_LOG=warn "$BIN/shoal" host --data-dir "$WORK/$name" --name "$name" \
      --listen 127.0.0.1:0 --admin 127.0.0.1:0 --gossip 127.0.0.1:0 --cluster-key-file "$WORK/cluster.key" "$@"
    for _ in $(seq 100); do grep -q 'admin API on' "$WORK/$name.log" && break; sleep 0.1; done
  }
  mesh_host m1
  mesh_host m2 --join "$(sed -n 's/^gossip on \([0-9.:]*\) .*/\1/p' "$WORK/m1.log")"
  ADMIN_m1="$(sed -n 's|^admin API on http://\([0-9.:]*\)/|\1|p' "$WORK/m1.log")"
  for _ in $(seq 100); do
    [ "$(curl -sf "http://$ADMIN_m1/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["members"])')" = 2 ] && break
    sleep 0.1
  done
  SHOAL_DATA_DIR="$WORK/m1" "$BIN/shoal" deploy "$COMPONENT" --name hello --admin "http://$ADMIN_m1" >/dev/null 2>&1
  for _ in $(seq 200); do
    holder="$(curl -sf -H "authorization: Bearer $(cat "$WORK/m1/token")" "http://$ADMIN_m1/v1/apps/hello" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["nodes"][0] if sorted(v["ready_on"]) == v["nodes"] else "")')"
    [ -n "$holder" ] && break
    sleep 0.1
  done
  [ -n "$holder" ] || { echo "bench: the mesh never got hello ready" >&2; exit 1; }
  if [ "$holder" = m1 ]; then other=m2; else other=m1; fi
  ADDR_direct="$(eval echo "\$ADDR_$holder")"; URL_direct=/hello
  ADDR_forwarded="$(eval echo "\$ADDR_$other")"; URL_forwarded=/hello
  SYSTEMS+=(direct forwarded)
fi

# The server processes behind each system, whose CPU time a run counts.
PIDS_shoal="${PID_shoal:-}"; PIDS_sdk="${PID_sdk:-}"; PIDS_wasmtime="${PID_wasmtime:-}"; PIDS_hyper="${PID_hyper:-}"
PIDS_shoal_out="${PID_probe_shoal:-}"; PIDS_shoal_echo="${PID_probe_shoal:-}"
PIDS_wasmtime_out="${PID_probe_wasmtime:-}"; PIDS_wasmtime_echo="${PID_probe_wasmtime:-}"
PIDS_direct="${PID_m1:-} ${PID_m2:-}"; PIDS_forwarded="${PID_m1:-} ${PID_m2:-}"
PIDS_kv_counter="${PID_kv:-}"; PIDS_kv_read="${PID_kv:-}"; PIDS_sdk_counter="${PID_counter:-}"
TICK="$(getconf CLK_TCK)"
# cpu_seconds SYSTEM: user + system CPU time its servers have used so far.
cpu_seconds() {
  local pids="PIDS_$1" ticks=0 pid
  for pid in ${!pids}; do
    # Fields after the command name: utime and stime are the 12th and 13th.
    ticks=$((ticks + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$ticks $TICK" | awk '{printf "%.3f", $1 / $2}'
}

# url SYSTEM: where to load it; script SYSTEM: wrk's options for its requests.
url() { local a="ADDR_$1" p="URL_$1"; echo "http://${!a}${!p:-$URL_PATH}"; }
script() { local s="SCRIPT_$1"; if [ -n "${!s:-}" ]; then echo "-s ${!s}"; fi; }
for system in "${SYSTEMS[@]}"; do
  curl -sf "$(url "$system")" >/dev/null || { echo "bench: $system does not answer" >&2; exit 1; }
  # shellcheck disable=SC2046
  "${WRK_PIN[@]}" wrk -t"$THREADS" -c8 -d2s $(script "$system") "$(url "$system")" >/dev/null   # warm-up
done

RESULTS="$WORK/results.tsv"
for round in $(seq "$ROUNDS"); do
  for conns in $CONNS; do
    for system in "${SYSTEMS[@]}"; do
      before="$(cpu_seconds "$system")"
      # shellcheck disable=SC2046
      out="$( { TIMEFORMAT='%3U %3S'; time "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency $(script "$system") "$(url "$system")"; } 2>"$WORK/wrk.time")"
      server_cpu="$(echo "$before $(cpu_seconds "$system")" | awk '{printf "%.3f", $2 - $1}')"
      wrk_cpu="$(awk '{printf "%.3f", $1 + $2}' "$WORK/wrk.time")"
      errors="$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')"
      echo "$out" | awk -v s="$system" -v c="$conns" -v r="$round" -v e="$errors" -v sc="$server_cpu" -v wc="$wrk_cpu" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        / requests in / { n = $1 }
        END { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s, c, r, rps, p50, p99, (n ? 1e6 * sc / n : 0), (n ? 1e6 * wc / n : 0), e }' >>"$RESULTS"
      echo "round $round: $system at $conns connections done" >&2
    done
  done
done

python3 - "$RESULTS" "$COMPONENT" "$DURATION" "$ROUNDS" <<'PY'
import statistics, sys, collections, os
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = collections.defaultdict(list)
errors = collections.defaultdict(list)
for system, conns, _round, rps, p50, p99, cpu, wrk_cpu, err in rows:
    by[(system, int(conns))].append((float(rps), float(p50), float(p99), float(cpu), float(wrk_cpu)))
    if err.strip(): errors[(system, int(conns))].append(err.strip())
med = {k: tuple(statistics.median(x[i] for x in v) for i in range(5)) for k, v in by.items()}
print(f"component: {os.path.basename(sys.argv[2])} ({os.path.getsize(sys.argv[2])} bytes); "
      f"{sys.argv[4]} rounds of {sys.argv[3]} per cell; medians")
print("cpu: server processes' CPU time per request (user + system); wrk: the load generator's, on the same cores")
print(f"{'conns':>5}  {'system':<18}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'vs wasmtime':>13}{'of ceiling':>12}"
      f"{'cpu us/req':>12}{'wrk us/req':>12}")
for conns in sorted({c for _, c in med}):
    base = med.get(("wasmtime", conns))
    ceil = med.get(("hyper", conns))
    for system, label in (("shoal", "shoal run"), ("sdk", "shoal run, sdk"), ("wasmtime", "wasmtime serve"), ("hyper", "hyper (no wasm)"),
                          ("direct", "mesh, holder"), ("forwarded", "mesh, forwarded"),
                          ("shoal_out", "64k out, shoal"), ("wasmtime_out", "64k out, wasmtime"),
                          ("shoal_echo", "64k echo, shoal"), ("wasmtime_echo", "64k echo, wasmt."),
                          ("kv_read", "kv: get"), ("kv_counter", "kv: get+incr"), ("sdk_counter", "kv: incr, sdk")):
        if (system, conns) not in med: continue
        rps, p50, p99, cpu, wrk_cpu = med[(system, conns)]
        mix = system.split("_")[1] if "_" in system else None
        b = med.get((f"wasmtime_{mix}", conns)) if mix else base
        ratio = f"{rps / b[0]:.2f}x" if b else "-"
        share = f"{100 * rps / ceil[0]:.0f}%" if ceil and not mix else "-"
        print(f"{conns:>5}  {label:<18}{rps:>8.0f}{p50:>9.2f}{p99:>9.2f}{ratio:>13}{share:>12}"
              f"{cpu:>12.1f}{wrk_cpu:>12.1f}")
print("targets: hello >= 4.0x wasmtime with p99 <= wasmtime's; the 64k ratios within 20% of hello's")
for conns in sorted({c for _, c in med}):
    if ("shoal", conns) not in med or ("wasmtime", conns) not in med: continue
    hello = med[("shoal", conns)][0] / med[("wasmtime", conns)][0]
    p99 = (med[("shoal", conns)][2], med[("wasmtime", conns)][2])
    verdict = "met" if hello >= 4.0 and p99[0] <= p99[1] else "MISSED"
    print(f"hello at {conns} connections: {hello:.2f}x, p99 {p99[0]:.2f} vs {p99[1]:.2f} ms: {verdict}")
    s, w = med[("shoal", conns)], med[("wasmtime", conns)]
    if s[3] > 0:
        print(f"  CPU per request: shoal {s[3]:.1f} us, wasmtime serve {w[3]:.1f} us ({w[3] / s[3]:.2f}x less); "
              f"wrk {s[4]:.1f} / {w[4]:.1f} us beside them")
    for mix in ("out", "echo"):
        s, w = med.get((f"shoal_{mix}", conns)), med.get((f"wasmtime_{mix}", conns))
        if s and w:
            r = s[0] / w[0]
            print(f"64k {mix} at {conns} connections: {r:.2f}x, {100 * (r / hello - 1):+.0f}% of hello's ratio: "
                  f"{'met' if r >= 0.8 * hello else 'MISSED'}")
for conns in sorted({c for _, c in med}):
    if ("sdk", conns) in med and ("shoal", conns) in med:
        overhead = med[("shoal", conns)][0] / med[("sdk", conns)][0] - 1
        print(f"sdk per-request time over raw bindings at {conns} connections: {100 * overhead:+.1f}%")
for conns in sorted({c for _, c in med}):
    if ("direct", conns) in med and ("forwarded", conns) in med:
        d, f = med[("direct", conns)], med[("forwarded", conns)]
        print(f"forwarding adds {f[1] - d[1]:+.2f} ms at p50 and {f[2] - d[2]:+.2f} ms at p99 at {conns} connections "
              f"({f[0] / d[0]:.2f}x the holder's req/s)")
if os.environ.get("FSYNC_US"):
    print(f"fsync latency of the key-value stores' disk ({os.environ.get('FSYNC_FS', '?')}): "
          f"{os.environ['FSYNC_US']} us per synchronous 4 KiB write (dd bs=4k count=1000 oflag=dsync)")
print("targets: a get costs <= 15% CPU per request over hello; durable increments >= 5,000/s at 64 connections")
for conns in sorted({c for _, c in med}):
    hello = med.get(("shoal", conns))
    for system, what in (("kv_read", "get"), ("kv_counter", "get+increment"), ("sdk_counter", "sdk increment")):
        row = med.get((system, conns))
        if not row or not hello: continue
        extra = row[3] - hello[3]
        line = (f"kv {what} at {conns} connections: {row[0]:.0f} req/s ({row[0] / hello[0]:.2f}x hello's), "
                f"{row[3]:.1f} us CPU per request, {extra:+.1f} us ({100 * extra / hello[3] if hello[3] else 0:+.0f}%) over hello's {hello[3]:.1f}")
        if system == "kv_read":
            line += f": {'met' if row[3] <= 1.15 * hello[3] else 'MISSED'}"
        elif system == "kv_counter" and conns == 64:
            line += f": {'met' if row[0] >= 5000 else 'MISSED'}"
        print(line)
for (system, conns), errs in sorted(errors.items()):
    print(f"note: {system} at {conns} connections reported: {errs[0]}")
PY

if [ "${FOOTPRINT:-1}" != 0 ]; then
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  PIDS=()
  echo
  # The Python guest of tests/compat.rs, a ~40 MB component, for a large
  # component's cold start (skipped without componentize-py).
  wit="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wasip2-2.*/wit 2>/dev/null | tail -1 || true)"
  if [ -z "${LARGE:-}" ] && command -v componentize-py >/dev/null && [ -n "$wit" ]; then
    mkdir -p "$WORK/python" && cp tests/guests-python/app.py "$WORK/python/"
    if (cd "$WORK/python" && componentize-py -d "$wit" -w wasi:http/proxy@0.2.12 componentize app -o python.wasm >/dev/null); then
      LARGE="$WORK/python/python.wasm"
    fi
  fi
  SHOAL="$BIN/shoal" HELLO="$COMPONENT" LARGE="${LARGE:-}" python3 bench/footprint.py
fi
