// The web UI of `durable serve`: one page, no dependencies, talking to the
// public /v1 API only.
//
// Layout of this file, top to bottom:
//   1. DOM and formatting helpers: h() builds elements, swap() re-renders a
//      container while keeping the reader's place in it.
//   2. The shell: error banner, notices, login bar, api(), the confirm dialog.
//   3. Router (History API) and poller (every 1 s while the tab is visible,
//      never two requests at once).
//   4. The runs list page (`/`).
//   5. The run page (`/runs/{id}`): header, actions, data sections.
//   6. The timeline: rows from the step tree, a piecewise-linear time axis
//      that collapses idle gaps, bars.
//   7. The step detail panel.
//
// Everything shown comes from guests (run ids, step names, outputs, logs) and
// is untrusted: the DOM is built with createElement and text nodes only (h()),
// never from HTML strings.
//
// Pages build their skeleton (filters, forms) once and, on each poll, re-render
// only the data containers whose data changed, through swap(), which keeps
// <details> open states (data-dk), focus (data-fk) and scroll offsets (data-sk).

// ---------------------------------------------------------------------------
// 1. Helpers

const STATUSES = ['queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'];
const ENDED = new Set(['succeeded', 'failed', 'cancelled']);
const PAGE_SIZE = 50;
const TOKEN_KEY = 'durable.token';

const $ = (id) => document.getElementById(id);

// Creates an element. attrs: `class`, `on<event>` handlers, `dataset`, plain
// attributes (true: present, null/false: absent). Children are nodes or
// strings (always text nodes).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// Replaces the children of `container`, then restores what the reader had:
// which <details> were open, the focused element, scroll offsets.
function swap(container, ...children) {
  const active = document.activeElement;
  const fk = active && container.contains(active) ? active.dataset.fk : undefined;
  const open = new Map([...container.querySelectorAll('details[data-dk]')].map((d) => [d.dataset.dk, d.open]));
  const scrolls = [...container.querySelectorAll('[data-sk]')].map((e) => [e.dataset.sk, e.scrollLeft, e.scrollTop]);
  container.replaceChildren(...children.flat());
  for (const d of container.querySelectorAll('details[data-dk]')) {
    if (open.has(d.dataset.dk)) d.open = open.get(d.dataset.dk);
  }
  for (const [sk, left, top] of scrolls) {
    const e = container.querySelector(`[data-sk="${CSS.escape(sk)}"]`);
    if (e) { e.scrollLeft = left; e.scrollTop = top; }
  }
  if (fk) container.querySelector(`[data-fk="${CSS.escape(fk)}"]`)?.focus({ preventScroll: true });
}

const runHref = (id) => `/runs/${encodeURIComponent(id)}`;
const runApi = (id) => `/v1/runs/${encodeURIComponent(id)}`;

// Local times; the year only when it is not this year (keeps table cells short).
const TIME_PARTS = { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' };
const DATE_FMTS = {
  short: new Intl.DateTimeFormat(undefined, TIME_PARTS),
  year: new Intl.DateTimeFormat(undefined, { ...TIME_PARTS, year: 'numeric' }),
  shortMs: new Intl.DateTimeFormat(undefined, { ...TIME_PARTS, fractionalSecondDigits: 3 }),
  yearMs: new Intl.DateTimeFormat(undefined, { ...TIME_PARTS, year: 'numeric', fractionalSecondDigits: 3 }),
};

function fmtDate(ms, precise = false) {
  if (ms == null) return '—';
  const d = new Date(ms);
  const thisYear = d.getFullYear() === new Date().getFullYear();
  return DATE_FMTS[(thisYear ? 'short' : 'year') + (precise ? 'Ms' : '')].format(d);
}

// A <time> element: local time shown, UTC ISO in the title.
function timeEl(ms, precise = false) {
  if (ms == null) return '—';
  const iso = new Date(ms).toISOString();
  return h('time', { datetime: iso, title: iso }, fmtDate(ms, precise));
}

// 340 ms, 1.2 s, 12 s, 3 min 4 s, 2 h 5 min, 3 d 4 h.
function fmtDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '—';
  ms = Math.max(0, Math.round(ms));
  if (ms < 1000) return `${ms} ms`;
  if (ms < 9950) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
  const hr = Math.floor(m / 60);
  if (hr < 24) return m % 60 ? `${hr} h ${m % 60} min` : `${hr} h`;
  const d = Math.floor(hr / 24);
  return hr % 24 ? `${d} d ${hr % 24} h` : `${d} d`;
}

// A tick label: the offset from the axis start, as precise as the tick step.
function fmtOffset(ms, step) {
  ms = Math.round(ms);
  if (ms === 0) return '0';
  if (ms < 1000) return `+${ms} ms`;
  const dec = step >= 1000 ? 0 : step >= 100 ? 1 : step >= 10 ? 2 : 3;
  if (ms < 60000) return `+${(ms / 1000).toFixed(dec)} s`;
  const m = Math.floor(ms / 60000);
  const rest = ms - m * 60000;
  if (m < 60) return rest ? `+${m} min ${(rest / 1000).toFixed(dec)} s` : `+${m} min`;
  return `+${fmtDuration(ms)}`;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
const pretty = (v) => (v === undefined ? '' : JSON.stringify(v, null, 2));

function compact(v, max = 120) {
  const s = JSON.stringify(v) ?? 'null';
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function parseJsonField(text) {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    return { ok: false, message: `Not valid JSON: ${e.message}` };
  }
}

const badge = (status, id) => h('span', { class: `badge s-${status}`, id }, status);

// "until <ms>" is a sleep's wake-up time; show it as a local time.
function waitingText(waitingFor) {
  if (!waitingFor) return '';
  const m = /^until (\d+)$/.exec(waitingFor);
  return m ? `until ${fmtDate(Number(m[1]))}` : waitingFor;
}

// A <details> holding pretty JSON: open when short, collapsed when large.
function jsonDetails(title, value, field, dk) {
  const text = typeof value === 'string' && field === 'error' ? value : pretty(value);
  const lines = text.split('\n').length;
  return h('details', { class: 'json', 'data-dk': dk, open: lines <= 20 },
    h('summary', {}, title, lines > 20 ? h('span', { class: 'muted' }, ` (${plural(lines, 'line')})`) : null),
    h('pre', { 'data-field': field, class: field === 'error' ? 'error-text' : null }, text));
}

// Output lines ({drive, at_ms, kind, line}) as a table.
function linesTable(lines) {
  if (!lines?.length) return h('p', { class: 'muted' }, 'No output.');
  return h('div', { class: 'table-wrap', 'data-sk': 'lines' }, h('table', { class: 'lines' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Time'), h('th', { scope: 'col' }, 'Drive'),
      h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col' }, 'Line'))),
    h('tbody', {}, lines.map((l) => h('tr', { class: `kind-${l.kind.replace(/[^a-z]/g, '-')}` },
      h('td', { class: 'nowrap' }, timeEl(l.at_ms, true)), h('td', { class: 'num' }, l.drive),
      h('td', { class: 'nowrap' }, l.kind), h('td', {}, h('span', { class: 'line' }, l.line)))))));
}

// ---------------------------------------------------------------------------
// 2. Shell: errors, notices, login, api(), confirmation

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function showError(message) {
  const text = $('error-text');
  if ($('error').hidden || text.textContent !== message) {
    text.textContent = message;
    $('error').hidden = false;
  }
}

function clearError() {
  $('error').hidden = true;
  $('error-text').textContent = '';
}

function reportError(e) {
  if (!(e instanceof ApiError)) console.error(e);
  showError(e instanceof ApiError ? e.message : `Unexpected error: ${e?.message ?? e}`);
}

let noticeTimer = 0;
function notify(text) {
  const n = $('notice');
  n.textContent = text;
  n.classList.add('show');
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.textContent = ''; n.classList.remove('show'); }, 6000);
}

function storedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}

// Used when sessionStorage is unavailable (some private modes).
let memoryToken = null;

// Requests that got a 401 wait here until a token is saved, then retry.
let loginWaiters = [];
function waitForLogin(message) {
  $('login').hidden = false;
  $('login-msg').textContent = message;
  if (!document.activeElement || document.activeElement === document.body) $('token-input').focus();
  return new Promise((resolve) => loginWaiters.push(resolve));
}

function saveToken(ev) {
  ev.preventDefault();
  const token = $('token-input').value.trim();
  if (!token) { $('login-msg').textContent = 'Enter the token the server was started with.'; return; }
  try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* private mode: kept for this page only */ }
  memoryToken = token;
  $('token-input').value = '';
  $('login').hidden = true;
  const waiters = loginWaiters;
  loginWaiters = [];
  waiters.forEach((resume) => resume());
}

// Every API call goes through here: adds the token, waits for a login on 401
// and retries, turns error answers into ApiError with the server's message.
async function request(method, path, body) {
  for (;;) {
    const token = storedToken() ?? memoryToken;
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, 'network', `The server did not answer (${method} ${path}): ${e.message}`);
    }
    if (res.status === 401) {
      await waitForLogin(token ? 'The server refused this token; enter another.' : 'This server needs an API token.');
      continue;
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: reported below if an error */ }
    if (!res.ok) {
      const err = data?.error;
      throw new ApiError(res.status, err?.code ?? 'http',
        err?.message ?? `${method} ${path}: HTTP ${res.status} ${text.slice(0, 200)}`);
    }
    return { status: res.status, data };
  }
}

const api = async (method, path, body) => (await request(method, path, body)).data;

// Asks before anything that changes something. Resolves true on "yes";
// Escape or "Go back" resolve false.
function confirmAction(text, yesLabel = 'Confirm') {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-yes').textContent = yesLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    dialog.showModal();
  });
}

// ---------------------------------------------------------------------------
// 3. Router and poller

let page = null; // {key, root, refresh(), live(), onHash?(), onEscape?()}

function route() {
  const key = location.pathname + location.search;
  if (page && page.key === key) { page.onHash?.(); return; }
  let next;
  if (location.pathname.startsWith('/runs/')) {
    let id;
    try { id = decodeURIComponent(location.pathname.slice('/runs/'.length)); } catch { id = null; }
    next = id ? runPage(id) : notFoundPage();
  } else if (location.pathname === '/') {
    next = listPage();
  } else {
    next = notFoundPage();
  }
  next.key = key;
  page = next;
  $('app').replaceChildren(next.root);
  poller.now();
}

function navigate(url) {
  history.pushState(null, '', url);
  route();
  window.scrollTo(0, 0);
  // The link or button that led here is gone: start keyboard users at the page.
  $('app').focus({ preventScroll: true });
}

// In-app links (`/` and `/runs/...`) move with pushState instead of a reload.
function onLinkClick(ev) {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest?.('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !(url.pathname === '/' || url.pathname.startsWith('/runs/'))) return;
  ev.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

function notFoundPage() {
  return { root: h('section', {}, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '/' }, 'All runs'))),
    refresh: async () => {}, live: () => false };
}

// One poll at a time: a refresh asked for while one is in flight runs right
// after it (so a filter change or an action is never lost), never alongside.
const poller = (() => {
  let busy = false;
  let again = false;
  let lastError = '';
  async function run() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        try {
          await page.refresh();
          // The server answers again: a failure the polls reported is over.
          if (lastError && $('error-text').textContent === lastError) clearError();
          lastError = '';
        } catch (e) {
          // The same failure every second is shown once, not re-announced.
          const msg = e instanceof ApiError ? e.message : `Unexpected error: ${e?.message ?? e}`;
          if (msg !== lastError) reportError(e);
          lastError = msg;
        }
      } while (again);
    } finally {
      busy = false;
    }
  }
  setInterval(() => {
    if (document.visibilityState === 'visible' && page?.live()) run();
  }, 1000);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && page?.live()) run();
  });
  return { now: run };
})();

// ---------------------------------------------------------------------------
// 4. The runs list

function listPage() {
  const query = new URLSearchParams(location.search);
  const filters = {
    status: STATUSES.includes(query.get('status')) ? query.get('status') : '',
    workflow: query.get('workflow') ?? '',
    prefix: query.get('prefix') ?? '',
    tag: query.get('tag') ?? '',
  };
  const cursors = []; // the `after` of each newer page, for "← Newer"
  let after = null; // this page's `after` (null: the newest page)
  let version = 0; // bumped on every filter or page change: late answers are dropped
  let lastJson = '';
  let registered = []; // GET /v1/workflows
  let workflowsAt = 0;
  const seen = new Set(); // workflow names seen in listed runs

  const tabs = statusTabs(filters.status, (s) => { filters.status = s; changed(); });
  const wfSelect = h('select', { id: 'workflow-filter', onchange: () => { filters.workflow = wfSelect.value; changed(); } });
  let searchTimer = 0;
  // Debounced; `change` too, since some ways of emptying a field (a
  // WebDriver clear, autofill) fire no `input`.
  const searched = () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { if (search.value !== filters.prefix) { filters.prefix = search.value; changed(); } }, 250);
  };
  const search = h('input', {
    id: 'search', type: 'search', value: filters.prefix, placeholder: 'Run id starts with…', autocomplete: 'off', spellcheck: 'false',
    oninput: searched, onchange: searched,
  });
  // A tag is KEY:VALUE; until the colon is typed the field is not applied.
  let tagTimer = 0;
  const tagged = () => {
    clearTimeout(tagTimer);
    tagTimer = setTimeout(() => {
      const v = tagInput.value.trim();
      const ok = v === '' || v.indexOf(':') > 0;
      tagInput.setAttribute('aria-invalid', String(!ok));
      if (ok && v !== filters.tag) { filters.tag = v; changed(); }
    }, 250);
  };
  const tagInput = h('input', {
    id: 'tag-filter', type: 'search', value: filters.tag, placeholder: 'key:value', autocomplete: 'off', spellcheck: 'false',
    title: 'Only runs with this tag (set by the workflow with set-tag, or given at the start)',
    oninput: tagged, onchange: tagged,
  });
  const tbody = h('tbody');
  const newer = h('button', { id: 'page-newer', type: 'button', disabled: true, onclick: () => { after = cursors.pop() ?? null; paged(); } }, '← Newer');
  const older = h('button', { id: 'page-older', type: 'button', disabled: true, onclick: () => { cursors.push(after); after = older.dataset.next; paged(); } }, 'Older →');
  const pageInfo = h('span', { class: 'muted', 'aria-live': 'polite' });
  const start = startPanel();

  const root = h('div', { class: 'list-page' },
    h('h1', {}, 'Runs'),
    h('div', { class: 'list-layout' },
      h('section', { class: 'list-main', 'aria-label': 'Runs list' },
        h('div', { class: 'filters' }, tabs.el,
          h('div', { class: 'filter-fields' },
            h('label', { for: 'workflow-filter' }, 'Workflow'), wfSelect,
            h('label', { for: 'search' }, 'Run id'), search,
            h('label', { for: 'tag-filter' }, 'Tag'), tagInput)),
        h('div', { class: 'table-wrap', 'data-sk': 'runs' }, h('table', { id: 'runs', class: 'runs' },
          h('thead', {}, h('tr', {}, ['Status', 'Workflow', 'Run id', 'Started', 'Duration', 'Steps', 'Drives', 'Waiting for']
            .map((t) => h('th', { scope: 'col' }, t)))),
          tbody)),
        h('nav', { class: 'pager', 'aria-label': 'Pages' }, newer, pageInfo, older)),
      start.el));

  // Filters live in the URL (replaceState) so a reload keeps them.
  function changed() {
    cursors.length = 0;
    after = null;
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    const url = q.toString() ? `/?${q}` : '/';
    history.replaceState(null, '', url);
    if (page) page.key = location.pathname + location.search;
    paged();
  }

  function paged() {
    version += 1;
    lastJson = '';
    newer.disabled = true;
    older.disabled = true;
    poller.now();
  }

  async function refresh() {
    const mine = version;
    const q = new URLSearchParams({ limit: String(PAGE_SIZE), counts: 'true' });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (after) q.set('after', after);
    const wantWorkflows = Date.now() - workflowsAt > 15000;
    const [data, wf] = await Promise.all([
      api('GET', `/v1/runs?${q}`),
      wantWorkflows ? api('GET', '/v1/workflows') : null,
    ]);
    if (wf) { registered = wf.workflows ?? []; workflowsAt = Date.now(); start.setWorkflows(registered); }
    if (mine !== version) return;
    for (const r of data.runs) seen.add(r.workflow);
    syncWorkflowOptions();
    const json = JSON.stringify(data);
    if (json === lastJson) return;
    lastJson = json;
    tabs.setCounts(data.counts);
    renderRows(data.runs);
    newer.disabled = cursors.length === 0;
    older.disabled = !data.next;
    older.dataset.next = data.next ?? '';
    pageInfo.textContent = `Page ${cursors.length + 1}${data.runs.length ? ` · ${plural(data.runs.length, 'run')}` : ''}`;
  }

  function renderRows(runs) {
    if (!runs.length) {
      swap(tbody, h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No runs match.')));
      return;
    }
    swap(tbody, runs.map(runRow));
  }

  function syncWorkflowOptions() {
    const names = [...new Set([...registered.map((w) => w.name), ...seen, filters.workflow].filter(Boolean))].sort();
    const have = [...wfSelect.options].slice(1).map((o) => o.value);
    if (have.join('\n') === names.join('\n') && wfSelect.options.length) return;
    wfSelect.replaceChildren(h('option', { value: '' }, 'All workflows'), ...names.map((n) => h('option', { value: n }, n)));
    wfSelect.value = filters.workflow;
  }

  syncWorkflowOptions();
  document.title = 'Runs · durable';
  return { root, refresh, live: () => true };
}

