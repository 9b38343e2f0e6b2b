// The rules page: every rule group (GET /api/v1/rules) with its interval and last evaluation,
// and each rule's query, labels, health, last error and evaluation time.

import { el, refreshingPage, formatTime, ago } from './common.js';

const status = document.getElementById('rules-status');
const root = document.getElementById('rules');

function when(iso) {
  const t = Date.parse(iso || '');
  return Number.isNaN(t) || t <= 0 ? null : t;
}

function seconds(s) {
  const v = Number(s);
  if (!Number.isFinite(v)) return '-';
  return v < 1 ? `${(v * 1000).toFixed(1)} ms` : `${v.toFixed(2)} s`;
}

function ruleRow(r) {
  const last = when(r.lastEvaluation);
  const healthy = r.health !== 'err';
  return el(
    'tr',
    { class: `rule-row ${r.type}`, dataset: { name: r.name } },
    el('td', {}, el('span', { class: 'muted' }, r.type === 'alerting' ? 'alert: ' : 'record: '), el('strong', {}, r.name)),
    el('td', {}, el('pre', { class: 'rule-query' }, r.query)),
    el(
      'td',
      { class: 'labels' },
      Object.keys(r.labels || {})
        .sort()
        .map((k) => el('span', { class: 'badge label' }, `${k}="${r.labels[k]}"`)),
    ),
    el(
      'td',
      { class: 'health' },
      el('span', { class: `badge ${healthy ? 'up' : 'down'}` }, String(r.health || 'unknown').toUpperCase()),
      r.lastError ? el('div', { class: 'last-error' }, r.lastError) : null,
    ),
    el('td', { title: last ? formatTime(last) : '' }, last ? ago(last) : 'never'),
    el('td', {}, seconds(r.evaluationTime)),
  );
}

function render(groups) {
  let rules = 0;
  const sections = groups.map((g) => {
    rules += (g.rules || []).length;
    const last = when(g.lastEvaluation);
    return el(
      'section',
      { class: 'rule-group', dataset: { group: g.name } },
      el('h2', {}, g.name, ' ', el('span', { class: 'muted' }, g.file || '')),
      el(
        'div',
        { class: 'muted' },
        `interval ${g.interval}s · last evaluation ${last ? ago(last) : 'never'} · took ${seconds(g.evaluationTime)}`,
        g.partialResponseStrategy ? ` · partial response: ${g.partialResponseStrategy}` : '',
      ),
      el(
        'table',
        { class: 'data-table rules-table' },
        el('thead', {}, el('tr', {}, ['Rule', 'Query', 'Labels', 'Health', 'Last evaluation', 'Evaluation time'].map((h) => el('th', {}, h)))),
        el('tbody', {}, (g.rules || []).map(ruleRow)),
      ),
    );
  });
  root.replaceChildren(...sections);
  status.textContent = groups.length === 0 ? 'No rules.' : `${groups.length} groups, ${rules} rules`;
  status.className = 'muted';
}

refreshingPage({
  path: 'api/v1/rules',
  what: 'rules',
  status,
  root,
  render: (data) => render((data && data.groups) || []),
});
