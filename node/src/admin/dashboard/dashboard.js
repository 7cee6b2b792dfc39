// Rhizome admin dashboard. Plain script, no dependencies, no build step.
// Owns the page's behaviour: the login form (the admin token lives in this
// tab's sessionStorage and travels only as an Authorization header to
// /admin/v1/*), polling the node every POLL_MS, rendering what it answers
// and the credential actions. Every value from the node is written with
// textContent or createElement, never parsed as HTML.
'use strict';

(function () {
  const TOKEN_KEY = 'rhizome.admin_token';
  const POLL_MS = 2000;
  const PAGE_SIZE = 25;
  const HISTORY = 90;

  const $ = (id) => document.getElementById(id);

  let token = null;
  let pollTimer = null;
  let tickTimer = null;
  let polling = false;
  let lastTotals = null;
  const history = [];
  const credRows = new Map();
  const pagers = {
    sessions: { cursors: [null], next: null },
    streams: { cursors: [null], next: null },
  };

  class Unauthorized extends Error {}

  // ---- HTTP ---------------------------------------------------------------

  async function call(path, method) {
    const headers = { Accept: 'application/json' };
    if (path.startsWith('/admin/v1/')) {
      if (!token) throw new Unauthorized('no token');
      headers.Authorization = 'Bearer ' + token;
    }
    const resp = await fetch(path, {
      method: method || 'GET',
      headers,
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
      referrerPolicy: 'no-referrer',
    });
    if (resp.status === 401 && path.startsWith('/admin/v1/')) {
      throw new Unauthorized('the node rejected the admin token');
    }
    const type = resp.headers.get('content-type') || '';
    const body = type.includes('json') ? await resp.json() : await resp.text();
    return { status: resp.status, ok: resp.ok, body };
  }

  function errorText(r) {
    const e = r.body && r.body.error;
    return e ? e.code + ': ' + e.message : 'HTTP ' + r.status;
  }

  // ---- small DOM helpers --------------------------------------------------

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function setText(id, text, cls) {
    const e = $(id);
    e.textContent = text === undefined || text === null ? '—' : String(text);
    e.className = cls || '';
  }

  function fmtDuration(secs) {
    if (secs === null || secs === undefined) return '—';
    const s = Math.max(0, secs);
    if (s < 10) return s.toFixed(1) + ' s';
    if (s < 120) return Math.floor(s) + ' s';
    if (s < 7200) return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function fmtTime(ms) {
    if (!ms) return '—';
    return new Date(ms).toLocaleString();
  }

  function fmtRate(v) {
    return v === null ? '—' : v.toFixed(2) + ' /s';
  }

  // ---- login --------------------------------------------------------------

  function showLogin(message) {
    stopPolling();
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    clearData();
    $('dashboard').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    $('poll-status').textContent = '';
    $('node-title').textContent = '';
    const err = $('login-error');
    err.textContent = message || '';
    err.hidden = !message;
    $('token').focus();
  }

  function showDashboard() {
    $('login').hidden = true;
    $('login-error').hidden = true;
    $('dashboard').hidden = false;
    $('logout').hidden = false;
  }

  async function login(candidate) {
    token = candidate;
    $('login-submit').disabled = true;
    try {
      // Any authenticated endpoint validates the token; this one is rendered.
      const r = await call('/admin/v1/credentials');
      if (!r.ok) throw new Error(errorText(r));
      sessionStorage.setItem(TOKEN_KEY, candidate);
      showDashboard();
      renderCredentials(r.body);
      startPolling();
    } catch (e) {
      showLogin(
        e instanceof Unauthorized
          ? 'The node rejected this admin token.'
          : 'Could not reach the node: ' + e.message,
      );
    } finally {
      $('login-submit').disabled = false;
    }
  }

  // Removes every value the node sent, so nothing outlives a logout.
  function clearData() {
    credRows.clear();
    for (const id of ['credentials', 'sessions', 'streams']) {
      $(id).tBodies[0].replaceChildren();
    }
    for (const dd of document.querySelectorAll('#dashboard dd')) dd.textContent = '';
    for (const id of ['sessions-count', 'streams-count', 'sessions-page', 'streams-page', 'action-status']) {
      $(id).textContent = '';
    }
    delete $('sessions-count').dataset.fromMetrics;
    for (const p of Object.values(pagers)) {
      p.cursors = [null];
      p.next = null;
    }
    lastTotals = null;
    history.length = 0;
    drawSpark();
  }

  // ---- polling ------------------------------------------------------------

  function startPolling() {
    stopPolling();
    poll();
    tickTimer = setInterval(tick, 1000);
  }

  function stopPolling() {
    clearTimeout(pollTimer);
    clearInterval(tickTimer);
    pollTimer = null;
    tickTimer = null;
  }

  function pageQuery(name) {
    const p = pagers[name];
    const cursor = p.cursors[p.cursors.length - 1];
    let q = '?limit=' + PAGE_SIZE;
    if (cursor) q += '&cursor=' + encodeURIComponent(cursor);
    return q;
  }

  async function poll() {
    if (polling || !token) return;
    polling = true;
    clearTimeout(pollTimer);
    try {
      const [health, ready, cluster, creds, sessions, streams, metrics] = await Promise.allSettled([
        call('/healthz'),
        call('/readyz'),
        call('/admin/v1/cluster'),
        call('/admin/v1/credentials'),
        call('/admin/v1/sessions' + pageQuery('sessions')),
        call('/admin/v1/streams' + pageQuery('streams')),
        call('/metrics'),
      ]);
      const all = [health, ready, cluster, creds, sessions, streams, metrics];
      if (all.some((r) => r.status === 'rejected' && r.reason instanceof Unauthorized)) {
        showLogin('The node no longer accepts this admin token; log in again.');
        return;
      }
      const failed = [];
      const use = (r, name, render) => {
        if (r.status === 'fulfilled' && r.value.ok) {
          render(r.value.body);
        } else {
          failed.push(name + ' (' + (r.status === 'fulfilled' ? errorText(r.value) : r.reason.message) + ')');
        }
      };
      renderHealth(health, ready);
      use(cluster, 'cluster', renderCluster);
      use(creds, 'credentials', renderCredentials);
      use(sessions, 'sessions', (b) => renderPage('sessions', b, b.sessions, sessionRow));
      use(streams, 'streams', (b) => renderPage('streams', b, b.streams, streamRow));
      use(metrics, 'metrics', renderMetrics);
      const now = new Date().toLocaleTimeString();
      $('poll-status').textContent = failed.length
        ? 'updated ' + now + '; failed: ' + failed.join(', ')
        : 'updated ' + now;
    } finally {
      polling = false;
      if (token) pollTimer = setTimeout(poll, POLL_MS);
    }
  }

  // ---- rendering ----------------------------------------------------------

  function renderHealth(health, ready) {
    if (health.status === 'fulfilled' && health.value.ok) {
      setText('node-health', health.value.body.status, 'ok');
      setText('node-id', health.value.body.node);
      $('node-title').textContent = health.value.body.node;
    } else {
      setText('node-health', 'not answering', 'bad');
    }
    if (ready.status === 'fulfilled') {
      const r = ready.value;
      setText('node-ready', r.body && r.body.status ? r.body.status : 'HTTP ' + r.status, r.ok ? 'ok' : 'warn');
    } else {
      setText('node-ready', 'not answering', 'bad');
    }
  }

  function renderCluster(c) {
    setText('cluster-mode', c.mode);
    setText('cluster-degraded', c.degraded ? 'yes: no coordinator answers, refreshing under the Redis lock' : 'no', c.degraded ? 'bad' : 'ok');
    if (c.coordinator) {
      const ago = c.coordinator.acked_ms_ago;
      setText('cluster-leader', 'replica ' + c.coordinator.leader + ' at ' + c.coordinator.leader_url +
        (ago === null || ago === undefined ? '' : ' (answered ' + fmtDuration(ago / 1000) + ' ago)'));
      setText('cluster-term', c.coordinator.term + ' (applied ' + c.coordinator.applied + ')');
    } else {
      setText('cluster-leader', c.mode === 'cluster' ? 'no answer yet' : 'none (' + c.mode + ' mode)', c.mode === 'cluster' ? 'warn' : 'muted');
      setText('cluster-term', null);
    }
    setText('cluster-nodes', c.nodes.join(', '));
    const r = c.redis;
    if (r.backend === 'memory') {
      setText('redis-state', 'not used (state in memory)', 'muted');
    } else if (r.up) {
      setText('redis-state', 'up (' + r.latency_ms.toFixed(1) + ' ms)', 'ok');
    } else {
      setText('redis-state', r.reached ? 'DOWN' : 'DOWN (never reached)', 'bad');
    }
  }

  function credentialRow(name) {
    let row = credRows.get(name);
    if (row) return row;
    const tr = el('tr');
    tr.dataset.credential = name;
    const cells = {};
    for (const key of ['name', 'kind', 'owner', 'epoch', 'token', 'version', 'expires', 'cooldown', 'failures', 'claims', 'actions']) {
      cells[key] = el('td', null, key);
      tr.appendChild(cells[key]);
    }
    const box = el('div', null, 'actions');
    const refresh = el('button', 'Refresh');
    refresh.type = 'button';
    refresh.dataset.action = 'refresh';
    refresh.addEventListener('click', () => act(name, 'refresh'));
    const drop = el('button', 'Drop token');
    drop.type = 'button';
    drop.dataset.action = 'drop';
    drop.addEventListener('click', () => act(name, 'drop'));
    box.append(refresh, drop);
    cells.actions.appendChild(box);
    row = { tr, cells, buttons: [refresh, drop], data: null, at: 0 };
    credRows.set(name, row);
    return row;
  }

  function renderCredentials(body) {
    const tbody = $('credentials').tBodies[0];
    const seen = new Set();
    for (const c of body.credentials) {
      seen.add(c.name);
      const row = credentialRow(c.name);
      row.data = c;
      row.at = performance.now();
      const k = row.cells;
      k.name.textContent = c.name;
      k.kind.textContent = c.kind;
      k.owner.textContent = c.owner;
      k.epoch.textContent = c.epoch;
      k.token.textContent = c.has_token ? 'cached' : 'none';
      k.token.className = 'token ' + (c.has_token ? 'ok' : 'muted');
      k.version.textContent = c.version === null || c.version === undefined ? '—' : c.version;
      k.failures.textContent = c.failures;
      k.failures.className = 'failures' + (c.failures > 0 ? ' warn' : '');
      const claims = el('ul', null, 'claims');
      for (const [key, value] of Object.entries(c.claims || {})) {
        claims.appendChild(el('li', key + ': ' + (typeof value === 'string' ? value : JSON.stringify(value))));
      }
      k.claims.replaceChildren(claims);
      tbody.appendChild(row.tr);
    }
    for (const [name, row] of credRows) {
      if (!seen.has(name)) {
        row.tr.remove();
        credRows.delete(name);
      }
    }
    tick();
  }

  // Counts expiry and cooldown down between polls.
  function tick() {
    const now = performance.now();
    for (const row of credRows.values()) {
      const c = row.data;
      if (!c) continue;
      const gone = (now - row.at) / 1000;
      const exp = c.expires_in === null || c.expires_in === undefined ? null : c.expires_in - gone;
      row.cells.expires.textContent = exp === null ? (c.has_token ? 'never' : '—') : fmtDuration(exp);
      const cool = c.cooldown === null || c.cooldown === undefined ? null : c.cooldown - gone;
      row.cells.cooldown.textContent = cool === null ? '—' : cool > 0 ? fmtDuration(cool) : 'ending';
      row.cells.cooldown.className = 'cooldown' + (cool === null ? '' : ' bad');
    }
  }

  async function act(name, action) {
    const row = credRows.get(name);
    const path = '/admin/v1/credentials/' + encodeURIComponent(name) + (action === 'refresh' ? '/refresh' : '/token');
    if (action === 'drop' && !window.confirm('Drop the cached token of ' + name + '? The next request obtains a new one.')) {
      return;
    }
    const status = $('action-status');
    status.textContent = (action === 'refresh' ? 'Refreshing ' : 'Dropping the token of ') + name + '…';
    status.className = 'muted';
    if (row) row.buttons.forEach((b) => { b.disabled = true; });
    try {
      const r = await call(path, action === 'refresh' ? 'POST' : 'DELETE');
      if (r.ok && action === 'refresh') {
        status.textContent = 'Refreshed ' + name + ': token version ' + r.body.version + '.';
        status.className = 'ok';
      } else if (r.ok) {
        status.textContent = r.body.dropped_version === null || r.body.dropped_version === undefined
          ? 'No token of ' + name + ' was cached.'
          : 'Dropped token version ' + r.body.dropped_version + ' of ' + name + '.';
        status.className = 'ok';
      } else {
        status.textContent = (action === 'refresh' ? 'Refresh' : 'Drop') + ' of ' + name + ' failed: ' + errorText(r);
        status.className = 'error';
      }
    } catch (e) {
      if (e instanceof Unauthorized) {
        showLogin('The node no longer accepts this admin token; log in again.');
        return;
      }
      status.textContent = 'Could not reach the node: ' + e.message;
      status.className = 'error';
    } finally {
      if (row) row.buttons.forEach((b) => { b.disabled = false; });
    }
    poll();
  }

  function sessionRow(s) {
    const tr = el('tr');
    tr.dataset.session = s.id;
    tr.append(el('td', s.id, 'mono id'), el('td', s.route, 'route'), el('td', s.client, 'client'),
      el('td', s.target, 'target'), el('td', fmtTime(s.created_ms), 'created'));
    return tr;
  }

  function streamRow(s) {
    const tr = el('tr');
    tr.dataset.stream = s.id;
    tr.append(el('td', s.id, 'mono id'), el('td', s.route, 'route'), el('td', s.producer || '—', 'producer'),
      el('td', s.epoch, 'epoch'), el('td', s.last_seq, 'last-seq'), el('td', s.buffered_events, 'buffered'));
    return tr;
  }

  function renderPage(name, body, items, toRow) {
    const p = pagers[name];
    p.next = body.next_cursor || null;
    const tbody = $(name).tBodies[0];
    const rows = items.map(toRow);
    if (rows.length === 0) {
      const td = el('td', p.cursors.length > 1 ? 'no more' : 'none', 'empty');
      td.colSpan = $(name).tHead.rows[0].cells.length;
      const tr = el('tr');
      tr.appendChild(td);
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
    $(name + '-next').disabled = !p.next;
    $(name + '-first').disabled = p.cursors.length === 1;
    $(name + '-page').textContent = 'page ' + p.cursors.length + ', ' + items.length + ' shown' + (p.next ? ', more follow' : '');
    if (name === 'streams' || !$('sessions-count').dataset.fromMetrics) {
      $(name + '-count').textContent = p.cursors.length === 1 && !p.next ? items.length : items.length + '+';
    }
  }

  function pageButtons(name) {
    $(name + '-next').addEventListener('click', () => {
      const p = pagers[name];
      if (p.next) {
        p.cursors.push(p.next);
        poll();
      }
    });
    $(name + '-first').addEventListener('click', () => {
      pagers[name].cursors = [null];
      poll();
    });
  }

  // ---- metrics ------------------------------------------------------------

  // Prometheus text format: `name{label="value",...} value [timestamp]`.
  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while (m[2] && (l = re.exec(m[2])) !== null) {
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, ch) => (ch === 'n' ? '\n' : ch));
      }
      samples.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return samples;
  }

  function sum(samples, name, filter) {
    let total = 0;
    let found = false;
    for (const s of samples) {
      if (s.name === name && (!filter || filter(s.labels)) && Number.isFinite(s.value)) {
        total += s.value;
        found = true;
      }
    }
    return found ? total : null;
  }

  function renderMetrics(text) {
    const samples = parseMetrics(text);
    const now = performance.now();
    const totals = {
      requests: sum(samples, 'rhizome_requests_total') || 0,
      errors: sum(samples, 'rhizome_requests_total', (l) => (l.status || '').startsWith('5')) || 0,
      clientErrors: sum(samples, 'rhizome_requests_total', (l) => (l.status || '').startsWith('4')) || 0,
      sseEvents: sum(samples, 'rhizome_sse_events_total') || 0,
      refreshes: sum(samples, 'rhizome_token_refresh_total') || 0,
    };
    const rates = {};
    if (lastTotals) {
      const dt = (now - lastTotals.at) / 1000;
      for (const k of Object.keys(totals)) {
        const d = totals[k] - lastTotals.totals[k];
        // A counter that went down was reset (the node restarted).
        rates[k] = dt > 0 ? (d >= 0 ? d : totals[k]) / dt : 0;
      }
    }
    lastTotals = { at: now, totals };
    const show = (id, k) => {
      const rate = k in rates ? rates[k] : null;
      setText(id, fmtRate(rate) + ' (' + totals[k] + ' in all)', rate && k.endsWith('rrors') ? 'bad' : '');
    };
    show('rate-requests', 'requests');
    show('rate-errors', 'errors');
    show('rate-client-errors', 'clientErrors');
    show('rate-sse-events', 'sseEvents');
    show('rate-refreshes', 'refreshes');
    setText('sse-active', sum(samples, 'rhizome_sse_streams_active') || 0);
    const sessions = sum(samples, 'rhizome_sessions_active');
    if (sessions !== null) {
      $('sessions-count').textContent = sessions + ' active';
      $('sessions-count').dataset.fromMetrics = '1';
    }
    if ('requests' in rates) {
      history.push({ req: rates.requests, err: rates.errors });
      if (history.length > HISTORY) history.shift();
      drawSpark();
    }
  }

  function drawSpark() {
    const canvas = $('spark');
    const ctx = canvas.getContext && canvas.getContext('2d');
    if (!ctx) return;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (history.length < 2) return;
    const max = Math.max(1, ...history.map((h) => h.req));
    const line = (key, color) => {
      ctx.beginPath();
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      history.forEach((h, i) => {
        const x = ((HISTORY - history.length + i) / (HISTORY - 1)) * canvas.width;
        const y = canvas.height - 2 - (h[key] / max) * (canvas.height - 4);
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
    };
    line('req', '#2b5fd9');
    line('err', '#c5221f');
  }

  // ---- start --------------------------------------------------------------

  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('token');
    const candidate = input.value.trim();
    input.value = '';
    if (candidate) login(candidate);
  });
  $('logout').addEventListener('click', () => showLogin());
  pageButtons('sessions');
  pageButtons('streams');

  const stored = sessionStorage.getItem(TOKEN_KEY);
  if (stored) {
    login(stored);
  } else {
    showLogin();
  }
})();