function runRow(r) {
  const duration = r.duration_ms != null ? fmtDuration(r.duration_ms) : r.status === 'running' ? 'running…' : `${r.status}…`;
  return h('tr', { 'data-run-id': r.id, 'data-status': r.status },
    h('td', {}, badge(r.status)),
    h('td', { class: 'wf' }, r.workflow),
    h('td', { class: 'id' }, h('a', { href: runHref(r.id), 'data-fk': `run:${r.id}` }, r.id),
      r.forked_from ? h('span', { class: 'tag', title: `forked from ${r.forked_from}` }, 'fork') : null,
      r.parent ? h('span', { class: 'tag', title: `child workflow of ${r.parent}` }, 'child') : null,
      r.queue ? h('span', { class: 'tag', title: `started in queue ${r.queue}` }, `queue ${r.queue}`) : null),
    h('td', { class: 'nowrap' }, timeEl(r.created_at_ms)),
    h('td', { class: 'nowrap', title: r.duration_ms == null ? `elapsed ${fmtDuration(Date.now() - r.created_at_ms)}` : null }, duration),
    h('td', { class: 'nowrap' }, `${r.steps} (${r.executed} executed, ${r.recovered} recovered)`),
    h('td', { class: 'num' }, r.drives),
    h('td', { title: r.wake_at_ms ? `due ${fmtDate(r.wake_at_ms)}` : null }, waitingText(r.waiting_for)));
}

// The status filter: "all" plus one button per status, each with its count.
function statusTabs(current, onPick) {
  const buttons = new Map();
  const el = h('div', { class: 'chips', role: 'group', 'aria-label': 'Filter by status' });
  for (const s of ['', ...STATUSES]) {
    const count = h('span', { class: 'count' });
    const b = h('button', {
      type: 'button', class: `chip chip-${s || 'all'}`, 'data-status-filter': s || 'all', 'aria-pressed': String(s === current),
      onclick: () => { for (const [k, v] of buttons) v.b.setAttribute('aria-pressed', String(k === s)); onPick(s); },
    }, s || 'all', count);
    buttons.set(s, { b, count });
    el.append(b);
  }
  function setCounts(counts) {
    if (!counts) return;
    let total = 0;
    for (const s of STATUSES) {
      total += counts[s] ?? 0;
      buttons.get(s).count.textContent = String(counts[s] ?? 0);
    }
    buttons.get('').count.textContent = String(total);
  }
  return { el, setCounts };
}

// "Start a run": a registered workflow, its input (JSON, checked as typed)
// and an optional id.
function startPanel() {
  const select = h('select', { id: 'start-workflow', required: true });
  const input = h('textarea', { id: 'start-input', rows: 6, spellcheck: 'false', 'aria-describedby': 'start-input-msg' });
  input.value = 'null';
  const msg = h('p', { id: 'start-input-msg', class: 'field-msg', 'aria-live': 'polite' });
  const idIn = h('input', { id: 'start-id', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'made up by the server' });
  const submit = h('button', { id: 'start-submit', type: 'submit', class: 'primary', disabled: true }, 'Start run');
  let workflows = [];
  let edited = false; // the input was typed in: do not overwrite it with a workflow's default input

  function validate() {
    const parsed = parseJsonField(input.value);
    input.setAttribute('aria-invalid', String(!parsed.ok));
    msg.textContent = parsed.ok ? '' : parsed.message;
    msg.classList.toggle('bad', !parsed.ok);
    submit.disabled = !parsed.ok || !select.value;
    return parsed;
  }

  function workflowPicked() {
    const wf = workflows.find((w) => w.name === select.value);
    if (!edited && wf && wf.input != null) input.value = pretty(wf.input);
    validate();
  }

  async function submitted(ev) {
    ev.preventDefault();
    const parsed = validate();
    if (!parsed.ok || !select.value) return;
    const workflow = select.value;
    const id = idIn.value.trim();
    const yes = await confirmAction(
      `Start a run of workflow “${workflow}”${id ? ` with id “${id}”` : ''}, with input ${compact(parsed.value, 300)}?`, 'Start run');
    if (!yes) return;
    submit.disabled = true;
    try {
      const body = { workflow, input: parsed.value };
      if (id) body.id = id;
      const { status, data } = await request('POST', '/v1/runs', body);
      clearError();
      notify(status === 201 ? `Run ${data.id} started.` : `Run ${data.id} already existed with this input: nothing was started.`);
      navigate(runHref(data.id));
    } catch (e) {
      reportError(e);
    } finally {
      validate();
    }
  }

  input.addEventListener('input', () => { edited = true; validate(); });
  input.addEventListener('change', validate);
  select.addEventListener('change', workflowPicked);

  const el = h('section', { class: 'panel start-panel', 'aria-labelledby': 'start-title' },
    h('h2', { id: 'start-title' }, 'Start a run'),
    h('form', { class: 'stack', onsubmit: submitted },
      h('label', { for: 'start-workflow' }, 'Workflow'), select,
      h('label', { for: 'start-input' }, 'Input (JSON)'), input, msg,
      h('label', { for: 'start-id' }, 'Run id (optional)'), idIn,
      h('div', { class: 'actions' }, submit)));

  function setWorkflows(list) {
    const names = list.map((w) => w.name);
    workflows = list;
    const have = [...select.options].map((o) => o.value);
    if (have.join('\n') !== names.join('\n') || !names.length) {
      const keep = select.value;
      select.replaceChildren(...(names.length ? names.map((n) => h('option', { value: n }, n))
        : [h('option', { value: '' }, 'No registered workflows')]));
      select.disabled = !names.length;
      if (names.includes(keep)) select.value = keep;
      else workflowPicked();
    }
    validate();
  }
  return { el, setWorkflows };
}

