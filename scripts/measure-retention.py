"""Tags and retention at scale (BENCHMARKS.md, "Tags" and "Retention").

    python3 scripts/measure-retention.py DURABLE BENCH_WASM [--postgres URL]

DURABLE is a release `durable`, BENCH_WASM the bench guest
(tests/guests/bench). On SQLite (default) the database is a file in a
temporary folder; with --postgres URL (a server whose user may create
databases: scripts/with-postgres.sh sets DURABLE_TEST_POSTGRES) a new
database there.

1. 100,000 finished runs, each a copy of one real run of the bench guest
   (its steps and drive starts too), tagged `customer=c<i % 1000>` (100 runs
   per customer): a tag query through `GET /v1/runs?tag=customer:c42`
   (and with counts), timed from a client on loopback, 40 times each.
2. 100,000 more (200,000): `durable serve` drives runs of the bench guest
   from 4 client threads for 20 s with no retention (before), then again
   while its own retention pass deletes the 200,000 (during). Reported: the
   runs' latency (start to result) median and p99, and the server's commit
   latency p99 (`durable_commit_seconds`, the upper bound of the bucket
   holding the 99th percentile), the prune's duration, and the database's
   size before, after, and after VACUUM (SQLite).

Every server started here listens on 127.0.0.1, on a port it picks, and is
stopped by its pid; every loop is bounded.
"""
import json, os, re, shutil, socket, subprocess, sys, tempfile, threading, time

durable, bench_wasm = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
pg_base = sys.argv[sys.argv.index("--postgres") + 1] if "--postgres" in sys.argv else None
work = tempfile.mkdtemp(prefix="durable-retention-")
if pg_base:
    name = f"retention_{os.getpid()}"
    subprocess.run(["psql", pg_base, "-qc", f"CREATE DATABASE {name}"], check=True)
    db = pg_base.rsplit("/", 1)[0] + "/" + name
else:
    db = os.path.join(work, "durable.db")
env = dict(os.environ, DURABLE_DB=db, DURABLE_CACHE_DIR=os.path.join(work, "cache"))


def sql(statement):
    if pg_base:
        out = subprocess.run(["psql", db, "-qAtc", statement], check=True, capture_output=True, text=True)
        return out.stdout.strip()
    import sqlite3
    conn = sqlite3.connect(db, timeout=60)
    try:
        rows = conn.execute(statement).fetchall()
        conn.commit()
        return "\n".join("|".join(str(c) for c in r) for r in rows)
    finally:
        conn.close()


def size():
    if pg_base:
        return int(sql("SELECT pg_database_size(current_database())"))
    return os.path.getsize(db) + (os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0)


