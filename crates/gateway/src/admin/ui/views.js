// The views: each renders the state it is given into its section. Text
// from the gateway is only ever set as text, never parsed as markup.

import { drawChart } from './chart.js';

/** Makes an element: h('td', {class: 'x'}, 'text', child, ...). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children.flat()) {
    if (child != null && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const $ = (id) => document.getElementById(id);

export const fmt = {
  rate: (v) => (v == null ? '–' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)),
  pct: (v) => (v == null ? '–' : `${(v * 100).toFixed(v > 0 && v < 0.01 ? 2 : 1)}%`),
  ms: (v) => (v == null ? '–' : v < 1 ? `${v.toFixed(2)} ms` : v < 1000 ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : `${(v / 1000).toFixed(1)} s`),
  bytes: (v) => {
    if (v == null) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  duration: (s) => {
    if (s == null) return '–';
    const d = Math.floor(s / 86400), hrs = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return d ? `${d}d ${hrs}h` : hrs ? `${hrs}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
  },
  time: (ms) => (ms ? new Date(ms).toLocaleTimeString() : '–'),
  count: (v) => (v == null ? '–' : (Math.round(v) || 0).toLocaleString()),
};

const SPAN_MS = 15 * 60 * 1000;
const MIN_SPAN_MS = 60 * 1000;

const CHARTS = [
  { key: 'rps', title: 'Requests /s', format: fmt.rate, floor: 1 },
  { key: 'error_rate', title: 'Error rate', format: fmt.pct, floor: 0.01, cls: 'bad' },
  { key: 'p95_ms', title: 'p95 latency', format: fmt.ms, floor: 1 },
  { key: 'ws_connections', title: 'WebSocket connections', format: fmt.count, floor: 1 },
  { key: 'mqtt_rps', title: 'MQTT messages /s', format: fmt.rate, floor: 1 },
  { key: 'rss_bytes', title: 'Process RSS', format: fmt.bytes, floor: 1 << 20 },
];

function fact(label, value, id, cls = '') {
  return h('div', { class: `fact ${cls}` }, h('span', { class: 'label' }, label), h('span', { class: 'value', id, title: value }, value));
}

export function renderOverview(state) {
  const s = state.stats;
  if (!s) return;
  const now = s.now || {};
  const totalRequests = Object.values(s.modules || {}).reduce((sum, m) => sum + (m.requests || 0), 0);
  $('facts').replaceChildren(
    fact('Version', s.version),
    fact('Uptime', fmt.duration(s.uptime_s)),
    fact('HTTP', s.listeners.http, null, 'addr'),
    fact('Admin', s.listeners.admin, null, 'addr'),
    fact('Process RSS', fmt.bytes(s.rss_bytes)),
    fact('Requests', fmt.count(totalRequests), 'total-requests'),
    fact('Requests /s', fmt.rate(now.rps), 'now-rps'),
    fact('Error rate', fmt.pct(now.error_rate)),
    fact('p95', fmt.ms(now.p95_ms)),
    fact('WebSocket', fmt.count(now.ws_connections)),
    fact('MQTT /s', fmt.rate(now.mqtt_rps)),
    fact('Modules', `${state.modules?.modules?.length ?? '–'}`),
  );
  // The axis grows with the samples, from one minute to fifteen.
  const to = state.series.length ? state.series[state.series.length - 1].t : Date.now();
  const first = state.series.length ? state.series[0].t : to;
  const span = Math.min(SPAN_MS, Math.max(MIN_SPAN_MS, to - first));
  const from = to - span;
  const spanLabel = `−${Math.round(span / 60000)} min`;
  $('charts').replaceChildren(...CHARTS.map((c) => {
    const points = state.series.map((p) => [p.t, p[c.key]]);
    const { root, max } = drawChart([{ points, cls: c.cls || 'main', area: true }], from, to, c.floor);
    root.setAttribute('aria-label', c.title);
    root.dataset.key = c.key;
    root.dataset.points = String(points.filter(([, v]) => v).length);
    return h('figure', { class: 'card chart-card' },
      h('figcaption', {}, h('span', {}, c.title), h('strong', {}, c.format(now[c.key]))),
      root,
      h('div', { class: 'axis muted' }, h('span', {}, spanLabel), h('span', {}, `max ${c.format(max / 1.1)}`), h('span', {}, 'now')));
  }));
}

function stateBadge(state) {
  return h('span', { class: `badge ${state}` }, state);
}

export function renderModules(state, actions) {
  const list = state.modules;
  if (!list) return;
  const figures = state.stats?.modules || {};
  const loading = list.loading || [];
  $('module-loading').replaceChildren(...loading.map((l) =>
    h('div', { class: 'panel loading-row' }, h('span', { class: 'spinner' }),
      `${l.name}${l.canary ? ' (canary)' : ''}: ${l.phase}, ${fmt.bytes(l.bytes)}, ${(l.elapsed_ms / 1000).toFixed(1)} s`)));
  const rows = list.modules.map((m) => {
    const f = figures[m.name] || {};
    const pool = m.pool ? `${m.pool.live} / ${m.pool.idle} / ${m.pool.waiting}` : '–';
    const pending = state.confirming === m.name;
    return h('tr', { 'data-module': m.name, class: m.state },
      h('td', {}, h('strong', {}, m.name), m.canary ? h('span', { class: 'badge canary' }, `canary ${m.canary.weight_percent}%`) : null),
      h('td', {}, stateBadge(m.state), m.last_error ? h('div', { class: 'error small' }, m.last_error) : null),
      h('td', { class: 'mono' }, m.version ?? '–'),
      h('td', {}, m.kind ?? '–'),
      h('td', { class: 'mono small' }, (m.routes || []).join(' ')),
      h('td', {}, pool),
      h('td', { class: 'num' }, fmt.rate(f.rps)),
      h('td', { class: 'num' }, fmt.pct(f.error_rate)),
      h('td', { class: 'num' }, fmt.ms(f.p95_ms)),
      h('td', { class: 'actions' },
        h('button', { class: 'ghost', onclick: () => actions.reload(m.name) }, 'Reload'),
        h('button', { class: 'ghost', onclick: () => actions.prepare(m.name, 'upload') }, 'Upload'),
        h('button', { class: 'ghost', onclick: () => actions.prepare(m.name, 'canary') }, 'Canary'),
        pending
          ? [h('button', { class: 'danger', onclick: () => actions.remove(m.name) }, `Delete ${m.name}?`),
            h('button', { class: 'ghost', onclick: () => actions.confirm(null) }, 'Keep')]
          : h('button', { class: 'ghost danger-text', onclick: () => actions.confirm(m.name) }, 'Delete')));
  });
  if (!rows.length) rows.push(h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'No modules yet: deploy one below.')));
  document.querySelector('#module-table tbody').replaceChildren(...rows);
}

function side(title, version, w) {
  const errRate = w.requests ? w.errors / w.requests : null;
  return h('div', { class: 'side' },
    h('h4', {}, title, ' ', h('span', { class: 'mono' }, version ?? '–')),
    h('dl', {},
      h('dt', {}, 'requests'), h('dd', {}, fmt.count(w.requests)),
      h('dt', {}, 'errors'), h('dd', {}, `${fmt.count(w.errors)} (${fmt.pct(errRate)})`),
      h('dt', {}, 'p95'), h('dd', {}, fmt.ms(w.p95_ms))));
}

function outcome(last) {
  if (!last) return null;
  const reason = last.rollback?.reason;
  return h('p', { class: `outcome ${last.action}` },
    h('strong', {}, last.action === 'rolled_back' ? 'Rolled back' : 'Promoted'),
    ` ${last.version} at ${fmt.time(last.at_unix_ms)}`,
    reason ? [' — reason ', h('code', { class: 'reason' }, reason)] : null,
    `: ${last.message}`);
}

export function renderCanaries(state, actions) {
  const config = state.config;
  if (config?.canary) {
    const c = config.canary;
    $('thresholds').replaceChildren(h('h3', {}, 'The judge'), h('p', { class: 'muted' },
      `Window ${c.window_s} s; each version needs ${c.min_requests} requests; a canary is rolled back above `,
      `${fmt.pct(c.max_error_rate)} errors, or a p95 over ${c.latency_factor}× the stable one (at least ${c.latency_floor_ms} ms).`));
  }
  const modules = state.modules?.modules || [];
  const cards = modules.filter((m) => m.canary || m.last_canary).map((m) => {
    const c = m.canary;
    const history = state.canaryHistory[m.name] || [];
    let chart = null;
    if (c && history.length > 1) {
      const to = history[history.length - 1][0];
      const { root } = drawChart([
        { points: history.map(([t, s]) => [t, s]), cls: 'main' },
        { points: history.map(([t, , k]) => [t, k]), cls: 'alt' },
      ], history[0][0], to, 0.01);
      root.setAttribute('aria-label', 'error rate, stable and canary');
      chart = h('figure', { class: 'chart-card' }, h('figcaption', {}, h('span', {}, 'Error rate since the canary started'),
        h('span', {}, h('span', { class: 'key main' }, 'stable'), ' ', h('span', { class: 'key alt' }, 'canary'))), root);
    }
    return h('article', { class: 'card canary-card', 'data-module': m.name },
      h('h3', {}, m.name, c ? h('span', { class: 'badge canary' }, `${c.weight_percent}% to canary`) : null),
      c ? h('div', { class: 'sides' }, side('Stable', m.version, c.stable), side('Canary', c.version, c.canary)) : null,
      chart,
      c ? h('div', { class: 'row' },
        h('button', { onclick: () => actions.promote(m.name) }, 'Promote'),
        h('button', { class: 'danger', onclick: () => actions.rollback(m.name) }, 'Roll back'),
        h('span', { class: 'muted' }, `started ${fmt.time(c.started_unix_ms)}, window ${c.window_s} s`)) : null,
      h('div', { class: 'last' }, m.last_canary ? [h('span', { class: 'muted' }, 'Last canary: '), outcome(m.last_canary)] : null));
  });
  $('canary-list').replaceChildren(...(cards.length ? cards
    : [h('p', { class: 'muted' }, 'No canary is running. Start one from the Modules view (Canary).')]));
}

function table(title, head, rows, note, empty = 'None configured.') {
  return h('div', { class: 'panel' }, h('h3', {}, title),
    rows.length
      ? h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, head.map((x) => h('th', {}, x)))),
        h('tbody', {}, rows.map((r) => h('tr', {}, r.map((x) => h('td', {}, x)))))))
      : h('p', { class: 'muted' }, empty),
    note ? h('p', { class: 'muted small' }, note) : null);
}

export function renderTriggers(state) {
  const t = state.stats?.triggers;
  const config = state.config;
  if (!t || !config) return;
  const events = (module, trigger) => fmt.count(t.events?.[module]?.[trigger] ?? 0);
  const ws = Object.entries(t.websocket).map(([module, n]) => [module, fmt.count(n), events(module, 'ws')]);
  const tcp = Object.entries(config.tcp || {}).map(([name, c]) => {
    const f = t.tcp[name] || {};
    return [name, c.listen, c.module, c.framing, fmt.count(f.connections ?? 0), fmt.count(f.closed ?? 0), fmt.count(f.refused ?? 0), events(c.module, 'tcp')];
  });
  const mqttTriggers = config.mqtt?.triggers || {};
  const mqtt = Object.entries(mqttTriggers).map(([name, c]) => {
    const f = t.mqtt[name] || {};
    return [name, c.filter, c.module, events(c.module, 'mqtt'), fmt.count(f.retries ?? 0), fmt.count(f.dead_letters ?? 0), fmt.count(f.dropped ?? 0)];
  });
  const errors = Object.entries(t.mqtt_connection_errors || {}).map(([c, n]) => `${c}: ${n}`).join(', ');
  const broker = config.mqtt ? (config.mqtt.url ? `external broker ${config.mqtt.url}` : `embedded broker on ${config.mqtt.listen}`) : null;
  const timers = Object.entries(config.timers || {}).map(([name, c]) => [
    name, c.module, c.cron ? `cron ${c.cron}` : `every ${fmt.ms(c.every_ms)}`, events(c.module, 'timer'), fmt.count(t.timers[name]?.skipped ?? 0)]);
  $('trigger-tables').replaceChildren(
    table('WebSocket', ['Module', 'Connections', 'Messages'], ws, 'Counted per module; routes share their module\'s figures.', 'No WebSocket connection yet.'),
    table('MQTT', ['Trigger', 'Filter', 'Module', 'Messages', 'Retries', 'Dead letters', 'Dropped'], mqtt,
      broker ? `${broker}; connection errors: ${errors || 'none'}` : null),
    table('Timers', ['Timer', 'Module', 'Schedule', 'Runs', 'Skipped'], timers),
    table('TCP', ['Listener', 'Address', 'Module', 'Framing', 'Open', 'Closed', 'Refused', 'Frames'], tcp));
}

const MAX_LOG_LINES = 1000;

/** Appends log lines to the tail, keeping the newest MAX_LOG_LINES. */
export function appendLogs(lines, dropped) {
  const list = $('log-lines');
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  if (dropped) list.append(h('li', { class: 'dropped' }, `… ${dropped} lines dropped (the browser fell behind)`));
  for (const l of lines) {
    list.append(h('li', { class: `lvl-${l.level.toLowerCase()}`, 'data-seq': l.seq },
      h('time', {}, fmt.time(l.unix_ms)), h('span', { class: 'lvl' }, l.level),
      l.module ? h('span', { class: 'mod' }, l.module) : h('span', { class: 'mod muted' }, l.target),
      l.request_id ? h('span', { class: 'rid' }, l.request_id) : null,
      h('span', { class: 'msg' }, l.message)));
  }
  while (list.childElementCount > MAX_LOG_LINES) list.firstElementChild.remove();
  if (stick) list.scrollTop = list.scrollHeight;
}
