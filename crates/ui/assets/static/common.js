// Helpers shared by the graph and stores pages. Every URL is relative: the page's
// <base href> names the web prefix, so the UI works under any --web.external-prefix.

/** Creates an element: el('div', {class: 'x', onclick: f}, child, 'text', ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      node.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      node.className = v;
    } else if (k === 'dataset') {
      Object.assign(node.dataset, v);
    } else if (k in node && typeof v !== 'string') {
      node[k] = v;
    } else {
      node.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/**
 * Calls a Prometheus-style JSON API. Resolves to {data, warnings}; rejects with an Error
 * whose message is the API's error (or the HTTP failure) so callers can show it as is.
 */
export async function apiGet(path, params = {}, signal = undefined) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    qs.append(k, String(v));
  }
  const url = qs.toString() ? `${path}?${qs}` : path;
  let resp;
  try {
    resp = await fetch(url, { signal, headers: { Accept: 'application/json' } });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new Error(`cannot reach the server: ${e.message}`);
  }
  const text = await resp.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    const snippet = text.trim().slice(0, 200);
    throw new Error(`HTTP ${resp.status} ${resp.statusText}${snippet ? `: ${snippet}` : ''}`);
  }
  if (!resp.ok || body.status !== 'success') {
    const kind = body.errorType ? `${body.errorType}: ` : '';
    const err = new Error(`${kind}${body.error || `HTTP ${resp.status} ${resp.statusText}`}`);
    err.warnings = body.warnings || [];
    err.status = resp.status;
    throw err;
  }
  return { data: body.data, warnings: body.warnings || [], infos: body.infos || [] };
}

/** `name{a="b", c="d"}` for a metric's label set. */
export function formatSeries(metric) {
  const m = metric || {};
  const name = m.__name__ || '';
  const rest = Object.keys(m)
    .filter((k) => k !== '__name__')
    .sort()
    .map((k) => `${k}=${JSON.stringify(m[k])}`);
  if (rest.length === 0) return name || '{}';
  return `${name}{${rest.join(', ')}}`;
}

const UNITS = [
  ['y', 365 * 24 * 3600 * 1000],
  ['w', 7 * 24 * 3600 * 1000],
  ['d', 24 * 3600 * 1000],
  ['h', 3600 * 1000],
  ['m', 60 * 1000],
  ['s', 1000],
  ['ms', 1],
];

/** Parses a Prometheus duration (`1h30m`, `90s`, `1.5h`, a bare number of seconds) to ms. */
export function parseDuration(s) {
  const str = String(s || '').trim();
  if (str === '') return null;
  if (/^\d+(\.\d+)?$/.test(str)) return Math.round(parseFloat(str) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  let m;
  while ((m = re.exec(str)) !== null) {
    if (m.index !== consumed) return null;
    consumed = re.lastIndex;
    const unit = UNITS.find(([u]) => u === m[2]);
    total += parseFloat(m[1]) * unit[1];
  }
  if (consumed !== str.length || total <= 0) return null;
  return Math.round(total);
}

/** The shortest Prometheus duration for ms (`1h30m`, `15s`). */
export function formatDuration(ms) {
  if (!ms || ms <= 0) return '0s';
  let rest = ms;
  let out = '';
  for (const [u, f] of UNITS) {
    const n = Math.floor(rest / f);
    if (n > 0) {
      out += `${n}${u}`;
      rest -= n * f;
    }
  }
  return out;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** `2026-01-02 15:04:05` in UTC (what the time inputs and the URL use). */
export function formatTime(ms) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return '';
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
  );
}

/**
 * Parses a time input: `2026-01-02 15:04:05` or `2026-01-02T15:04` (UTC unless a zone is
 * given), RFC 3339, or Unix seconds. Returns ms, or null when empty or invalid.
 */
export function parseTime(s) {
  const str = String(s || '').trim();
  if (str === '') return null;
  if (/^-?\d+(\.\d+)?$/.test(str)) return Math.round(parseFloat(str) * 1000);
  let iso = str.replace(' ', 'T');
  if (/^\d{4}-\d{2}-\d{2}$/.test(iso)) iso += 'T00:00:00';
  if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(iso)) iso += 'Z';
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** A Prometheus timestamp (seconds, possibly fractional) as a string for API parameters. */
export function apiTime(ms) {
  return (ms / 1000).toFixed(3);
}

/** "3s ago", "2m ago" for a past timestamp. */
export function ago(ms, now = Date.now()) {
  const d = Math.max(0, now - ms);
  if (d < 1000) return 'just now';
  return `${formatDuration(Math.floor(d / 1000) * 1000)} ago`;
}

/**
 * A page that shows one API answer and refreshes it every 10 s (stores, alerts, rules):
 * `render(data)` draws it into `root`; the answer's warnings are shown above it; a failure is
 * shown in `status` as "loading <what>: …". `document.body.dataset.state` says `done` or
 * `error` for tests.
 */
export function refreshingPage({ path, params = {}, what, status, root, render }) {
  async function load() {
    try {
      const { data, warnings } = await apiGet(path, params);
      render(data);
      for (const w of warnings) {
        root.prepend(el('div', { class: 'alert warning' }, el('strong', {}, 'Warning: '), w));
      }
      document.body.dataset.state = 'done';
    } catch (e) {
      status.replaceChildren(
        el('div', { class: 'alert error', role: 'alert' }, el('strong', {}, 'Error: '), `loading ${what}: ${e.message}`),
      );
      status.className = '';
      document.body.dataset.state = 'error';
    }
  }
  load();
  setInterval(load, 10000);
}