// ---------------------------------------------------------------------------
// 5. The run page

function runPage(id) {
  let run = null;
  const rendered = new Map(); // container -> the JSON it was last rendered from
  let selected = stepFromHash(); // the open step's key, from #step=KEY
  let firstLoad = true;
  const head = h('header', { class: 'run-head' }, h('h1', {}, 'Run ', h('span', { class: 'id' }, id)));
  const actions = runActions(id);
  const timeline = createTimeline((key) => openStep(key, true));
  const panel = createStepPanel({ close: () => closeStep(true), fork: (key) => forkFrom(id, key) });
  const data = h('section', { class: 'run-data', 'aria-labelledby': 'data-title' });
  const events = h('section', { class: 'run-events', 'aria-labelledby': 'events-title' });
  const logs = h('section', { class: 'run-logs' });

  // Hidden until the run is loaded (a run that does not exist shows only its error).
  const timelineSection = h('section', { class: 'timeline-section', 'aria-labelledby': 'timeline-title', hidden: true },
    h('h2', { id: 'timeline-title' }, 'Timeline'), legend(), timeline.el);
  const root = h('div', { class: 'run-page' }, head, actions.el, timelineSection, panel.el, data, events, logs);

  async function refresh() {
    let shown;
    try {
      shown = await api('GET', `${runApi(id)}?logs=true`);
    } catch (e) {
      if (e.status === 404 && !run) swap(head, h('h1', {}, 'Run ', h('span', { class: 'id' }, id)), h('p', {}, e.message));
      throw e;
    }
    run = shown;
    document.title = `${shown.id} · ${shown.status} · durable`;
    // Each part is re-rendered only when its own data changed, so a new
    // step does not reset, say, a text selection in the input.
    const { steps: _steps, events: sent, workflow_output: printed, input, output, error, superseded, ...summary } = shown;
    renderPart(head, summary, () => runHeader(shown));
    renderPart(data, [input, output, error, superseded, shown.status], () => runData(shown));
    renderPart(events, sent, () => eventsSection(shown, (key) => openStep(key, true)));
    renderPart(logs, printed, () => workflowOutput(shown));
    actions.update(shown);
    timelineSection.hidden = false;
    timeline.update(shown, Date.now());
    timeline.select(selected);
    if (selected) panel.show(selected, findStep(shown.steps, selected), shown);
    // A shared link or a reload with #step=KEY: bring the step into view once.
    if (firstLoad && selected) panel.focus();
    firstLoad = false;
  }

  function renderPart(container, source, build) {
    const json = JSON.stringify(source);
    if (rendered.get(container) === json) return;
    rendered.set(container, json);
    swap(container, build());
  }

  function openStep(key, focus) {
    selected = key;
    history.replaceState(null, '', `${location.pathname}${location.search}#step=${encodeURIComponent(key)}`);
    timeline.select(key);
    if (run) panel.show(key, findStep(run.steps, key), run);
    if (focus) panel.focus();
  }

  function closeStep(refocus) {
    const key = selected;
    selected = null;
    history.replaceState(null, '', location.pathname + location.search);
    panel.hide();
    timeline.select(null);
    if (refocus && key) timeline.focusBar(key);
  }

  return {
    root,
    refresh,
    live: () => !run || !ENDED.has(run.status),
    onHash() {
      const key = stepFromHash();
      if (key && key !== selected) openStep(key, true);
      else if (!key && selected) closeStep(false);
    },
    onEscape(ev) {
      if (!selected) return;
      const t = ev.target;
      const typing = t instanceof HTMLElement && t.matches('input, textarea, select') && !panel.el.contains(t);
      if (!typing) closeStep(true);
    },
  };
}

function stepFromHash() {
  const m = /^#step=(.*)$/.exec(location.hash);
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch { return null; }
}

function findStep(steps, key) {
  for (const s of steps ?? []) {
    if (s.key === key) return s;
    const inner = findStep(s.children, key);
    if (inner) return inner;
  }
  return null;
}

// Why a queued run has not started: the limit that holds it, its place.
const HELD_BY = {
  concurrency: 'the queue runs as many runs as its concurrency allows',
  key: 'a run with the same key is running (per_key_concurrency)',
  rate: "the queue's rate has no token now",
  behind: 'runs ahead of it go first',
  nothing: 'nothing: the server admits it at its next look',
};

function queueText(run) {
  const q = run.queued;
  if (!q) return run.queue;
  const place = q.position === 0 ? 'next' : `${q.position} ahead`;
  const key = q.key != null ? `, key ${q.key}` : '';
  return h('span', { 'data-fk': 'queued' }, `${run.queue}: ${place}, priority ${q.priority}${key}; held by `,
    h('strong', { 'data-held-by': q.held_by, title: HELD_BY[q.held_by] ?? '' }, q.held_by), ` (${HELD_BY[q.held_by] ?? q.held_by})`);
}

function runHeader(run) {
  const rows = [
    ['Workflow', run.workflow],
    ['Component', h('code', { title: run.component_digest }, `${(run.component_digest ?? '').slice(0, 12)}…`)],
  ];
  if (run.forked_from) {
    const slash = run.forked_from.indexOf('/');
    const parent = slash < 0 ? run.forked_from : run.forked_from.slice(0, slash);
    const step = slash < 0 ? '' : run.forked_from.slice(slash + 1);
    const href = runHref(parent) + (step ? `#step=${encodeURIComponent(step)}` : '');
    rows.push(['Forked from', h('a', { href, 'data-fk': 'forked-from' }, run.forked_from)]);
  }
  if (run.parent) {
    // A child workflow links back to its parent, at the call that started it.
    const href = runHref(run.parent) + (run.parent_key ? `#step=${encodeURIComponent(run.parent_key)}` : '');
    rows.push(['Parent', h('a', { href, 'data-fk': 'parent' }, run.parent)]);
  }
  if (run.children?.length) rows.push(['Children', `${run.children.length} (below)`]);
  if (run.queue) rows.push(['Queue', queueText(run)]);
  const tags = Object.entries(run.tags ?? {});
  if (tags.length) {
    // Each tag links to the runs that share it.
    rows.push(['Tags', h('span', { 'data-fk': 'tags' }, tags.map(([k, v]) =>
      h('a', { class: 'tag', href: `/?${new URLSearchParams({ tag: `${k}:${v}` })}`, 'data-tag': k }, `${k}=${v}`)))]);
  }
  rows.push(['Created', timeEl(run.created_at_ms)], ['Finished', timeEl(run.finished_at_ms)],
    ['Duration', run.duration_ms != null ? fmtDuration(run.duration_ms) : `${run.status}…`], ['Drives', String(run.drives)]);
  if (run.waiting_for) rows.push(['Waiting for', waitingText(run.waiting_for)]);
  if (run.wake_at_ms != null && run.waiting_for !== `until ${run.wake_at_ms}`) rows.push(['Due', timeEl(run.wake_at_ms)]);
  if (run.cancel_requested) rows.push(['Cancel', 'requested']);
  return [
    h('h1', {}, 'Run ', h('span', { class: 'id' }, run.id), ' ', badge(run.status, 'run-status')),
    h('dl', { class: 'facts' }, rows.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
  ];
}

function runData(run) {
  const parts = [h('h2', { id: 'data-title' }, 'Input and result'), jsonDetails('Input', run.input, 'input', 'run-input')];
  if (run.output != null || run.status === 'succeeded') parts.push(jsonDetails('Output', run.output, 'output', 'run-output'));
  if (run.error != null) parts.push(jsonDetails('Error', run.error, 'error', 'run-error'));
  if (run.children?.length) {
    parts.push(h('details', { 'data-dk': 'children', open: run.children.length <= 20 },
      h('summary', {}, `Child workflows (${run.children.length})`),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Status', 'Run', 'Workflow', 'Started by', 'Created'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, run.children.map((c) => h('tr', { 'data-child-id': c.id },
          h('td', {}, badge(c.status)),
          h('td', { class: 'id' }, h('a', { href: runHref(c.id), 'data-fk': `child:${c.id}` }, c.id)),
          h('td', {}, c.workflow), h('td', {}, c.parent_key ?? ''), h('td', { class: 'nowrap' }, timeEl(c.created_at_ms)))))))));
  }
  if (run.superseded?.length) {
    parts.push(h('details', { 'data-dk': 'superseded' },
      h('summary', {}, `Superseded records (${run.superseded.length})`),
      h('p', { class: 'muted' }, 'Records moved aside because a step body ran again and did something else; never replayed.'),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Key', 'Status', 'Committed in drive', 'Superseded in drive', 'At'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, run.superseded.map((s) => h('tr', {}, h('td', {}, s.key), h('td', {}, s.status),
          h('td', { class: 'num' }, s.drive), h('td', { class: 'num' }, s.superseded_in_drive), h('td', {}, timeEl(s.superseded_at_ms)))))))));
  }
  return parts;
}

