// The graph page: query panels with a table view (instant query) and a graph view (range
// query, drawn with uPlot), Thanos' query options, and metric-name completion.
//
// Panel state lives in the URL with Prometheus' parameter names (g0.expr, g0.tab (0 = graph,
// 1 = table), g0.range_input, g0.end_input, g0.moment_input, g0.step_input) and Thanos'
// (g0.deduplicate, g0.partial_response, g0.max_source_resolution), so links from Prometheus
// and Thanos open the same view here.

import {
  el,
  apiGet,
  formatSeries,
  parseDuration,
  formatDuration,
  parseTime,
  formatTime,
  apiTime,
} from './common.js';

export const PALETTE = [
  '#2f6fdf', '#e8590c', '#2b9a3e', '#c2255c', '#7048e8',
  '#0c8599', '#f08c00', '#5c940d', '#862e9c', '#a61e4d',
];
const TAB_GRAPH = 0;
const TAB_TABLE = 1;
const MAX_TABLE_ROWS = 10000;
const MAX_GRAPH_SERIES = 1000;
const RESOLUTIONS = [
  ['auto', 'Auto downsampled'],
  ['0s', 'Only raw data'],
  ['5m', 'Max 5m'],
  ['1h', 'Max 1h'],
];

const defaultPartial = document.body.dataset.partialResponse !== 'false';
// --query.default-step (ms): the smallest step the graph picks by itself.
const defaultStep = Number(document.body.dataset.defaultStep) || 1000;

// ---------------------------------------------------------------------------------------------
// Metric-name completion.

let metricNames = [];
const metricNamesLoaded = apiGet('api/v1/label/__name__/values')
  .then(({ data }) => {
    metricNames = Array.isArray(data) ? data.slice().sort() : [];
    document.body.dataset.metricNames = String(metricNames.length);
  })
  .catch((e) => {
    document.body.dataset.metricNames = 'error';
    console.warn('metric names for completion:', e.message);
  });

// Metric metadata (type and help, from the stores' Metadata API) shown beside the names.
let metricMetadata = {};
apiGet('api/v1/metadata')
  .then(({ data }) => {
    metricMetadata = data && typeof data === 'object' ? data : {};
    document.body.dataset.metricMetadata = String(Object.keys(metricMetadata).length);
  })
  .catch((e) => {
    document.body.dataset.metricMetadata = 'error';
    console.warn('metric metadata for completion:', e.message);
  });

