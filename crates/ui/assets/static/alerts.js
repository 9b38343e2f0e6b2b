// The alerts page: every alerting rule (GET /api/v1/rules?type=alert), grouped by rule group,
// with its state (firing, pending, inactive) and its active alerts: labels, since when, value
// and annotations. On a querier the rules come from every endpoint, deduplicated; on a ruler
// they are its own.

import { el, refreshingPage, formatTime, ago } from './common.js';

const status = document.getElementById('alerts-status');
const root = document.getElementById('alerts');

const ORDER = { firing: 0, pending: 1, inactive: 2 };

function labels(obj) {
  return Object.keys(obj || {})
    .sort()
    .map((k) => el('span', { class: 'badge label' }, `${k}="${obj[k]}"`));
}

function activeAt(a) {
  const t = Date.parse(a.activeAt || '');
  return Number.isNaN(t) || t <= 0 ? null : t;
}

function alertRow(a) {
  const since = activeAt(a);
  return el(
    'tr',
    { class: `alert-instance ${a.state}` },
    el('td', { class: 'labels' }, labels(a.labels)),
    el('td', {}, el('span', { class: `badge state ${a.state}` }, String(a.state).toUpperCase())),
    el('td', { title: since ? formatTime(since) : '' }, since ? ago(since) : '-'),
    el('td', { class: 'value' }, a.value ?? ''),
    el(
      'td',
      { class: 'annotations' },
      Object.keys(a.annotations || {})
        .sort()
        .map((k) => el('div', {}, el('strong', {}, `${k}: `), a.annotations[k])),
    ),
  );
}

function ruleBlock(r) {
  const alerts = (r.alerts || []).slice().sort((a, b) => (ORDER[a.state] ?? 3) - (ORDER[b.state] ?? 3));
  const counts = alerts.length ? ` (${alerts.length} active)` : '';
  return el(
    'details',
    { class: `alert-rule ${r.state}`, open: r.state === 'firing' ? true : undefined, dataset: { name: r.name } },
    el(
      'summary',
      {},
      el('span', { class: `badge state ${r.state}` }, String(r.state).toUpperCase()),
      ' ',
      el('strong', { class: 'rule-name' }, r.name),
      el('span', { class: 'muted' }, counts),
    ),
    el('pre', { class: 'rule-query' }, r.query),
    r.duration ? el('div', { class: 'muted' }, `for: ${r.duration}s`) : null,
    Object.keys(r.labels || {}).length ? el('div', { class: 'rule-labels' }, labels(r.labels)) : null,
    r.lastError ? el('div', { class: 'alert error' }, el('strong', {}, 'Last error: '), r.lastError) : null,
    alerts.length
      ? el(
          'table',
          { class: 'data-table alerts-table' },
          el('thead', {}, el('tr', {}, ['Labels', 'State', 'Active since', 'Value', 'Annotations'].map((h) => el('th', {}, h)))),
          el('tbody', {}, alerts.map(alertRow)),
        )
      : null,
  );
}

function render(groups) {
  const sections = [];
  const totals = { firing: 0, pending: 0, inactive: 0 };
  for (const g of groups) {
    const rules = (g.rules || []).filter((r) => r.type === 'alerting');
    if (rules.length === 0) continue;
    rules.sort((a, b) => (ORDER[a.state] ?? 3) - (ORDER[b.state] ?? 3) || String(a.name).localeCompare(String(b.name)));
    for (const r of rules) totals[r.state] = (totals[r.state] || 0) + 1;
    sections.push(
      el(
        'section',
        { class: 'rule-group', dataset: { group: g.name } },
        el('h2', {}, g.name, ' ', el('span', { class: 'muted' }, g.file || '')),
        rules.map(ruleBlock),
      ),
    );
  }
  root.replaceChildren(...sections);
  const n = totals.firing + totals.pending + totals.inactive;
  status.textContent =
    n === 0
      ? 'No alerting rules.'
      : `${totals.firing} firing, ${totals.pending} pending, ${totals.inactive} inactive`;
  status.className = 'muted';
}

refreshingPage({
  path: 'api/v1/rules',
  params: { type: 'alert' },
  what: 'alerts',
  status,
  root,
  render: (data) => render((data && data.groups) || []),
});