function eventsSection(run, open) {
  const events = run.events ?? [];
  const body = events.length ? h('div', { class: 'table-wrap', 'data-sk': 'events' }, h('table', { class: 'events' },
    h('thead', {}, h('tr', {}, ['#', 'Name', 'Event id', 'Sent', 'Consumed by', 'Data'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, events.map((e) => h('tr', {},
      h('td', { class: 'num' }, e.seq), h('td', {}, e.name), h('td', {}, e.id ?? '—'),
      h('td', { class: 'nowrap' }, timeEl(e.sent_at_ms, true)),
      h('td', {}, e.consumed_by
        ? h('button', { type: 'button', class: 'linkish', 'data-fk': `consumed:${e.seq}`, onclick: () => open(e.consumed_by) }, e.consumed_by)
        : h('span', { class: 'muted' }, 'not yet')),
      h('td', {}, h('code', { class: 'payload', title: compact(e.payload, 2000) }, compact(e.payload))))))))
    : h('p', { class: 'muted' }, 'No events were sent to this run.');
  return [h('h2', { id: 'events-title' }, `Events (${events.length})`), body];
}

function workflowOutput(run) {
  const lines = run.workflow_output ?? [];
  return h('details', { 'data-dk': 'workflow-output', open: lines.length > 0 && lines.length <= 20 },
    h('summary', {}, h('h2', { class: 'inline' }, `Workflow output (${plural(lines.length, 'line')})`)), linesTable(lines));
}

// The cancel button and the send-event form; built once, so what is being
// typed survives the polls.
function runActions(id) {
  const cancel = h('button', { id: 'cancel-run', type: 'button', class: 'danger', hidden: true, onclick: cancelRun }, 'Cancel run');
  const name = h('input', { id: 'event-name', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
  const dataIn = h('textarea', { id: 'event-data', rows: 3, spellcheck: 'false', 'aria-describedby': 'event-data-msg' });
  dataIn.value = 'null';
  const msg = h('p', { id: 'event-data-msg', class: 'field-msg', 'aria-live': 'polite' });
  const send = h('button', { id: 'event-send', type: 'submit', class: 'primary', disabled: true }, 'Send event');
  const fieldset = h('fieldset', {}, h('legend', {}, 'Send an event'),
    h('label', { for: 'event-name' }, 'Name'), name,
    h('label', { for: 'event-data' }, 'Data (JSON)'), dataIn, msg, h('div', { class: 'actions' }, send));
  let nameTouched = false;

  function validate() {
    const parsed = parseJsonField(dataIn.value);
    const n = name.value.trim();
    let problem = parsed.ok ? '' : parsed.message;
    if (!problem && n && (/[/#\p{Cc}]/u.test(n) || n.startsWith('$'))) problem = 'An event name has no “/”, “#” or control characters and does not start with “$”.';
    dataIn.setAttribute('aria-invalid', String(!parsed.ok));
    msg.textContent = problem;
    msg.classList.toggle('bad', Boolean(problem));
    send.disabled = Boolean(problem) || !n;
    return problem ? null : { name: n, data: parsed.value };
  }

  async function sendEvent(ev) {
    ev.preventDefault();
    const ok = validate();
    if (!ok) return;
    const yes = await confirmAction(`Send the event “${ok.name}” to run “${id}” with data ${compact(ok.data, 300)}?`, 'Send event');
    if (!yes) return;
    send.disabled = true;
    try {
      const { data } = await request('POST', `${runApi(id)}/events/${encodeURIComponent(ok.name)}`, { data: ok.data });
      clearError();
      notify(data?.stored === false ? 'The run already had this event: nothing was stored.' : `Event “${ok.name}” sent${data?.seq != null ? ` (#${data.seq})` : ''}.`);
      poller.now();
    } catch (e) {
      reportError(e);
    } finally {
      validate();
    }
  }

  async function cancelRun() {
    const yes = await confirmAction(`Cancel run “${id}”? A cancelled run is final: it stops at its next durable call.`, 'Cancel run');
    if (!yes) return;
    try {
      const res = await api('POST', `${runApi(id)}/cancel`);
      clearError();
      notify({ now: 'The run is cancelled.', requested: 'Cancel requested: the run stops at its next durable call.',
        already: 'The run was already cancelled.' }[res?.cancelled] ?? 'Cancel sent.');
      poller.now();
    } catch (e) {
      reportError(e);
    }
  }

  // Whoever goes into the field owns it: no suggestion lands under their
  // typing (a poll may come between clearing and typing).
  for (const ev of ['focus', 'keydown', 'input']) {
    name.addEventListener(ev, () => { nameTouched = true; if (ev === 'input') validate(); });
  }
  dataIn.addEventListener('input', validate);
  dataIn.addEventListener('change', validate);
  name.addEventListener('change', validate);
  // An ended run takes neither events nor a cancel: the panel is hidden then.
  const el = h('section', { class: 'panel run-actions', 'aria-label': 'Actions', hidden: true },
    h('form', { class: 'event-form stack', onsubmit: sendEvent }, fieldset),
    h('div', { class: 'cancel-box' }, h('p', { class: 'muted' }, 'Stop the run for good:'), cancel));

  function update(run) {
    const ended = ENDED.has(run.status);
    cancel.hidden = ended;
    fieldset.disabled = ended;
    el.hidden = ended;
    // A run waiting for an event suggests its name, unless one was typed.
    const m = /^event (.+)$/.exec(run.waiting_for ?? '');
    if (m && !nameTouched && !name.value) name.value = m[1];
    validate();
  }
  return { el, update };
}

async function forkFrom(runId, key) {
  const yes = await confirmAction(
    `Fork run “${runId}” from step “${key}”? A new run starts at once: the steps before it are copied (recovered), “${key}” and everything after it run again. This run is not changed.`,
    'Fork');
  if (!yes) return;
  try {
    const res = await api('POST', `${runApi(runId)}/fork`, { from_step: key });
    clearError();
    notify(`Forked from ${key}: new run ${res.id}.`);
    navigate(runHref(res.id));
  } catch (e) {
    reportError(e);
  }
}

// ---------------------------------------------------------------------------
// 6. The timeline

function legend() {
  const item = (cls, text) => h('li', {}, h('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), text);
  return h('ul', { class: 'legend', 'aria-label': 'Legend' },
    item('sw-ok', 'ok'), item('sw-failed-attempt', 'failed attempt'), item('sw-failed', 'failed'),
    item('sw-recovered', 'recovered (from an earlier drive)'), item('sw-wait', 'sleep / event wait'),
    item('sw-drive', 'drive start'), item('sw-gap', 'idle gap, collapsed'));
}

// One row per step, depth-first; recorded now/random answers are skipped.
function timelineRows(run, now) {
  const rows = [];
  const ended = run.finished_at_ms;
  const walk = (steps, depth, parent) => {
    for (const s of steps ?? []) {
      const tail = parent && s.key.startsWith(`${parent}/`) ? s.key.slice(parent.length + 1) : s.key;
      if (/^\$(now|random)#/.test(tail)) continue;
      rows.push(stepRow(s, depth, parent, tail, ended));
      walk(s.children, depth + 1, s.key);
    }
  };
  walk(run.steps, 0, '');
  const pending = pendingRow(run, rows, now);
  if (pending) rows.push(pending);
  return rows;
}

// The attempts before the last one (failed_attempts also lists the last
// attempt when it failed too: that one is the step's own record).
const earlierAttempts = (s) => (s.failed_attempts ?? []).filter((a) => a.attempt !== s.attempts);

function stepRow(s, depth, parent, tail, runEnd) {
  const failed = earlierAttempts(s);
  const kind = tail.startsWith('$sleep#') ? 'sleep' : tail.startsWith('$event:') ? 'event' : 'step';
  const start = Math.min(s.started_at_ms, ...(s.failed_attempts ?? []).map((a) => a.started_at_ms));
  let end = s.finished_at_ms;
  // A sleep's value is its wake-up time; a run that ended early cut it short.
  if (kind === 'sleep' && typeof s.value === 'number') end = Math.max(s.started_at_ms, runEnd != null ? Math.min(s.value, runEnd) : s.value);
  let label = s.name;
  if (kind === 'sleep') label = 'sleep';
  if (kind === 'event') label = `event ${tail.slice('$event:'.length).replace(/#\d+$/, '')}`;
  if (tail.startsWith('$child:')) label = `child ${tail.slice('$child:'.length).replace(/#\d+$/, '')}`;
  const segs = kind !== 'step' ? [] : [
    ...failed.map((a) => ({ t0: a.started_at_ms, t1: a.finished_at_ms, cls: 'seg-failed-attempt', title: `attempt ${a.attempt}: ${a.status}: ${a.error}` })),
    { t0: s.started_at_ms, t1: s.finished_at_ms, cls: `seg-${s.status}`, title: `attempt ${s.attempts}: ${s.status}${s.error ? `: ${s.error}` : ''}` },
  ];
  return { key: s.key, step: s, depth, kind, label, start, end: Math.max(start, end), segs, batch: s.parallel != null ? `${parent}|${s.parallel}` : null };
}

// A waiting run's current wait has no record yet (an event) or has one (a
// sleep, drawn already); the open one is drawn from the last activity to now.
function pendingRow(run, rows, now) {
  if (run.status !== 'waiting' || !run.waiting_for) return null;
  const m = /^until (\d+)$/.exec(run.waiting_for);
  if (m && rows.some((r) => r.kind === 'sleep' && r.end === Number(m[1]))) return null;
  const last = Math.max(run.created_at_ms, ...rows.map((r) => r.end).filter((t) => t <= now),
    ...(run.drive_starts ?? []).map((d) => d.started_at_ms));
  const end = m ? Math.max(Number(m[1]), now) : now;
  return { key: '(pending)', pending: true, depth: 0, kind: m ? 'sleep' : 'event', label: `waiting: ${waitingText(run.waiting_for)}`,
    start: Math.min(last, now), end: Math.max(end, last), segs: [], live: !m };
}

// When each drive began: drive_starts, or (older runs) the earliest step of each drive.
function driveStarts(run, rows) {
  if (run.drive_starts?.length) return run.drive_starts.map((d) => ({ drive: d.drive, t: d.started_at_ms, inferred: false }));
  const first = new Map();
  for (const r of rows) {
    const d = r.step?.drive;
    if (d > 0) first.set(d, Math.min(first.get(d) ?? Infinity, r.start));
  }
  if (run.drives >= 1) first.set(1, Math.min(first.get(1) ?? Infinity, run.created_at_ms));
  return [...first].sort((a, b) => a[0] - b[0]).map(([drive, t]) => ({ drive, t, inferred: true }));
}

const NICE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 216e5, 432e5, 864e5];
const niceStep = (ms) => NICE_STEPS.find((s) => s >= ms) ?? Math.ceil(ms / 864e5) * 864e5;

// The piecewise-linear axis. Activity is where steps ran plus the moments
// drives began and waits began or ended; any gap without activity longer than
// max(1 s, 25% of the active time) is collapsed to a small fixed width, so a
// crash followed by a resume 10 minutes later, or an hour's sleep, does not
// squash the steps into slivers.
function buildAxis(run, rows, drives, now) {
  const runEnd = run.finished_at_ms ?? now;
  const times = rows.flatMap((r) => [r.start, r.end]);
  const start = Math.min(run.created_at_ms, ...times);
  const end = Math.max(runEnd, ...times, start + 1);
  // A waiting run's "now" is not activity: the wait runs through it.
  const spans = [[run.created_at_ms, run.created_at_ms], [end, end], ...drives.map((d) => [d.t, d.t])];
  if (run.status !== 'waiting') spans.push([runEnd, runEnd]);
  for (const r of rows) {
    if (r.kind === 'step') spans.push([r.start, r.end]);
    else if (r.pending) spans.push([r.start, r.start]);
    else spans.push([r.start, r.start], [r.end, r.end]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const [s, e] of spans) {
    const last = merged[merged.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else merged.push([s, e]);
  }
  const active = merged.reduce((n, [s, e]) => n + (e - s), 0);
  const threshold = Math.max(1000, 0.25 * active);
  // Pieces from start to end: linear ones (activity and short gaps, merged)
  // and collapsed gaps.
  const pieces = [];
  let cursor = start;
  const addLinear = (t0, t1) => {
    const last = pieces[pieces.length - 1];
    if (last && !last.gap) last.t1 = t1;
    else pieces.push({ t0, t1, gap: false });
  };
  for (const [s, e] of merged) {
    if (s > cursor) {
      if (s - cursor > threshold) pieces.push({ t0: cursor, t1: s, gap: true });
      else addLinear(cursor, s);
    }
    addLinear(s, e);
    cursor = e;
  }
  // No step took any time (only waits): nothing to keep readable, so no
  // collapsing; the axis is plain linear.
  if (!pieces.some((p) => !p.gap && p.t1 > p.t0)) pieces.splice(0, pieces.length, { t0: start, t1: end, gap: false });
  const breaks = pieces.filter((p) => p.gap).length;
  const breakW = breaks ? Math.min(6, 30 / breaks) : 0;
  const linearMs = pieces.reduce((n, p) => n + (p.gap ? 0 : p.t1 - p.t0), 0);
  const linearCount = pieces.length - breaks;
  const linearW = 100 - breaks * breakW;
  let left = 0;
  for (const p of pieces) {
    const share = linearMs > 0 ? (p.t1 - p.t0) / linearMs : 1 / Math.max(1, linearCount);
    p.left = left;
    p.width = p.gap ? breakW : linearW * share;
    left += p.width;
  }
  const pos = (t) => {
    if (t <= start) return 0;
    if (t >= end) return 100;
    for (const p of pieces) {
      if (t <= p.t1) return p.t1 > p.t0 ? p.left + (p.width * (t - p.t0)) / (p.t1 - p.t0) : p.left;
    }
    return 100;
  };
  return { start, end, pieces, pos, ticks: axisTicks(start, pieces, pos, linearMs / Math.max(linearW, 1)) };
}

// Ticks at round offsets from the axis start, about every 12% of the width,
// none crowding another or a collapsed gap.
function axisTicks(start, pieces, pos, msPerPct) {
  const ticks = [{ x: 0, label: '0' }];
  if (!(msPerPct > 0)) return ticks;
  const step = niceStep(msPerPct * 12);
  const gaps = pieces.filter((p) => p.gap);
  for (const p of pieces) {
    if (p.gap || p.t1 <= p.t0) continue;
    for (let k = Math.ceil((p.t0 - start) / step); start + k * step <= p.t1 && ticks.length < 60; k++) {
      const x = pos(start + k * step);
      const crowded = x - ticks[ticks.length - 1].x < 8 || gaps.some((g) => x > g.left - 4 && x < g.left + g.width + 4) || x > 97;
      if (!crowded) ticks.push({ x, label: fmtOffset(k * step, step) });
    }
  }
  return ticks;
}

function createTimeline(open) {
  const el = h('div', { id: 'timeline', class: 'timeline' });
  let sig = null;
  let model = null;
  let els = new Map(); // row key -> {row, bar, segs, text}
  let axisEl = null;
  let overlayEl = null;
  let selected = null;

  function update(run, now) {
    const rows = timelineRows(run, now);
    const drives = driveStarts(run, rows);
    model = { run, rows, drives, axis: buildAxis(run, rows, drives, now) };
    // Rebuilt only when the steps changed; otherwise (a live run's axis end
    // moving with the clock) the same elements are moved, so hover,
    // tooltips and focus stay put.
    const s = JSON.stringify([run.steps, run.drive_starts, run.status, run.waiting_for, run.finished_at_ms, run.drives]);
    if (s !== sig) { sig = s; render(); } else { place(); }
  }

  function render() {
    if (!model.rows.length) {
      els = new Map();
      swap(el, h('p', { class: 'muted empty' }, 'No steps recorded yet.'));
      return;
    }
    const scroll = el.scrollLeft;
    els = new Map();
    axisEl = h('div', { class: 'tl-axis', 'aria-hidden': 'true' });
    overlayEl = h('div', { class: 'tl-overlay', 'aria-hidden': 'true' });
    const rows = model.rows.map(renderRow);
    swap(el, h('div', { class: 'tl-inner' },
      h('div', { class: 'tl-head' }, h('div', { class: 'tl-h-label' }, 'Step'),
        h('div', { class: 'tl-h-drive', title: 'The drive that committed the step' }, 'Drive'), axisEl),
      h('div', { class: 'tl-rows', onkeydown: onKey }, rows), overlayEl));
    el.scrollLeft = scroll;
    place();
    select(selected);
  }

  function renderRow(r) {
    const s = r.step;
    const text = h('span', { class: 'bar-text' }, barText(r));
    if (r.pending) {
      const bar = h('div', { class: `pending-bar k-${r.kind}`, title: `${r.label} (since ${fmtDate(r.start)})` });
      els.set(r.key, { bar, segs: [], text });
      return h('div', { class: 'tl-row pending-row' }, h('div', { class: 'tl-label muted' }, r.label), h('div', { class: 'tl-drive-cell' }),
        h('div', { class: 'tl-track' }, bar, text));
    }
    const segs = r.segs.map((sg) => h('div', { class: `seg ${sg.cls}`, title: sg.title }));
    const bar = h('div', {
      class: `bar k-${r.kind} st-${s.status}`, 'data-key': r.key, 'data-source': s.source, 'data-drive': s.drive,
      'data-start-ms': r.start, 'data-end-ms': r.end, 'data-fk': `bar:${r.key}`, tabindex: 0, role: 'button',
      'aria-label': barAria(r), title: barAria(r),
    }, segs);
    bar.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); open(r.key); }
    });
    const label = h('button', { type: 'button', class: 'tl-label', 'data-key': r.key, 'data-fk': `label:${r.key}`, title: r.key, onclick: () => open(r.key) },
      r.batch ? h('span', { class: 'par-mark', title: `parallel batch (from call ${s.parallel})` }, '∥') : null,
      h('span', { class: 'tl-name' }, r.label));
    label.style.paddingLeft = `${0.5 + r.depth * 1.1}rem`;
    const drive = h('div', { class: `tl-drive-cell${s.source === 'recovered' ? ' recovered' : ''}`, title: sourceText(s) }, `D${s.drive}`);
    const track = h('div', { class: 'tl-track' }, bar, text);
    const row = h('div', { class: `tl-row k-${r.kind}${r.batch ? ' par' : ''}`, 'data-key': r.key }, label, drive, track);
    track.addEventListener('click', () => open(r.key));
    els.set(r.key, { row, bar, segs, text });
    return row;
  }

  // Positions every bar, segment and label for the current axis.
  function place() {
    const { pos } = model.axis;
    for (const r of model.rows) {
      const e = els.get(r.key);
      if (!e) continue;
      const x0 = pos(r.start);
      const x1 = pos(r.end);
      const w = x1 - x0;
      e.bar.style.left = `${x0}%`;
      e.bar.style.width = `${w}%`;
      if (!r.pending) { e.bar.dataset.startMs = r.start; e.bar.dataset.endMs = r.end; }
      r.segs.forEach((sg, i) => {
        const a = pos(sg.t0);
        const b = pos(sg.t1);
        e.segs[i].style.left = w > 0 ? `${((a - x0) / w) * 100}%` : '0';
        e.segs[i].style.width = w > 0 ? `${Math.max(0, ((b - a) / w) * 100)}%` : '100%';
      });
      placeText(e.text, x0, x1);
      if (r.pending) e.text.textContent = barText(r);
    }
    renderAxis();
  }

  function renderAxis() {
    const { axis, drives } = model;
    const parts = axis.ticks.map((t) => positioned(h('span', { class: `tick${t.x < 2 ? ' first' : ''}` }, t.label), t.x));
    const lines = [];
    // Labels closer than this (in % of the axis) would overwrite each other:
    // the later one is shortened (its length stays in its title).
    const room = 12;
    let lastGap = -Infinity;
    for (const g of axis.pieces.filter((p) => p.gap)) {
      // Centred on the gap, or held inside the axis near its ends.
      const mid = g.left + g.width / 2;
      const edge = mid > 92 ? ' end' : mid < 8 ? ' start' : '';
      const length = fmtDuration(g.t1 - g.t0);
      const text = mid - lastGap < room ? '⋯' : `⋯ ${length}`;
      if (text !== '⋯') lastGap = mid;
      const label = h('span', { class: `gap-label${edge}`, title: `${length} without step activity, collapsed` }, text);
      parts.push(positioned(label, edge === ' end' ? g.left + g.width : edge ? g.left : mid));
      const band = h('div', { class: 'tl-gap' });
      band.style.left = `${g.left}%`;
      band.style.width = `${g.width}%`;
      lines.push(band);
    }
    // Drives that began close together on the axis share one label.
    const groups = [];
    for (const d of drives) {
      const x = axis.pos(d.t);
      const title = `drive ${d.drive} began ${fmtDate(d.t, true)}${d.inferred ? ' (approximately: its first step)' : ''}`;
      lines.push(positioned(h('div', { class: 'tl-drive-line', title }), x));
      const last = groups[groups.length - 1];
      if (last && x - last.x < room) last.members.push({ d, title });
      else groups.push({ x, members: [{ d, title }] });
    }
    for (const { x, members } of groups) {
      const first = members[0].d.drive;
      const last = members[members.length - 1].d.drive;
      const text = members.length === 1 ? `drive ${first}` : `drives ${first}–${last}`;
      const title = members.map((m) => m.title).join('\n');
      parts.push(positioned(h('span', { class: `drive-label${x > 90 ? ' end' : ''}`, title }, text), x));
    }
    axisEl.replaceChildren(...parts);
    overlayEl.replaceChildren(...lines);
  }

  // Up and Down move between rows, staying on bars or on labels.
  function onKey(ev) {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    const cls = ev.target.classList.contains('bar') ? '.bar' : ev.target.classList.contains('tl-label') ? '.tl-label' : null;
    if (!cls) return;
    const all = [...el.querySelectorAll(`${cls}[data-key]`)];
    const next = all[all.indexOf(ev.target) + (ev.key === 'ArrowDown' ? 1 : -1)];
    if (next) { ev.preventDefault(); next.focus(); }
  }

  function select(key) {
    selected = key;
    for (const [k, e] of els) {
      e.row?.classList.toggle('selected', k === key);
      if (e.row && k === key) e.bar.setAttribute('aria-current', 'true');
      else e.bar.removeAttribute('aria-current');
    }
  }

  function focusBar(key) {
    els.get(key)?.bar.focus?.();
  }

  return { el, update, select, focusBar };
}

function positioned(node, x) {
  node.style.left = `${x}%`;
  return node;
}

// The text next to a bar: its duration, attempts and drive, inside the bar
// when the bar is wide, else on whichever side has room.
function placeText(text, x0, x1) {
  text.style.left = '';
  text.style.right = '';
  if (x1 - x0 > 30) { text.className = 'bar-text inside'; text.style.left = `${x0}%`; }
  else if (x1 < 70) { text.className = 'bar-text after'; text.style.left = `${x1}%`; }
  else { text.className = 'bar-text before'; text.style.right = `${100 - x0}%`; }
}

function barText(r) {
  if (r.pending) return `${fmtDuration(r.end - r.start)} so far`;
  const s = r.step;
  const parts = [fmtDuration(r.end - r.start)];
  if (r.kind === 'sleep') parts.unshift('sleep');
  if (s.attempts > 1) parts.push(`${s.attempts} attempts`);
  if (r.kind === 'step' && s.status !== 'ok') parts.push(s.status);
  parts.push(s.source === 'recovered' ? (s.drive === 0 ? 'recovered · fork copy' : `recovered · drive ${s.drive}`) : `drive ${s.drive}`);
  return parts.join(' · ');
}

function barAria(r) {
  const s = r.step;
  return `${r.label} (${r.key}): ${s.status}, ${fmtDuration(r.end - r.start)}, ${plural(s.attempts, 'attempt')}, ${sourceText(s)}`;
}

function sourceText(s) {
  if (s.source === 'recovered') return s.drive === 0 ? 'recovered: copied by fork' : `recovered: committed in drive ${s.drive}`;
  return `executed in drive ${s.drive}`;
}

// ---------------------------------------------------------------------------
// 7. The step detail panel

function createStepPanel({ close, fork }) {
  const el = h('section', { id: 'step-detail', class: 'panel step-detail', hidden: true, tabindex: -1, 'aria-labelledby': 'step-detail-title' });
  let sig = null;

  function show(key, step, run) {
    const s = JSON.stringify([key, step, run.status, run.id]);
    el.hidden = false;
    el.dataset.key = key;
    if (s === sig) return; // unchanged: keep the reader's place
    sig = s;
    swap(el, stepContent(key, step, run, close, fork));
  }

  function hide() {
    sig = null;
    el.hidden = true;
    delete el.dataset.key;
    el.replaceChildren();
  }

  function focus() {
    el.focus({ preventScroll: true });
    el.scrollIntoView({ block: 'nearest' });
  }
  return { el, show, hide, focus };
}

function stepContent(key, step, run, close, fork) {
  const head = h('div', { class: 'panel-head' },
    h('h2', { id: 'step-detail-title' }, 'Step ', h('code', {}, key)),
    h('button', { id: 'step-close', type: 'button', 'data-fk': 'step-close', onclick: close, 'aria-label': 'Close the step details' }, 'Close'));
  if (!step) return [head, h('p', {}, `This run has no step “${key}” (yet).`)];
  const attempts = [...earlierAttempts(step),
    { attempt: step.attempts, status: step.status, error: step.error, started_at_ms: step.started_at_ms, finished_at_ms: step.finished_at_ms }];
  const facts = [
    ['Name', step.name],
    ['Status', h('span', { class: `badge st-${step.status}` }, step.status)],
    ['Source', sourceText(step)],
    ['Idempotency key', step.idempotency_key != null ? h('code', {}, step.idempotency_key) : '—'],
    ['Attempts', String(step.attempts)],
    ['Started', timeEl(step.started_at_ms, true)],
    ['Finished', timeEl(step.finished_at_ms, true)],
    ['Duration (last attempt)', fmtDuration(step.duration_ms ?? step.finished_at_ms - step.started_at_ms)],
  ];
  if (step.parallel != null) facts.push(['Parallel batch', `∥ from call ${step.parallel}`]);
  if (/(^|\/)\$sleep#/.test(key) && typeof step.value === 'number') facts.push(['Wakes at', timeEl(step.value, true)]);
  const parts = [head,
    h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
    h('h3', {}, 'Attempts'), attemptsTable(attempts), stepInput(step)];
  if (step.status === 'ok') parts.push(jsonDetails(/(^|\/)\$event:/.test(key) ? 'Value (the event data)' : 'Output', step.value, 'output', 'step-output'));
  else parts.push(jsonDetails('Error', step.error ?? '', 'error', 'step-error'));
  if (step.event) parts.push(h('h3', {}, 'Event consumed'), eventFacts(step.event));
  if (step.child) {
    parts.push(h('h3', {}, 'Child workflow'), h('p', {},
      h('a', { href: runHref(step.child.id), 'data-fk': 'step-child' }, step.child.id), ' ', badge(step.child.status)));
  }
  if (step.output !== undefined) {
    parts.push(h('details', { 'data-dk': 'step-lines', open: (step.output ?? []).length <= 20 },
      h('summary', {}, `Output and logs (${plural((step.output ?? []).length, 'line')})`), linesTable(step.output)));
  }
  parts.push(h('div', { class: 'actions' },
    h('button', { id: 'fork-step', type: 'button', 'data-fk': 'fork-step', onclick: () => fork(key) }, 'Fork from this step'),
    h('span', { class: 'muted' }, 'A new run: the steps before this one are copied, this one and the rest run again.')));
  return parts;
}

function stepInput(step) {
  if (step.input === undefined) return h('p', { class: 'muted' }, 'Input: not reported by this server.');
  const pre = jsonDetails('Input', step.input, 'input', 'step-input');
  if (step.input !== null) return pre;
  return [pre, h('p', { class: 'muted' }, 'null: the step took null, or was recorded by an older version that did not keep inputs.')];
}

function attemptsTable(attempts) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'attempts' },
    h('thead', {}, h('tr', {}, ['#', 'Status', 'Error', 'Started', 'Duration'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, attempts.map((a) => h('tr', {},
      h('td', { class: 'num' }, a.attempt), h('td', {}, h('span', { class: `badge st-${a.status}` }, a.status)),
      h('td', {}, a.error ? h('span', { class: 'line' }, a.error) : '—'),
      h('td', { class: 'nowrap' }, timeEl(a.started_at_ms, true)), h('td', { class: 'nowrap' }, fmtDuration(a.finished_at_ms - a.started_at_ms)))))));
}

function eventFacts(e) {
  return [h('dl', { class: 'facts' },
    [['Seq', `#${e.seq}`], ['Name', e.name], ['Event id', e.id ?? '—'], ['Sent', timeEl(e.sent_at_ms, true)]]
      .map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
  jsonDetails('Payload', e.payload, 'event-payload', 'step-event-payload')];
}

// ---------------------------------------------------------------------------
// Start

function onGlobalKey(ev) {
  if (ev.key === 'Escape' && !$('confirm').open) page?.onEscape?.(ev);
}

$('error-close').addEventListener('click', clearError);
$('login-form').addEventListener('submit', saveToken);
document.addEventListener('click', onLinkClick);
document.addEventListener('keydown', onGlobalKey);
window.addEventListener('popstate', route);
window.addEventListener('hashchange', () => page?.onHash?.());
route();
