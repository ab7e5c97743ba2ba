// durable-bench's HTTP client: drives `durable serve` the way a Node.js
// service does, with the global `fetch` (undici's pool opens one connection
// per concurrent request). durable-bench writes this file next to its
// scratch data and runs it with `node`; it prints one JSON line.
//
//   node client.mjs w4     BASE N WORKFLOW INPUT_JSON PREFIX
//       N runs started at once, each POST /v1/runs then
//       GET /v1/runs/ID/result?wait=60s until the run has ended.
//   node client.mjs starts BASE N WORKFLOW INPUT_JSON PREFIX
//       N POST /v1/runs at once, nothing awaited.
//   node client.mjs polls  BASE N PREFIX SETTLE_MS HOLD_MS
//       N long polls on runs PREFIX0..PREFIX(N-1) (which wait); prints
//       "ready" SETTLE_MS after the last was sent, then holds them HOLD_MS
//       and exits.
//   node client.mjs noop   - 1
//       A server that answers every start 201 and every result at once
//       (succeeded), as fast as Node can: what this client reaches against
//       a server that costs nothing. Prints its base URL; runs until killed.
//
// Every loop is bounded: N requests, each run polled at most MAX_POLLS
// times, and the whole client gives up after DEADLINE_MS.

const MAX_POLLS = 20;
const DEADLINE_MS = 600_000;

const [mode, base, nText, ...rest] = process.argv.slice(2);
if (mode === "noop") {
  const http = await import("node:http");
  const server = http.createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      response.setHeader("content-type", "application/json");
      response.statusCode = request.method === "POST" ? 201 : 200;
      const status = request.method === "POST" ? "running" : "succeeded";
      response.end(JSON.stringify({ id: "x", status }));
    });
  });
  server.listen(0, "127.0.0.1", () => {
    console.log(`http://127.0.0.1:${server.address().port}`);
  });
}
const n = Number(nText);
if (!base || !Number.isInteger(n) || n < 1) {
  console.error("usage: node client.mjs w4|starts|polls BASE N ...");
  process.exit(2);
}
setTimeout(() => {
  console.error(`client: gave up after ${DEADLINE_MS} ms`);
  process.exit(3);
}, DEADLINE_MS).unref();

const now = () => performance.now();

function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.floor(q * sorted.length));
  return sorted[i];
}

async function start(workflow, input, id) {
  const response = await fetch(`${base}/v1/runs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ workflow, input, id }),
  });
  const body = await response.json();
  if (response.status !== 201 && response.status !== 200) {
    throw new Error(`start ${id}: ${response.status} ${JSON.stringify(body)}`);
  }
  return body;
}

async function result(id) {
  for (let polls = 0; polls < MAX_POLLS; polls++) {
    const response = await fetch(`${base}/v1/runs/${id}/result?wait=60s`);
    const body = await response.json();
    if (response.status !== 200) {
      throw new Error(`result ${id}: ${response.status} ${JSON.stringify(body)}`);
    }
    if (body.status !== "running" && body.status !== "waiting") return body;
  }
  throw new Error(`result ${id}: still open after ${MAX_POLLS} long polls`);
}

async function runs(awaitEach) {
  const [workflow, inputText, prefix] = rest;
  const template = JSON.parse(inputText);
  const t0 = now();
  const startLatency = [];
  let lastStart = 0;
  const statuses = {};
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const id = `${prefix}${i}`;
      const sent = now();
      await start(workflow, { ...template, n: i }, id);
      const answered = now();
      startLatency.push(answered - sent);
      lastStart = Math.max(lastStart, answered - t0);
      if (awaitEach) {
        const done = await result(id);
        statuses[done.status] = (statuses[done.status] ?? 0) + 1;
      }
    }),
  );
  const wall = now() - t0;
  startLatency.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      runs: n,
      wall_ms: wall,
      per_s: (n * 1000) / wall,
      starts_answered_ms: lastStart,
      start_p50_ms: quantile(startLatency, 0.5),
      start_p99_ms: quantile(startLatency, 0.99),
      statuses,
    }),
  );
}

async function polls() {
  const [prefix, settleText, holdText] = rest;
  const settle = Number(settleText);
  const hold = Number(holdText);
  let answered = 0;
  let failed = 0;
  for (let i = 0; i < n; i++) {
    fetch(`${base}/v1/runs/${prefix}${i}/result?wait=300s`)
      .then(async (r) => {
        await r.arrayBuffer();
        if (r.status === 200) answered++;
        else failed++;
      })
      .catch(() => failed++);
  }
  await new Promise((r) => setTimeout(r, settle));
  console.log("ready");
  await new Promise((r) => setTimeout(r, hold));
  // Polls that answered while held were not waiting: the measure is off.
  console.log(JSON.stringify({ polls: n, answered, failed }));
  process.exit(0);
}

try {
  if (mode === "noop") {
    // Served until killed.
  } else if (mode === "w4") await runs(true);
  else if (mode === "starts") await runs(false);
  else if (mode === "polls") await polls();
  else throw new Error(`unknown mode ${mode}`);
} catch (e) {
  console.error(`client: ${e.stack ?? e}`);
  process.exit(1);
}
