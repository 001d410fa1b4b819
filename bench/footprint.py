#!/usr/bin/env python3
"""Throughput and footprint: Shoal beside `wasmtime serve`, each figure with its target.

  1. size of the `shoal` binary, as built and stripped (a temp copy);
  2. cold start, compile cache warm: spawn to first 200, median of COLD_TRIES (default 10),
     for `shoal run`, `wasmtime serve -Scli`, and a restarted `shoal host` ("ready after spawn");
     with LARGE=path/to/component.wasm, `shoal run` and `wasmtime serve` of that one too;
  3. idle RSS 3 s after one request: `shoal host` with hello deployed, just after the deploy
     and after a restart; `wasmtime serve`;
  4. the restarted host's RSS each second under wrk -t2 -c8 for LOAD_SECS (default 60).

    bench/footprint.py
    COLD_TRIES=3 LOAD_SECS=10 SHOAL=path/to/shoal HELLO=path/to/hello.wasm bench/footprint.py

SHOAL defaults to $CARGO_TARGET_DIR/release/shoal (CARGO_TARGET_DIR: ~/.cache/shoal-target),
HELLO to the hello guest under it. Without `wasmtime` on PATH its column is skipped.
Python 3 stdlib only; Linux (reads /proc/PID/status).
"""
import atexit, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/shoal-target"))
SHOAL = os.environ.get("SHOAL", os.path.join(TARGET, "release", "shoal"))
HELLO = os.environ.get("HELLO", os.path.join(TARGET, "guests/wasm32-wasip2/release/hello.wasm"))
# A large component (run.sh builds the Python guest with componentize-py when it is installed):
# its cold start is measured beside the small one's.
LARGE = os.environ.get("LARGE")
COLD_TRIES = int(os.environ.get("COLD_TRIES", "10"))
LOAD_SECS = int(os.environ.get("LOAD_SECS", "60"))
WASMTIME = shutil.which("wasmtime")
UP_TIMEOUT = 10.0  # seconds for any server to answer 200
COMPILE_TIMEOUT = 300.0  # the same, when it first compiles (a large component takes a minute)
PROCS, TMPDIRS = [], []


def cleanup():
    for p in PROCS:
        stop(p)
    for d in TMPDIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def tmpdir():
    TMPDIRS.append(tempfile.mkdtemp(prefix="shoal-footprint-"))
    return TMPDIRS[-1]


def spawn(cmd, env=None, log=None):
    out = open(log, "ab") if log else subprocess.DEVNULL
    p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                         stdout=out, stderr=subprocess.STDOUT)
    if log:
        out.close()  # the child holds its own copy
    PROCS.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def free_addr():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


def http_status(addr, path="/", timeout=2.0):
    """Status of a raw `GET path HTTP/1.1`, or None if the server is not up."""
    try:
        with socket.create_connection(addr.rsplit(":", 1), timeout=timeout) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                      % (path.encode(), addr.encode()))
            head = s.recv(64)
        return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None
    except (OSError, ValueError, IndexError):
        return None


def wait_200(p, addr, path, t0, timeout=UP_TIMEOUT):
    """Seconds from t0 to the first 200, polling every 1 ms for at most `timeout`."""
    while time.perf_counter() - t0 < timeout:
        if http_status(addr, path) == 200:
            return time.perf_counter() - t0
        if p.poll() is not None:
            raise RuntimeError("%s exited with %s before serving" % (p.args[0], p.returncode))
        time.sleep(0.001)
    raise RuntimeError("%s: no 200 from http://%s%s within %ss" % (p.args[0], addr, path, timeout))


def wait_log(path, pattern, p):
    """First group of `pattern` in the log at `path`, waiting at most UP_TIMEOUT."""
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            m = re.search(pattern, f.read())
        if m:
            return m.group(1)
        if p.poll() is not None:
            break
        time.sleep(0.01)
    raise RuntimeError("no /%s/ in %s within %ss" % (pattern, path, UP_TIMEOUT))