/** The identifier being typed just before the cursor, or null inside braces and strings. */
function tokenBeforeCursor(text, cursor) {
  const before = text.slice(0, cursor);
  let depth = 0;
  let quote = null;
  for (const c of before) {
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'" || c === '`') {
      quote = c;
    } else if (c === '{') {
      depth++;
    } else if (c === '}') {
      depth = Math.max(0, depth - 1);
    }
  }
  if (quote || depth > 0) return null;
  const m = /[a-zA-Z_:][a-zA-Z0-9_:]*$/.exec(before);
  return m ? m[0] : null;
}

/** Names matching the token: prefix matches first, then substring matches. */
export function completionsFor(token, names, limit = 20) {
  if (!token) return [];
  const lower = token.toLowerCase();
  const prefix = [];
  const inner = [];
  for (const n of names) {
    const l = n.toLowerCase();
    if (l === lower) continue;
    if (l.startsWith(lower)) prefix.push(n);
    else if (l.includes(lower)) inner.push(n);
    if (prefix.length >= limit) break;
  }
  return prefix.concat(inner).slice(0, limit);
}

class Completer {
  constructor(input, onAccept) {
    this.input = input;
    this.onAccept = onAccept;
    this.list = el('ul', { class: 'completions', role: 'listbox' });
    this.list.hidden = true;
    this.items = [];
    this.active = -1;
    input.addEventListener('input', () => this.update());
    input.addEventListener('blur', () => setTimeout(() => this.close(), 150));
  }

  get open() {
    return !this.list.hidden && this.items.length > 0;
  }

  update() {
    const token = tokenBeforeCursor(this.input.value, this.input.selectionStart);
    this.items = completionsFor(token, metricNames);
    this.token = token;
    this.active = this.items.length ? 0 : -1;
    this.render();
  }

  render() {
    this.list.replaceChildren(
      ...this.items.map((name, i) => {
        // A metric's first metadata entry: its type beside the name, its help on hover.
        const meta = (metricMetadata[name] || [])[0];
        const attrs = {
          class: i === this.active ? 'active' : '',
          role: 'option',
          onmousedown: (e) => {
            e.preventDefault();
            this.accept(i);
          },
        };
        if (meta && meta.help) attrs.title = meta.help;
        return el(
          'li',
          attrs,
          el('span', { class: 'name' }, name),
          meta && meta.type ? el('span', { class: 'meta-type' }, meta.type) : false,
        );
      }),
    );
    this.list.hidden = this.items.length === 0;
  }

  close() {
    this.items = [];
    this.render();
  }

  move(delta) {
    if (!this.open) return;
    this.active = (this.active + delta + this.items.length) % this.items.length;
    this.render();
  }

  accept(i = this.active) {
    const name = this.items[i];
    if (name === undefined || !this.token) return;
    const cursor = this.input.selectionStart;
    const start = cursor - this.token.length;
    const v = this.input.value;
    this.input.value = v.slice(0, start) + name + v.slice(cursor);
    const pos = start + name.length;
    this.input.setSelectionRange(pos, pos);
    this.close();
    this.onAccept();
  }

  /** Handles a keydown; true when the completion list consumed it. */
  key(e) {
    if (!this.open) return false;
    switch (e.key) {
      case 'ArrowDown':
        this.move(1);
        return true;
      case 'ArrowUp':
        this.move(-1);
        return true;
      case 'Tab':
      case 'Enter':
        this.accept();
        return true;
      case 'Escape':
        this.close();
        return true;
      default:
        return false;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Values.

function parseValue(s) {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  return parseFloat(s);
}

function formatValue(v) {
  if (v === null || v === undefined) return '';
  if (!Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e15 || a < 1e-4)) return v.toExponential(3);
  return String(Math.round(v * 1e6) / 1e6);
}

/** A time axis tick in UTC: a date for day steps, else 24-hour time. */
function timeTick(sec, incr) {
  if (sec === null || sec === undefined) return '';
  const full = formatTime(sec * 1000);
  if (incr >= 86400) return full.slice(0, 10);
  const time = incr < 60 ? full.slice(11) : full.slice(11, 16);
  return time === '00:00' || time === '00:00:00' ? `${full.slice(5, 10)}\n${time}` : time;
}

// ---------------------------------------------------------------------------------------------
// Panels.

let panelSeq = 0;
const panels = [];

class Panel {
  constructor(opts) {
    this.id = panelSeq++;
    this.opts = {
      expr: '',
      tab: TAB_TABLE,
      range: '1h',
      end: '',
      step: '',
      dedup: true,
      partial: defaultPartial,
      resolution: '0s',
      ...opts,
    };
    this.abort = null;
    this.plot = null;
    this.build();
  }

  build() {
    const o = this.opts;
    this.expr = el('textarea', {
      class: 'expr',
      rows: 1,
      spellcheck: 'false',
      autocomplete: 'off',
      placeholder: 'Expression (press Shift+Enter for newlines)',
      'aria-label': 'Expression',
    });
    this.expr.value = o.expr;
    this.completer = new Completer(this.expr, () => this.autosize());
    this.expr.addEventListener('keydown', (e) => {
      if (this.completer.key(e)) {
        e.preventDefault();
        return;
      }
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        this.execute();
      }
    });
    this.expr.addEventListener('input', () => this.autosize());

    this.dedup = el('input', { type: 'checkbox', class: 'opt-dedup', checked: o.dedup });
    this.partial = el('input', { type: 'checkbox', class: 'opt-partial', checked: o.partial });
    this.resolution = el(
      'select',
      { class: 'opt-resolution' },
      RESOLUTIONS.map(([v, label]) => el('option', { value: v }, label)),
    );
    this.resolution.value = RESOLUTIONS.some(([v]) => v === o.resolution) ? o.resolution : '0s';

    this.rangeInput = el('input', { class: 'range-input', size: 6, 'aria-label': 'Range' });
    this.rangeInput.value = o.range;
    this.endInput = el('input', {
      class: 'end-input',
      size: 22,
      placeholder: 'End time (UTC), empty = now',
      'aria-label': 'End time (UTC)',
    });
    this.endInput.value = o.end;
    this.stepInput = el('input', {
      class: 'step-input',
      size: 6,
      placeholder: 'auto',
      'aria-label': 'Resolution step',
    });
    this.stepInput.value = o.step;
    for (const input of [this.rangeInput, this.endInput, this.stepInput]) {
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') this.execute();
      });
    }
    for (const input of [this.dedup, this.partial, this.resolution]) {
      input.addEventListener('change', () => this.execute());
    }

    this.tabButtons = [TAB_TABLE, TAB_GRAPH].map((tab) =>
      el(
        'button',
        {
          type: 'button',
          class: 'tab',
          dataset: { tab: String(tab) },
          onclick: () => {
            this.opts.tab = tab;
            this.execute();
          },
        },
        tab === TAB_TABLE ? 'Table' : 'Graph',
      ),
    );

    this.rangeControls = el(
      'span',
      { class: 'range-controls' },
      el('button', { type: 'button', title: 'Shrink range', onclick: () => this.zoom(0.5) }, '−'),
      this.rangeInput,
      el('button', { type: 'button', title: 'Grow range', onclick: () => this.zoom(2) }, '+'),
    );
    this.stepControls = el('label', { class: 'step-controls' }, 'Step ', this.stepInput);

    this.messages = el('div', { class: 'messages' });
    this.stats = el('div', { class: 'stats muted' });
    this.result = el('div', { class: 'result' });

    this.node = el(
      'section',
      { class: 'panel', dataset: { panel: String(this.id), state: 'idle' } },
      el(
        'div',
        { class: 'query-row' },
        el('div', { class: 'expr-wrap' }, this.expr, this.completer.list),
        el('button', { type: 'button', class: 'execute', onclick: () => this.execute() }, 'Execute'),
        el(
          'button',
          { type: 'button', class: 'remove secondary', title: 'Remove panel', onclick: () => this.remove() },
          '×',
        ),
      ),
      el(
        'div',
        { class: 'options' },
        el('label', {}, this.dedup, ' Use deduplication'),
        el('label', {}, this.partial, ' Use partial response'),
        el('label', {}, 'Max source resolution ', this.resolution),
      ),
      el(
        'div',
        { class: 'controls' },
        el('span', { class: 'tabs' }, this.tabButtons),
        this.rangeControls,
        el(
          'span',
          { class: 'end-controls' },
          el('button', { type: 'button', title: 'Earlier', onclick: () => this.shiftEnd(-1) }, '‹'),
          this.endInput,
          el('button', { type: 'button', title: 'Later', onclick: () => this.shiftEnd(1) }, '›'),
        ),
        this.stepControls,
      ),
      this.messages,
      this.stats,
      this.result,
    );
    this.showTab();
    requestAnimationFrame(() => this.autosize());
  }

  autosize() {
    this.expr.style.height = 'auto';
    this.expr.style.height = `${this.expr.scrollHeight + 2}px`;
  }

  showTab() {
    const graph = this.opts.tab === TAB_GRAPH;
    for (const b of this.tabButtons) {
      b.classList.toggle('active', Number(b.dataset.tab) === this.opts.tab);
    }
    this.rangeControls.hidden = !graph;
    this.stepControls.hidden = !graph;
    this.endInput.placeholder = graph ? 'End time (UTC), empty = now' : 'Evaluation time (UTC), empty = now';
  }

  rangeMs() {
    return parseDuration(this.rangeInput.value) ?? 3600 * 1000;
  }

  zoom(factor) {
    const r = Math.max(1000, Math.round(this.rangeMs() * factor));
    this.rangeInput.value = formatDuration(r);
    this.execute();
  }

  shiftEnd(dir) {
    const end = parseTime(this.endInput.value) ?? Date.now();
    const shift = this.opts.tab === TAB_GRAPH ? this.rangeMs() / 2 : 3600 * 1000;
    this.endInput.value = formatTime(end + dir * shift);
    this.execute();
  }

  /** This panel's URL parameters (`g<i>.…`). */
  urlParams(i, qs) {
    const p = (k, v) => qs.set(`g${i}.${k}`, v);
    p('expr', this.expr.value);
    p('tab', String(this.opts.tab));
    p('range_input', this.rangeInput.value || '1h');
    if (this.endInput.value) {
      p('end_input', this.endInput.value);
      p('moment_input', this.endInput.value);
    }
    if (this.stepInput.value) p('step_input', this.stepInput.value);
    p('deduplicate', this.dedup.checked ? '1' : '0');
    p('partial_response', this.partial.checked ? '1' : '0');
    p('max_source_resolution', this.resolution.value);
  }

  commonParams() {
    return {
      dedup: String(this.dedup.checked),
      partial_response: String(this.partial.checked),
      max_source_resolution: this.resolution.value,
    };
  }

  remove() {
    if (this.abort) this.abort.abort();
    if (this.plot) this.plot.destroy();
    this.node.remove();
    panels.splice(panels.indexOf(this), 1);
    saveUrl();
  }

  showMessages(warnings, error) {
    const items = [];
    if (error) {
      items.push(el('div', { class: 'alert error', role: 'alert' }, el('strong', {}, 'Error: '), error));
    }
    for (const w of warnings || []) {
      items.push(el('div', { class: 'alert warning', role: 'status' }, el('strong', {}, 'Warning: '), w));
    }
    this.messages.replaceChildren(...items);
  }

  async execute() {
    this.showTab();
    saveUrl();
    if (this.abort) this.abort.abort();
    const expr = this.expr.value.trim();
    if (expr === '') {
      this.showMessages([], null);
      this.stats.textContent = '';
      this.clearResult();
      this.node.dataset.state = 'idle';
      return;
    }
    const endText = this.endInput.value.trim();
    const end = endText === '' ? Date.now() : parseTime(endText);
    if (end === null) {
      this.showMessages([], `cannot parse time "${endText}": use YYYY-MM-DD HH:MM:SS (UTC) or Unix seconds`);
      this.node.dataset.state = 'error';
      return;
    }
    this.abort = new AbortController();
    const signal = this.abort.signal;
    this.node.dataset.state = 'loading';
    this.stats.textContent = 'Loading…';
    const started = performance.now();
    try {
      if (this.opts.tab === TAB_GRAPH) {
        const range = parseDuration(this.rangeInput.value);
        if (range === null) throw new Error(`cannot parse range "${this.rangeInput.value}"`);
        let step = parseDuration(this.stepInput.value);
        if (this.stepInput.value.trim() !== '' && step === null) {
          throw new Error(`cannot parse step "${this.stepInput.value}"`);
        }
        if (step === null) step = Math.max(Math.floor(range / 250 / 1000) * 1000, defaultStep);
        const start = end - range;
        const { data, warnings } = await apiGet(
          'api/v1/query_range',
          {
            query: expr,
            start: apiTime(start),
            end: apiTime(end),
            step: String(step / 1000),
            ...this.commonParams(),
          },
          signal,
        );
        const n = this.drawGraph(data, start, end);
        this.showMessages(warnings, null);
        this.stats.textContent =
          `Load time: ${Math.round(performance.now() - started)}ms · ` +
          `Resolution: ${formatDuration(step)} · Result series: ${n}`;
      } else {
        const { data, warnings } = await apiGet(
          'api/v1/query',
          { query: expr, time: apiTime(end), ...this.commonParams() },
          signal,
        );
        const n = this.drawTable(data);
        this.showMessages(warnings, null);
        this.stats.textContent =
          `Load time: ${Math.round(performance.now() - started)}ms · Result series: ${n}`;
      }
      this.node.dataset.state = 'done';
    } catch (e) {
      if (e.name === 'AbortError') return;
      this.clearResult();
      this.showMessages(e.warnings || [], e.message);
      this.stats.textContent = '';
      this.node.dataset.state = 'error';
    }
  }

  clearResult() {
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
    }
    this.result.replaceChildren();
  }

  drawTable(data) {
    this.clearResult();
    const rows = [];
    let count = 0;
    const row = (series, value) =>
      el('tr', { class: 'series-row' }, el('td', { class: 'series' }, series), el('td', { class: 'value' }, value));
    switch (data.resultType) {
      case 'vector':
        count = data.result.length;
        for (const s of data.result.slice(0, MAX_TABLE_ROWS)) {
          // The API's exact value string, as Prometheus' table shows it.
          const v = s.value ? s.value[1] : s.histogram ? '(native histogram)' : '';
          rows.push(row(formatSeries(s.metric), v));
        }
        break;
      case 'matrix':
        count = data.result.length;
        for (const s of data.result.slice(0, MAX_TABLE_ROWS)) {
          const vals = (s.values || []).map(([t, v]) => `${v} @${t}`);
          rows.push(row(formatSeries(s.metric), el('span', { class: 'matrix' }, vals.join('\n'))));
        }
        break;
      case 'scalar':
        count = 1;
        rows.push(row('scalar', data.result[1]));
        break;
      case 'string':
        count = 1;
        rows.push(row('string', data.result[1]));
        break;
      default:
        throw new Error(`unknown result type "${data.resultType}"`);
    }
    if (count === 0) {
      this.result.append(el('p', { class: 'empty muted' }, 'Empty query result'));
      return 0;
    }
    if (count > MAX_TABLE_ROWS) {
      this.result.append(
        el('div', { class: 'alert warning' }, `Showing ${MAX_TABLE_ROWS} of ${count} series.`),
      );
    }
    this.result.append(el('table', { class: 'data-table' }, el('tbody', {}, rows)));
    return count;
  }

  drawGraph(data, startMs, endMs) {
    this.clearResult();
    if (data.resultType !== 'matrix') {
      throw new Error(`a graph needs a range vector result, got "${data.resultType}"`);
    }
    const all = data.result;
    if (all.length === 0) {
      this.result.append(el('p', { class: 'empty muted' }, 'Empty query result'));
      return 0;
    }
    const series = all.slice(0, MAX_GRAPH_SERIES);
    if (all.length > MAX_GRAPH_SERIES) {
      this.result.append(
        el('div', { class: 'alert warning' }, `Graphing ${MAX_GRAPH_SERIES} of ${all.length} series.`),
      );
    }
    // uPlot wants one shared x array; range results sit on the same step grid.
    const stamps = new Set();
    for (const s of series) for (const [t] of s.values || []) stamps.add(t);
    const xs = Array.from(stamps).sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    const ys = series.map((s) => {
      const col = new Array(xs.length).fill(null);
      for (const [t, v] of s.values || []) {
        const f = parseValue(v);
        col[index.get(t)] = Number.isFinite(f) ? f : null;
      }
      return col;
    });
    const labels = series.map((s) => formatSeries(s.metric));
    const color = (i) => PALETTE[i % PALETTE.length];

    const chart = el('div', { class: 'chart' });
    const legendValues = [];
    const legend = el(
      'div',
      { class: 'legend' },
      labels.map((label, i) => {
        const value = el('span', { class: 'legend-value' });
        legendValues.push(value);
        return el(
          'div',
          {
            class: 'legend-item',
            dataset: { series: String(i) },
            title: 'Click to hide or show',
            onclick: (e) => {
              const item = e.currentTarget;
              const off = item.classList.toggle('off');
              if (this.plot) this.plot.setSeries(i + 1, { show: !off });
            },
          },
          el('span', { class: 'swatch', style: `background:${color(i)}` }),
          el('span', { class: 'legend-label' }, label),
          value,
        );
      }),
    );
    this.result.append(chart, legend);

    const width = Math.max(300, this.result.clientWidth || 800);
    const opts = {
      width,
      height: 380,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      scales: { x: { time: true, range: () => [startMs / 1000, endMs / 1000] } },
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false } },
      axes: [
        { stroke: '#444', grid: { stroke: '#eee' }, values: (u, splits, ax, space, incr) => splits.map((t) => timeTick(t, incr)) },
        { stroke: '#444', size: 70, grid: { stroke: '#eee' }, values: (u, v) => v.map(formatValue) },
      ],
      series: [
        { label: 'Time' },
        ...labels.map((label, i) => ({
          label,
          stroke: color(i),
          width: 2,
          spanGaps: false,
          value: (u, v) => formatValue(v),
        })),
      ],
      hooks: {
        setCursor: [
          (u) => {
            const idx = u.cursor.idx;
            legendValues.forEach((node, i) => {
              const v = idx === null || idx === undefined ? null : u.data[i + 1][idx];
              node.textContent = v === null || v === undefined ? '' : formatValue(v);
            });
          },
        ],
        setSelect: [
          (u) => {
            // Drag to zoom: the selection becomes the panel's time range.
            if (u.select.width < 2) return;
            const from = u.posToVal(u.select.left, 'x') * 1000;
            const to = u.posToVal(u.select.left + u.select.width, 'x') * 1000;
            this.rangeInput.value = formatDuration(Math.max(1000, Math.round((to - from) / 1000) * 1000));
            this.endInput.value = formatTime(to);
            this.execute();
          },
        ],
      },
    };
    if (typeof uPlot === 'undefined') throw new Error('the charting library did not load');
    this.plot = new uPlot(opts, [xs, ...ys], chart);
    return all.length;
  }
}

// ---------------------------------------------------------------------------------------------
// Page.

const container = document.getElementById('panels');

function saveUrl() {
  const qs = new URLSearchParams();
  panels.forEach((p, i) => p.urlParams(i, qs));
  history.replaceState(null, '', `${location.pathname}?${qs}`);
}

function addPanel(opts) {
  const p = new Panel(opts);
  panels.push(p);
  container.append(p.node);
  return p;
}

/** Panels from the URL (`g0.expr=…`), with Prometheus' and Thanos' parameter names. */
function panelsFromUrl() {
  const qs = new URLSearchParams(location.search);
  const byIndex = new Map();
  for (const [k, v] of qs) {
    const m = /^g(\d+)\.(.+)$/.exec(k);
    if (!m) continue;
    const i = Number(m[1]);
    if (!byIndex.has(i)) byIndex.set(i, {});
    byIndex.get(i)[m[2]] = v;
  }
  const bool = (v, dflt) => (v === undefined ? dflt : v === '1' || v === 'true');
  return Array.from(byIndex.keys())
    .sort((a, b) => a - b)
    .map((i) => {
      const g = byIndex.get(i);
      const opts = {};
      if (g.expr !== undefined) opts.expr = g.expr;
      if (g.tab !== undefined) opts.tab = Number(g.tab) === TAB_GRAPH ? TAB_GRAPH : TAB_TABLE;
      if (g.range_input) opts.range = g.range_input;
      const end = g.end_input || g.moment_input;
      if (end) opts.end = end;
      if (g.step_input) opts.step = g.step_input;
      opts.dedup = bool(g.deduplicate, true);
      opts.partial = bool(g.partial_response, defaultPartial);
      if (g.max_source_resolution) opts.resolution = g.max_source_resolution;
      return opts;
    });
}

document.getElementById('add-panel').addEventListener('click', () => {
  addPanel({}).expr.focus();
  saveUrl();
});

const initial = panelsFromUrl();
if (initial.length === 0) initial.push({});
for (const p of initial.map(addPanel)) {
  if (p.opts.expr.trim() !== '') p.execute();
}
window.addEventListener('resize', () => {
  for (const p of panels) {
    if (p.plot) p.plot.setSize({ width: Math.max(300, p.result.clientWidth), height: 380 });
  }
});
metricNamesLoaded.then(() => {
  document.body.dataset.ready = 'true';
});
