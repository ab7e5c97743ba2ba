"""The cost of spans (BENCHMARKS.md, "Tracing").

    python3 scripts/measure-tracing.py DURABLE BENCH_WASM

Runs `durable run BENCH_WASM {"mode":"seq","n":200}` (200 steps, a commit
each) 7 times in each setting and prints the median wall time of the
process: no endpoint (off); a collector that answers 200 (a local stub
that reads and discards); a collector that is down (a closed port); a
collector that accepts connections and never answers. Each run gets a new
database in a temporary folder; the compile cache is warmed first. Every
server here listens on 127.0.0.1 and is stopped at the end.
"""
import http.server, os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

durable, wasm = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
work = tempfile.mkdtemp(prefix="durable-tracing-")
env = dict(os.environ, DURABLE_CACHE_DIR=os.path.join(work, "cache"))
env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)


class Collector(http.server.BaseHTTPRequestHandler):
    spans_bytes = 0

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        Collector.spans_bytes += len(self.rfile.read(n))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


up = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
threading.Thread(target=up.serve_forever, daemon=True).start()
down = socket.socket()
down.bind(("127.0.0.1", 0))
down_port = down.getsockname()[1]
down.close()
hang = socket.socket()
hang.bind(("127.0.0.1", 0))
hang.listen(64)  # accepted by the kernel, never answered

settings = {
    "off": [],
    "collector up": ["--otlp-endpoint", f"http://127.0.0.1:{up.server_address[1]}"],
    "collector down": ["--otlp-endpoint", f"http://127.0.0.1:{down_port}"],
    "collector hangs": ["--otlp-endpoint", f"http://127.0.0.1:{hang.getsockname()[1]}"],
}
try:
    subprocess.run([durable, "--db", os.path.join(work, "warm.db"), "run", wasm, "--input",
                    '{"mode":"seq","n":1}'], env=env, check=True, capture_output=True)
    results = {name: [] for name in settings}
    for i in range(7):
        for name, flags in settings.items():
            db = os.path.join(work, f"{name.replace(' ', '-')}-{i}.db")
            started = time.time()
            out = subprocess.run([durable, "--db", db, "run", wasm, "--input", '{"mode":"seq","n":200}'] + flags,
                                 env=env, capture_output=True, text=True, timeout=120)
            results[name].append(time.time() - started)
            assert out.returncode == 0, out.stderr
    base = statistics.median(results["off"])
    for name, times in results.items():
        m = statistics.median(times)
        print(f"{name:16} median {m * 1000:7.0f} ms  ({m / base:.2f}x off)")
    print(f"collector got {Collector.spans_bytes / 1e3:.0f} kB of spans in {len(results['collector up'])} runs")
finally:
    up.shutdown()
    hang.close()
    shutil.rmtree(work, ignore_errors=True)