def rss(pid):
    """VmRSS, RssAnon, RssFile of a process, in MB."""
    with open("/proc/%d/status" % pid) as f:
        kb = dict(re.findall(r"^(VmRSS|RssAnon|RssFile):\s+(\d+) kB", f.read(), re.M))
    return {k: int(v) / 1024 for k, v in kb.items()}


def mb(n):
    return "%.1f MB" % n


def fmt_rss(r):
    return "%s (anon %s, file %s)" % (mb(r["VmRSS"]), mb(r["RssAnon"]), mb(r["RssFile"]))


def idle_rss(p, addr, path):
    """RSS 3 s after one request."""
    if http_status(addr, path) != 200:
        raise RuntimeError("no 200 from http://%s%s" % (addr, path))
    time.sleep(3)
    return rss(p.pid)


def shoal_run(addr, cache, component=HELLO):
    return spawn([SHOAL, "run", component, "--listen", addr], {"SHOAL_CACHE_DIR": cache})


def wasmtime_serve(addr, component=HELLO):
    return spawn([WASMTIME, "serve", "-Scli", "--addr", addr, component])


def shoal_host(data, listen="127.0.0.1:0", admin="127.0.0.1:0"):
    """A host on the data dir `data`, logging into `data`.log."""
    return spawn([SHOAL, "host", "--data-dir", data, "--listen", listen, "--admin", admin,
                  "--gossip", "127.0.0.1:0"], {"SHOAL_LOG": "warn"}, data + ".log")


def binary_size():
    print("\n== 1. Binary size (%s)" % SHOAL)
    sizes = [("as built", SHOAL)]
    if shutil.which("strip"):
        sizes.append(("stripped", os.path.join(tmpdir(), "shoal")))
        shutil.copy(SHOAL, sizes[1][1])
        subprocess.run(["strip", sizes[1][1]], check=True, timeout=60)
    for name, path in sizes:
        size = os.path.getsize(path)
        print("  %-12s %12d bytes  %6.1f MB" % (name, size, size / 1e6))
    if len(sizes) == 1:
        print("  stripped: skipped (no `strip` on PATH)")


def cold_start(start, path):
    """Median seconds from spawn to first 200 over COLD_TRIES, after one untimed warm-up
    (which fills the compile cache)."""
    times = []
    for i in range(COLD_TRIES + 1):
        addr = free_addr()
        t0 = time.perf_counter()
        p = start(addr)
        try:
            t = wait_200(p, addr, path, t0, UP_TIMEOUT if i else COMPILE_TIMEOUT)
        finally:
            stop(p)
        if i:
            times.append(t)
    return statistics.median(times), min(times), max(times)


def deploy_host(data):
    """A host on `data` with hello deployed: (process, ingress address)."""
    p = shoal_host(data)
    ingress = wait_log(data + ".log", r"serving HTTP on http://([^/\s]+)/", p)
    admin = wait_log(data + ".log", r"admin API on http://([^/\s]+)/", p)
    r = subprocess.run([SHOAL, "deploy", HELLO, "--name", "hello", "--admin", "http://" + admin],
                       timeout=60, capture_output=True, text=True,
                       env=dict(os.environ, SHOAL_DATA_DIR=data))
    if r.returncode:
        raise RuntimeError("shoal deploy failed:\n" + r.stdout + r.stderr)
    return p, ingress