def request(port, method, path, body=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: {len(data)}\r\nconnection: close\r\n"
    if body is not None:
        head += "content-type: application/json\r\n"
    s.sendall(head.encode() + b"\r\n" + data)
    raw = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        raw += chunk
    s.close()
    status = int(raw.split(b" ", 2)[1])
    return status, raw.split(b"\r\n\r\n", 1)[1]


def serve(extra):
    config = os.path.join(work, "durable.toml")
    with open(config, "w") as f:
        f.write(f'[workflows.bench]\ncomponent = "{bench_wasm}"\n')
    proc = subprocess.Popen([durable, "serve", "--listen", "127.0.0.1:0", "--config", config] + extra,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    return proc, port


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def commit_hist(port):
    _, body = request(port, "GET", "/metrics")
    buckets = {}
    for m in re.finditer(r'durable_commit_seconds_bucket\{le="([^"]+)"\} (\d+)', body.decode()):
        buckets[m.group(1)] = int(m.group(2))
    return buckets


def p99_between(before, after):
    bounds = sorted((float(k) if k != "+Inf" else float("inf"), k) for k in after)
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    if total <= 0:
        return float("nan"), 0
    for bound, key in bounds:
        if after[key] - before.get(key, 0) >= 0.99 * total:
            return bound * 1000, total
    return float("inf"), total


def drive_load(port, seconds, threads=4, until=None):
    latencies, stop_at = [], time.time() + seconds
    lock = threading.Lock()

    def client(t):
        i = 0
        while time.time() < stop_at and (until is None or not until.is_set()):
            i += 1
            started = time.time()
            status, body = request(port, "POST", "/v1/runs",
                                   {"workflow": "bench", "id": f"load-{t}-{i}-{time.time_ns()}",
                                    "input": {"mode": "seq", "n": 3}})
            if status != 201:
                continue
            run = json.loads(body)["id"]
            request(port, "GET", f"/v1/runs/{run}/result?wait=30s")
            with lock:
                latencies.append((time.time() - started) * 1000)

    ts = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return latencies


def copies(start, end):
    """Runs old-START..old-END-1 as copies of run `template`, a day old."""
    cte = f"WITH RECURSIVE n(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM n WHERE i < {end - 1})"
    sql(f"""{cte} INSERT INTO runs (id, workflow, component_digest, input, status, output, seed,
               created_at_ms, finished_at_ms, clock_ms, drives)
        SELECT 'old-' || i, workflow, component_digest, input, 'succeeded', output, seed,
               created_at_ms - 86400000 + i, finished_at_ms - 86400000 + i, clock_ms, drives
        FROM runs, n WHERE runs.id = 'template'""")
    sql(f"""{cte} INSERT INTO steps (run_id, key, parent, position, name, input_digest, outcome, value,
               attempts, started_at_ms, finished_at_ms, drive, batch, input)
        SELECT 'old-' || i, key, parent, position, name, input_digest, outcome, value, attempts,
               started_at_ms, finished_at_ms, drive, batch, input
        FROM steps, n WHERE steps.run_id = 'template'""")
    sql(f"""{cte} INSERT INTO drive_starts (run_id, drive, started_at_ms)
        SELECT 'old-' || i, drive, started_at_ms FROM drive_starts, n WHERE drive_starts.run_id = 'template'""")
    sql(f"""{cte} INSERT INTO run_tags (run_id, key, value)
        SELECT 'old-' || i, 'customer', 'c' || (i % 1000) FROM n""")


try:
    kind = "PostgreSQL" if pg_base else "SQLite"
    subprocess.run([durable, "run", bench_wasm, "--id", "template", "--input", '{"mode":"seq","n":3}'],
                   env=env, check=True, capture_output=True)
    t = time.time()
    copies(0, 100_000)
    print(f"{kind}: 100,000 runs made in {time.time() - t:.0f} s; database {size() / 1e6:.0f} MB")

    proc, port = serve([])
    try:
        for query in ["tag=customer:c42", "tag=customer:c42&counts=true", "tag=customer:nobody"]:
            times = []
            for _ in range(40):
                started = time.time()
                status, body = request(port, "GET", f"/v1/runs?{query}&limit=50")
                times.append((time.time() - started) * 1000)
                assert status == 200, body
            found = len(json.loads(body)["runs"])
            print(f"  GET /v1/runs?{query}&limit=50: {found} runs, median {pct(times, 0.5):.1f} ms, "
                  f"p99 {pct(times, 0.99):.1f} ms")
    finally:
        stop(proc)
    times = []
    for _ in range(10):
        started = time.time()
        subprocess.run([durable, "list", "--tag", "customer=c42", "--limit", "50", "--json"],
                       env=env, check=True, capture_output=True)
        times.append((time.time() - started) * 1000)
    print(f"  durable list --tag customer=c42 (a process each): median {pct(times, 0.5):.0f} ms")

    t = time.time()
    copies(100_000, 200_000)
    before_size = size()
    print(f"{kind}: 200,000 runs made ({time.time() - t:.0f} s more); database {before_size / 1e6:.0f} MB")

    proc, port = serve([])
    try:
        drive_load(port, 3)
        h0 = commit_hist(port)
        lat = drive_load(port, 20)
        p99, commits = p99_between(h0, commit_hist(port))
    finally:
        stop(proc)
    print(f"  before: {len(lat)} runs in 20 s, latency median {pct(lat, 0.5):.1f} ms p99 {pct(lat, 0.99):.1f} ms; "
          f"commit p99 <= {p99:g} ms ({commits} commits)")

    proc, port = serve(["--retention", "1h"])
    try:
        done = threading.Event()
        pruned = {}

        def watch():
            started = time.time()
            while time.time() - started < 900:
                status, body = request(port, "GET", "/v1/runs?prefix=old-&limit=1")
                if status == 200 and not json.loads(body)["runs"]:
                    pruned["s"] = time.time() - started
                    break
                time.sleep(0.5)
            done.set()

        h0 = commit_hist(port)
        w = threading.Thread(target=watch)
        w.start()
        lat = drive_load(port, 900, until=done)
        w.join()
        p99, commits = p99_between(h0, commit_hist(port))
    finally:
        stop(proc)
    print(f"  during: {len(lat)} runs while 200,000 were pruned in {pruned.get('s', float('nan')):.0f} s, "
          f"latency median {pct(lat, 0.5):.1f} ms p99 {pct(lat, 0.99):.1f} ms; commit p99 <= {p99:g} ms ({commits} commits)")
    after = size()
    line = f"  database {before_size / 1e6:.0f} MB before, {after / 1e6:.0f} MB after"
    if not pg_base:
        sql("VACUUM")
        line += f", {size() / 1e6:.1f} MB after VACUUM"
    else:
        sql("VACUUM")
        line += f", {size() / 1e6:.0f} MB after VACUUM (space reusable; the file shrinks with VACUUM FULL)"
    print(line)
finally:
    shutil.rmtree(work, ignore_errors=True)
    if pg_base:
        subprocess.run(["psql", pg_base, "-qc", f"DROP DATABASE IF EXISTS {name}"], capture_output=True)
