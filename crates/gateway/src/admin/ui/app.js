// The dashboard: sign-in, the polling loops, the view switch and the
// actions. Views render from `state`; nothing here builds markup from text.

import { api, ApiError, token } from './api.js';
import { appendLogs, h, renderCanaries, renderModules, renderOverview, renderTriggers } from './views.js';

const $ = (id) => document.getElementById(id);
const VIEWS = ['overview', 'modules', 'canaries', 'triggers', 'logs'];
const SERIES_MAX = 900;

const state = {
  stats: null,
  series: [],
  modules: null,
  config: null,
  confirming: null,
  canaryHistory: {},
  signedIn: false,
};

function show(id, visible) {
  $(id).hidden = !visible;
}

function banner(message) {
  $('banner').textContent = message || '';
  show('banner', !!message);
}

function currentView() {
  const name = location.hash.slice(1);
  return VIEWS.includes(name) ? name : 'overview';
}

function render() {
  if (!state.signedIn) return;
  const view = currentView();
  for (const name of VIEWS) show(name, name === view);
  for (const link of document.querySelectorAll('#tabs a')) {
    link.classList.toggle('active', link.getAttribute('href') === `#${view}`);
  }
  if (state.stats) $('version').textContent = `v${state.stats.version}`;
  if (view === 'overview') renderOverview(state);
  if (view === 'modules') renderModules(state, actions);
  if (view === 'canaries') renderCanaries(state, actions);
  if (view === 'triggers') renderTriggers(state);
  logTail.setActive(view === 'logs');
}

// --- sign-in -------------------------------------------------------------

function signOut(message) {
  token.clear();
  state.signedIn = false;
  for (const name of VIEWS) show(name, false);
  show('tabs', false);
  show('logout', false);
  show('loading', false);
  show('login', true);
  $('login-error').textContent = message || '';
  logTail.setActive(false);
  $('token').focus();
}

async function signIn() {
  try {
    state.config = await api('/admin/config');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const hadToken = !!token.get();
      signOut(hadToken ? 'Wrong token: the admin API refused it (401 unauthorized).' : '');
      return false;
    }
    show('loading', false);
    banner(err.message);
    return false;
  }
  state.signedIn = true;
  show('login', false);
  show('loading', false);
  show('tabs', true);
  show('logout', !!token.get());
  banner('');
  await refresh();
  return true;
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').textContent = '';
  token.set($('token').value.trim());
  $('token').value = '';
  await signIn();
});

$('logout').addEventListener('click', () => signOut());

// --- polling -------------------------------------------------------------

let lastSample = 0;
let modulesDue = 0;

async function refresh() {
  if (!state.signedIn) return;
  try {
    const stats = await api(`/admin/stats?since=${lastSample}`);
    state.stats = stats;
    for (const sample of stats.series) state.series.push(sample);
    if (state.series.length > SERIES_MAX) state.series.splice(0, state.series.length - SERIES_MAX);
    if (stats.series.length) lastSample = stats.series[stats.series.length - 1].t;
    if (Date.now() >= modulesDue) {
      state.modules = await api('/admin/modules');
      recordCanaries();
      updateModuleFilter();
      modulesDue = Date.now() + 2000;
    }
    $('live').textContent = 'live';
    $('live').className = 'live ok';
    banner('');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signOut('The token is no longer accepted (401).');
    $('live').textContent = 'offline';
    $('live').className = 'live down';
    banner(`Cannot update: ${err.message}`);
  }
  render();
}

function recordCanaries() {
  const now = Date.now();
  for (const m of state.modules.modules) {
    if (!m.canary) continue;
    const rate = (w) => (w.requests ? w.errors / w.requests : 0);
    const history = (state.canaryHistory[m.name] ||= []);
    history.push([now, rate(m.canary.stable), rate(m.canary.canary)]);
    if (history.length > 450) history.shift();
  }
}

function refreshSoon() {
  modulesDue = 0;
  refresh();
}

setInterval(refresh, 1000);
window.addEventListener('hashchange', render);

// --- actions -------------------------------------------------------------

async function run(label, work) {
  const out = $('deploy-result');
  try {
    const result = await work();
    banner('');
    refreshSoon();
    return result;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) signOut('The token is no longer accepted (401).');
    else banner(`${label} failed: ${err.message}`);
    if (out) out.className = 'error';
    throw err;
  }
}

const enc = encodeURIComponent;

const actions = {
  reload: (name) => run(`Reload ${name}`, () => api(`/admin/modules/${enc(name)}/reload`, { method: 'POST' })).catch(() => {}),
  confirm: (name) => { state.confirming = name; render(); },
  remove: (name) => {
    state.confirming = null;
    run(`Delete ${name}`, () => api(`/admin/modules/${enc(name)}`, { method: 'DELETE' })).catch(() => {});
  },
  promote: (name) => run(`Promote ${name}`, () => api(`/admin/modules/${enc(name)}/canary/promote`, { method: 'POST' })).catch(() => {}),
  rollback: (name) => run(`Roll back ${name}`, () => api(`/admin/modules/${enc(name)}/canary`, { method: 'DELETE' })).catch(() => {}),
  prepare: (name, mode) => {
    $('deploy-name').value = name;
    $('deploy-mode').value = mode;
    syncMode();
    $('deploy').scrollIntoView({ behavior: 'smooth' });
    $('drop').focus();
  },
};