def load_run(p, addr):
    """Samples RSS every second under wrk; returns (samples, req/s)."""
    wrk = subprocess.Popen(["wrk", "-t2", "-c8", "-d%ds" % LOAD_SECS, "http://%s/hello" % addr],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    PROCS.append(wrk)
    t0, samples = time.monotonic(), []
    while wrk.poll() is None and time.monotonic() - t0 < LOAD_SECS + 15:
        time.sleep(max(0, t0 + len(samples) + 1 - time.monotonic()))
        if wrk.poll() is None:
            samples.append(rss(p.pid)["VmRSS"])
    out, _ = wrk.communicate(timeout=15)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return samples, float(m.group(1)) if m else float("nan")


def cold_rows(component):
    """Cold starts of `component` under `shoal run` and `wasmtime serve` (if installed)."""
    cache = tmpdir()
    rows = [("shoal run", cold_start(lambda a: shoal_run(a, cache, component), "/"))]
    if WASMTIME:
        rows.append(("wasmtime serve -Scli", cold_start(lambda a: wasmtime_serve(a, component), "/")))
    return rows


def print_cold(rows, what):
    for name, (med, lo, hi) in rows:
        row(name, "%7.1f ms  [%.1f-%.1f]" % (med * 1e3, lo * 1e3, hi * 1e3))
    if WASMTIME:
        print("  target: shoal run <= wasmtime%s: %s" % (what, met(rows[0][1][0] <= rows[1][1][0])))


def cold_start_figures(data):
    """Figure 2 (the restarted host's tries run on `data`, where hello is deployed)."""
    rows = cold_rows(HELLO)
    host = cold_start(lambda a: shoal_host(data, a, free_addr()), "/hello")
    print("\n== 2. Cold start, compile cache warm (spawn to first 200; median [min-max] of %d)"
          % COLD_TRIES)
    print_cold(rows + [("shoal host (restarted)", host)], "")
    print("  target: host ready after spawn <= 50 ms: %s" % met(host[0] <= 0.05))
    if LARGE:
        print("  large component (%s, %.1f MB):" % (os.path.basename(LARGE), os.path.getsize(LARGE) / 1e6))
        print_cold(cold_rows(LARGE), " (large)")


def wasmtime_idle_rss():
    addr = free_addr()
    p = wasmtime_serve(addr)
    try:
        wait_200(p, addr, "/", time.perf_counter())
        return idle_rss(p, addr, "/")
    finally:
        stop(p)


def idle_figures(deployed, restarted):
    print("\n== 3. Idle RSS, one small app, 3 s after one request (target <= 20 MB)")
    for name, r in (("shoal host, after deploy", deployed), ("shoal host, restarted", restarted)):
        row(name, fmt_rss(r), met(r["VmRSS"] <= 20))
    if WASMTIME:
        row("wasmtime serve", fmt_rss(wasmtime_idle_rss()), "(baseline)")


def load_figures(host, addr):
    samples, rps = load_run(host, addr)
    after = idle_rss(host, addr, "/hello")
    print("\n== 4. RSS under load: wrk -t2 -c8 -d%ds on the restarted host (target: growth ~ 0)"
          % LOAD_SECS)
    if samples:
        warm = min(10, max(1, len(samples) // 2))  # 10 s, or half of a shorter run
        at, end = samples[warm - 1], samples[-1]
        row("at %d s (warmed up)" % warm, mb(at))
        row("at end (%d s)" % len(samples), mb(end))
        row("max", mb(max(samples)))
        row("growth %d s -> end" % warm, "%+.2f MB" % (end - at))
    row("req/s", "%.0f" % rps)
    row("3 s after load", fmt_rss(after))


def met(ok):
    return "met" if ok else "MISSED"


def row(name, *values):
    print("  %-26s %s" % (name, "  ".join(values)))


def main():
    for what, path in (("SHOAL", SHOAL), ("HELLO", HELLO)):
        if not os.path.exists(path):
            sys.exit("footprint: %s not found at %s" % (what, path))
    if not WASMTIME:
        print("wasmtime is not on PATH: its column is skipped")
    binary_size()
    data = os.path.join(tmpdir(), "data")
    host, ingress = deploy_host(data)
    try:
        deployed = idle_rss(host, ingress, "/hello")
    finally:
        stop(host)
    cold_start_figures(data)
    addr = free_addr()
    host = shoal_host(data, addr, free_addr())
    try:
        wait_200(host, addr, "/hello", time.perf_counter())
        idle_figures(deployed, idle_rss(host, addr, "/hello"))
        load_figures(host, addr)
    finally:
        stop(host)


if __name__ == "__main__":
    main()
