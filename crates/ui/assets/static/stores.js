// The stores page: every endpoint the querier knows (GET /api/v1/stores, Thanos' shape), grouped
// by component type, with its announced label sets, time range and health.

import { el, refreshingPage, formatTime, ago } from './common.js';

const status = document.getElementById('stores-status');
const root = document.getElementById('stores');

/** Thanos sends math.MinInt64 / MaxInt64 for an unbounded range; JSON numbers lose them. */
function formatBound(ms, lower) {
  if (ms === null || ms === undefined) return '-';
  const v = Number(ms);
  if (!Number.isFinite(v) || Math.abs(v) >= 9e18) return lower ? '-Inf' : '+Inf';
  return formatTime(v);
}

function lastCheckMs(s) {
  if (!s.lastCheck) return null;
  const t = typeof s.lastCheck === 'number' ? s.lastCheck : Date.parse(s.lastCheck);
  return Number.isNaN(t) || t <= 0 ? null : t;
}

function labelSets(sets) {
  if (!Array.isArray(sets) || sets.length === 0) return el('span', { class: 'muted' }, 'none');
  return el(
    'div',
    { class: 'label-sets' },
    sets.map((set) =>
      el(
        'div',
        { class: 'label-set' },
        Object.keys(set || {})
          .sort()
          .map((k) => el('span', { class: 'badge label' }, `${k}="${set[k]}"`)),
      ),
    ),
  );
}

function storeRow(s) {
  const healthy = !s.lastError;
  const checked = lastCheckMs(s);
  return el(
    'tr',
    { class: `store-row ${healthy ? 'up' : 'down'}`, dataset: { endpoint: s.name || '' } },
    el('td', { class: 'endpoint' }, s.name || '(unnamed)'),
    el(
      'td',
      { class: 'health' },
      el('span', { class: `badge ${healthy ? 'up' : 'down'}` }, healthy ? 'UP' : 'DOWN'),
      healthy ? null : el('div', { class: 'last-error' }, String(s.lastError)),
    ),
    el('td', { class: 'labels' }, labelSets(s.labelSets)),
    el('td', { class: 'min-time' }, formatBound(s.minTime, true)),
    el('td', { class: 'max-time' }, formatBound(s.maxTime, false)),
    el(
      'td',
      { class: 'last-check', title: checked ? new Date(checked).toISOString() : '' },
      checked ? ago(checked) : 'never',
    ),
  );
}

function render(data) {
  const types = Object.keys(data || {}).sort();
  const sections = [];
  let total = 0;
  for (const type of types) {
    const stores = Array.isArray(data[type]) ? data[type] : [];
    if (stores.length === 0) continue;
    total += stores.length;
    const sorted = stores.slice().sort((a, b) => String(a.name).localeCompare(String(b.name)));
    const up = sorted.filter((s) => !s.lastError).length;
    sections.push(
      el(
        'section',
        { class: 'store-type', dataset: { type } },
        el('h2', {}, type, ' ', el('span', { class: 'muted count' }, `(${up}/${sorted.length} up)`)),
        el(
          'table',
          { class: 'data-table stores-table' },
          el(
            'thead',
            {},
            el(
              'tr',
              {},
              ['Endpoint', 'Status', 'Announced labels', 'Min time (UTC)', 'Max time (UTC)', 'Last check'].map(
                (h) => el('th', {}, h),
              ),
            ),
          ),
          el('tbody', {}, sorted.map(storeRow)),
        ),
      ),
    );
  }
  root.replaceChildren(...sections);
  status.textContent = total === 0 ? 'No stores are configured or discovered.' : `${total} endpoints`;
  status.className = 'muted';
}

refreshingPage({ path: 'api/v1/stores', what: 'stores', status, root, render });