// --- deploy (upload or canary), by drag and drop or file choice -----------

const chosen = { wasm: null, sig: null };

function syncMode() {
  show('weight-label', $('deploy-mode').value === 'canary');
}

function describeFiles() {
  const parts = [];
  if (chosen.wasm) parts.push(`${chosen.wasm.name} (${chosen.wasm.size.toLocaleString()} bytes)`);
  if (chosen.sig) parts.push(`signature ${chosen.sig.name}`);
  if (state.config?.signing?.require_signed && chosen.wasm && !chosen.sig) parts.push('signing is on: add the .sig file');
  $('deploy-files').textContent = parts.join(', ');
}

function take(files) {
  for (const file of files) {
    if (file.name.endsWith('.sig')) chosen.sig = file;
    else {
      chosen.wasm = file;
      if (!$('deploy-name').value) $('deploy-name').value = file.name.replace(/\.wasm$/, '').replace(/[^A-Za-z0-9_-]/g, '_');
    }
  }
  describeFiles();
}

$('deploy-mode').addEventListener('change', syncMode);
$('deploy-file').addEventListener('change', (e) => take(e.target.files));
$('deploy-sig').addEventListener('change', (e) => take(e.target.files));
const drop = $('drop');
for (const name of ['dragenter', 'dragover']) {
  drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add('over'); });
}
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  take(e.dataTransfer.files);
});

$('deploy').addEventListener('submit', async (event) => {
  event.preventDefault();
  const out = $('deploy-result');
  const name = $('deploy-name').value.trim();
  const mode = $('deploy-mode').value;
  if (!chosen.wasm) {
    out.className = 'error';
    out.textContent = 'Choose or drop a .wasm file first.';
    return;
  }
  const headers = { 'Content-Type': 'application/wasm' };
  if (chosen.sig) headers['x-shanhai-signature'] = (await chosen.sig.text()).trim();
  const body = await chosen.wasm.arrayBuffer();
  out.className = 'muted';
  out.textContent = `Uploading ${name}… (a Go module compiles for a few seconds)`;
  $('deploy-go').disabled = true;
  try {
    const path = mode === 'canary'
      ? `/admin/modules/${enc(name)}/canary?weight=${enc($('deploy-weight').value)}`
      : `/admin/modules/${enc(name)}`;
    const result = await run(`Deploy ${name}`, () => api(path, { method: 'PUT', body, headers }));
    out.className = 'ok';
    out.textContent = mode === 'canary'
      ? `${name}: canary ${result.canary?.version ?? ''} ${result.outcome}, ${result.canary?.weight_percent ?? ''}% of the traffic`
      : `${name}: ${result.outcome}, version ${result.version}`;
    chosen.wasm = null;
    chosen.sig = null;
    $('deploy-file').value = '';
    $('deploy-sig').value = '';
  } catch (err) {
    out.textContent = `${name}: ${err.message}`;
  } finally {
    $('deploy-go').disabled = false;
  }
});

// --- the live log tail (long polling with the token in a header) ----------

const logTail = {
  active: false,
  paused: false,
  after: null,
  controller: null,
  generation: 0,
  setActive(on) {
    if (on === this.active) return;
    this.active = on;
    if (on) this.restart(); else this.stop();
  },
  stop() {
    this.generation++;
    this.controller?.abort();
    this.controller = null;
  },
  restart() {
    this.stop();
    this.after = null;
    $('log-lines').replaceChildren();
    if (this.active && !this.paused) this.loop(this.generation);
  },
  async loop(generation) {
    while (generation === this.generation) {
      const query = new URLSearchParams();
      if (this.after != null) query.set('after', this.after);
      for (const [key, id] of [['module', 'log-module'], ['level', 'log-level'], ['request_id', 'log-request']]) {
        const value = $(id).value.trim();
        if (value) query.set(key, value);
      }
      this.controller = new AbortController();
      try {
        const batch = await api(`/admin/logs?${query}`, { signal: this.controller.signal });
        if (generation !== this.generation) return;
        this.after = batch.next;
        appendLogs(batch.lines, batch.dropped);
        $('log-state').textContent = 'following';
      } catch (err) {
        if (err.name === 'AbortError' || generation !== this.generation) return;
        if (err instanceof ApiError && err.status === 401) return signOut('The token is no longer accepted (401).');
        $('log-state').textContent = `tail paused: ${err.message}; retrying`;
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  },
};

for (const id of ['log-module', 'log-level']) $(id).addEventListener('change', () => logTail.restart());
$('log-request').addEventListener('change', () => logTail.restart());
$('log-filter').addEventListener('submit', (e) => { e.preventDefault(); logTail.restart(); });
$('log-pause').addEventListener('click', () => {
  logTail.paused = !logTail.paused;
  $('log-pause').textContent = logTail.paused ? 'Resume' : 'Pause';
  $('log-state').textContent = logTail.paused ? 'paused' : '';
  if (logTail.paused) logTail.stop(); else logTail.restart();
});

function updateModuleFilter() {
  const select = $('log-module');
  const names = state.modules.modules.map((m) => m.name);
  const have = [...select.options].slice(1).map((o) => o.value);
  if (names.join() === have.join()) return;
  const current = select.value;
  select.replaceChildren(h('option', { value: '' }, 'all'), ...names.map((n) => h('option', { value: n }, n)));
  select.value = names.includes(current) ? current : '';
}

syncMode();
signIn();
