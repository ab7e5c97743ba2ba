"""Resource measurements of `durable serve` (BENCHMARKS.md, "Server resources").

    python3 scripts/measure-serve-resources.py target/debug/durable \
        target/tmp/guests/wasm32-wasip2/release/testbed.wasm

Starts the server on a free loopback port in a temporary directory, measures,
and stops it by its pid. What it measures:

1. RSS after 40 distinct uploads of an 8 MB component (testbed + an 8 MB custom section each).
2. RSS while 6 concurrent 60 MiB junk uploads arrive.
3. Server CPU while 500 long polls wait on one waiting run (10 s).
"""
import json, os, shutil, socket, subprocess, sys, tempfile, threading, time

binary, wasm = sys.argv[1], sys.argv[2]

def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n: return bytes(out)

def custom(name, size):
    payload = leb(len(name)) + name.encode() + b"\0" * size
    return b"\0" + leb(len(payload)) + payload

def request(port, method, path, body=b"", ctype=None, timeout=120):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n"
    if ctype: head += f"content-type: {ctype}\r\n"
    s.sendall(head.encode() + b"\r\n" + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk: break
        data += chunk
    s.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]

def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def serve(extra=()):
    d = tempfile.mkdtemp(prefix="durable-measure-")
    env = dict(os.environ, DURABLE_CACHE_DIR=os.path.join(d, "cache"))
    dirs.append(d)
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--db", os.path.join(d, "d.db"), *extra],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=d)
    line = p.stderr.readline().decode()
    port = int(line.split("http://127.0.0.1:")[1].split()[0])
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p, port

dirs = []
base = open(wasm, "rb").read()
p, port = serve()
time.sleep(1)
print(f"idle RSS: {rss(p.pid)} MiB")
for i in range(40):
    st, body = request(port, "POST", f"/v1/components?name=big{i}", base + custom(f"pad{i}", 8 << 20), "application/wasm")
    assert st in (200, 201), (st, body)
time.sleep(1)
print(f"after 40 distinct 8 MB uploads: RSS {rss(p.pid)} MiB")
junk = os.urandom(1 << 20) * 60
before = rss(p.pid); peak = before
stop = False
def watch():
    global peak
    while not stop:
        peak = max(peak, rss(p.pid)); time.sleep(0.02)
w = threading.Thread(target=watch); w.start()
ts = [threading.Thread(target=request, args=(port, "POST", "/v1/components?name=junk", junk, "application/wasm")) for _ in range(6)]
[t.start() for t in ts]; [t.join() for t in ts]
stop = True; w.join()
print(f"6 concurrent 60 MiB junk uploads: RSS {before} -> peak {peak} MiB, after {rss(p.pid)} MiB")
st, body = request(port, "POST", "/v1/components?name=testbed", base, "application/wasm")
digest = json.loads(body)["digest"]
st, body = request(port, "POST", "/v1/runs", json.dumps({"component": digest, "id": "w", "input": {"mode": "events", "n": 1, "delay_ms": 600000}}).encode(), "application/json")
assert st == 201, body
time.sleep(1)
c0, t0 = cpu(p.pid), time.time()
time.sleep(5)
idle = (cpu(p.pid) - c0) / (time.time() - t0)
socks = []
for i in range(500):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /v1/runs/w/result?wait=60s HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode())
    socks.append(s)
time.sleep(2)
c0, t0 = cpu(p.pid), time.time()
time.sleep(10)
busy = (cpu(p.pid) - c0) / (time.time() - t0)
print(f"CPU: idle {idle*100:.1f}% of a core; with 500 long polls open on one waiting run {busy*100:.1f}% (RSS {rss(p.pid)} MiB)")
for s in socks: s.close()
p.terminate(); p.wait(timeout=30)
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
