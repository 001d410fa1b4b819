// Shoal's dashboard: plain script, no framework, no build step. It reads
// /ui/api/overview every 2 s, follows /ui/api/stream (one sample a second)
// for the chart and the live rates, and /ui/api/logs/{app} for the log view.
// Everything the page shows is put in with textContent, never as HTML.
'use strict';

(() => {
  const WINDOW_MS = 5 * 60 * 1000;
  const MAX_SAMPLES = 310;
  const MAX_LOG_LINES = 1000;
  const SERIES = 8;
  const OVERVIEW_EVERY_MS = 2000;

  const meta = (name) => {
    const value = document.querySelector(`meta[name="${name}"]`)?.content || '';
    return value.startsWith('{{') ? '' : value;
  };
  const $ = (selector) => document.querySelector(selector);

  const state = {
    csrf: meta('shoal-csrf'),
    me: meta('shoal-node'),
    overview: null,
    samples: [],
    nodeSort: { key: 'live', dir: 1 },
    appSort: { key: 'name', dir: 1 },
    chartBy: 'apps',
    chartOf: 'rps',
    ended: false,
    log: { app: '', source: null, lines: [], seen: new Set() },
  };

  // ---- small helpers ------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === false || value == null) continue;
      if (key === 'text') node.textContent = value;
      else node.setAttribute(key, value === true ? '' : value);
    }
    node.append(...children);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text != null) node.textContent = text;
    return node;
  }

  const dash = '–';
  const rate = (x) => (x == null ? dash : x >= 100 ? Math.round(x).toString() : x.toFixed(1));
  const millis = (x) => (x == null ? dash : x >= 100 ? `${Math.round(x)} ms` : `${x.toFixed(1)} ms`);
  const percent = (x) => (x == null ? dash : `${(x * 100).toFixed(x > 0 && x < 0.01 ? 2 : 1)} %`);
  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

  function bytes(n) {
    if (n == null) return dash;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
  }

  function uptime(secs) {
    if (secs == null) return dash;
    const d = Math.floor(secs / 86400), h = Math.floor((secs % 86400) / 3600);
    const m = Math.floor((secs % 3600) / 60), s = Math.floor(secs % 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${String(m).padStart(2, '0')}m`;
    if (m) return `${m}m ${String(s).padStart(2, '0')}s`;
    return `${s}s`;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function connection(text, kind) {
    const conn = $('#conn');
    setText(conn, text);
    conn.dataset.kind = kind;
  }

  let toastTimer = 0;
  function toast(text, bad = false) {
    const box = $('#toast');
    box.textContent = text;
    box.classList.toggle('bad', bad);
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, bad ? 12000 : 6000);
  }

  // The session is gone (expired, logged out, or the node restarted).
  function ended() {
    if (state.ended) return;
    state.ended = true;
    const notice = $('#notice');
    notice.textContent = 'Your dashboard session has ended (it expired, or the node restarted). Run `shoal ui` for a new login link.';
    notice.hidden = false;
    connection('logged out', 'bad');
    state.stream?.close();
    state.log.source?.close();
  }

  // ---- the latest figures: the stream's sample or the overview, whichever is newer

  function latestSample() {
    const last = state.samples[state.samples.length - 1];
    const overviewAt = state.overview?.generated_at_ms || 0;
    return last && last.t_ms >= overviewAt - 1500 ? last : null;
  }

  function nodeFigures(node) {
    const live = latestSample()?.nodes?.[node.name];
    if (!live) return { live: node.live, rps: node.req_per_s, eps: node.errors_per_s };
    return { live: live.live, rps: live.rps, eps: live.eps };
  }

  function appFigures(app) {
    const live = latestSample()?.apps?.[app.name];
    if (!live) return { rps: app.req_per_s, eps: app.errors_per_s, p50: app.p50_ms, p99: app.p99_ms };
    return { rps: live.rps, eps: live.eps, p50: live.p50_ms, p99: live.p99_ms };
  }

  // ---- tables ------------------------------------------------------------

  // Puts one row per item in `tbody`, in order, reusing the rows already
  // there (so focus and selection survive a refresh).
  function syncRows(tbody, items, attr, key, build, update) {
    const old = new Map();
    for (const row of tbody.rows) old.set(row.getAttribute(attr), row);
    let at = tbody.firstElementChild;
    for (const item of items) {
      const id = key(item);
      let row = old.get(id);
      if (row) old.delete(id);
      else { row = build(item); row.setAttribute(attr, id); }
      update(row, item);
      if (row !== at) tbody.insertBefore(row, at);
      else at = at.nextElementSibling;
    }
    for (const row of old.values()) row.remove();
  }

  function cells(row, names) {
    for (const name of names) {
      row.append(name === 'name' ? el('th', { scope: 'row', class: name }) : el('td', { class: name }));
    }
    return row;
  }

  const matches = (filter, ...fields) =>
    !filter || fields.some((f) => String(f ?? '').toLowerCase().includes(filter));

  function compareNodes(a, b) {
    const { key, dir } = state.nodeSort;
    const fa = nodeFigures(a), fb = nodeFigures(b);
    let order = 0;
    if (key === 'live') order = Number(fa.live) - Number(fb.live);
    if (key === 'load') order = (b.load ?? 0) - (a.load ?? 0);
    if (key === 'rps') order = (fb.rps ?? 0) - (fa.rps ?? 0);
    return order * dir || a.name.localeCompare(b.name) * (key === 'name' ? dir : 1);
  }

  const NODE_CELLS = ['name', 'state', 'address', 'ingress', 'load', 'apps', 'version', 'uptime', 'rps num', 'eps num'];

  function renderNodes() {
    const nodes = state.overview?.nodes || [];
    const filter = $('#node-filter').value.trim().toLowerCase();
    const shown = nodes
      .filter((n) => matches(filter, n.name, n.address, n.ingress, (n.apps || []).join(' ')))
      .sort(compareNodes);
    syncRows($('#nodes tbody'), shown, 'data-node', (n) => n.name,
      () => cells(el('tr'), NODE_CELLS), updateNodeRow);
    const dead = nodes.filter((n) => !nodeFigures(n).live).length;
    let summary = `${nodes.length} node${nodes.length === 1 ? '' : 's'}: ${nodes.length - dead} live, ${dead} dead`;
    if (filter) summary += ` · ${shown.length} match “${filter}”`;
    setText($('#nodes-summary'), summary);
  }

  function updateNodeRow(row, node) {
    const f = nodeFigures(node);
    row.dataset.live = String(Boolean(f.live));
    const c = (name) => row.querySelector(`.${name}`);
    setText(c('name'), node.name + (node.me ? ' (this node)' : ''));
    setText(c('state'), f.live ? 'live' : 'dead');
    c('state').className = `state ${f.live ? 'ok' : 'bad'}`;
    setText(c('address'), node.address || dash);
    setText(c('ingress'), node.ingress || dash);
    setText(c('load'), node.load == null ? dash : String(node.load));
    setText(c('apps'), (node.apps || []).join(', ') || dash);
    setText(c('version'), node.version || dash);
    setText(c('uptime'), f.live ? uptime(node.uptime_secs) : dash);
    setText(c('rps'), f.live ? rate(f.rps) : dash);
    setText(c('eps'), f.live ? rate(f.eps) : dash);
    const stale = node.figures_age_ms;
    row.title = stale == null ? 'no figures from this node yet' : `figures ${(stale / 1000).toFixed(1)} s old`;
  }

  function compareApps(a, b) {
    const { key, dir } = state.appSort;
    if (key === 'rps') return ((appFigures(b).rps ?? 0) - (appFigures(a).rps ?? 0)) * dir || a.name.localeCompare(b.name);
    return a.name.localeCompare(b.name) * dir;
  }

  const APP_CELLS = ['name', 'version', 'route', 'replicas', 'where', 'rps num', 'errors num', 'p50 num', 'p99 num', 'kv num', 'actions'];

  function buildAppRow(app) {
    const row = cells(el('tr'), APP_CELLS);
    const button = (action, label) => el('button', {
      type: 'button', 'data-action': action, 'data-app': app.name, class: action === 'remove' ? 'danger' : '',
      'aria-label': `${label} ${app.name}`, text: label,
    });
    row.querySelector('.actions').append(button('rollback', 'Roll back'), ' ', button('remove', 'Remove'));
    return row;
  }

  function renderApps() {
    const apps = state.overview?.apps || [];
    state.deadNodes = new Set((state.overview?.nodes || []).filter((n) => !nodeFigures(n).live).map((n) => n.name));
    const filter = $('#app-filter').value.trim().toLowerCase();
    const shown = apps
      .filter((a) => matches(filter, a.name, a.route, a.hostname, (a.nodes || []).join(' ')))
      .sort(compareApps);
    syncRows($('#apps tbody'), shown, 'data-app', (a) => a.name, buildAppRow, updateAppRow);
    const short = apps.filter((a) => (a.ready ?? 0) < (a.wanted ?? 0)).length;
    let summary = `${apps.length} app${apps.length === 1 ? '' : 's'}`;
    if (short) summary += `, ${short} short of replicas`;
    if (filter) summary += ` · ${shown.length} match “${filter}”`;
    setText($('#apps-summary'), summary);
    if (!apps.length) setText($('#apps-summary'), 'No apps yet: deploy one with `shoal deploy`.');
  }

  function updateAppRow(row, app) {
    const f = appFigures(app);
    const c = (name) => row.querySelector(`.${name}`);
    setText(c('name'), app.name);
    setText(c('version'), `v${app.version}`);
    c('version').title = app.deployed_at ? `deployed ${new Date(app.deployed_at * 1000).toLocaleString()}` : '';
    setText(c('route'), [app.route, app.hostname].filter(Boolean).join(' · ') || dash);
    setText(c('replicas'), `${app.ready ?? 0} / ${app.wanted ?? 0}${app.replicas && app.replicas !== String(app.wanted) ? ` (${app.replicas})` : ''}`);
    c('replicas').classList.toggle('warn', (app.ready ?? 0) < (app.wanted ?? 0));
    const ready = new Set(app.ready_on || []);
    const dead = state.deadNodes || new Set();
    const where = (n) => (dead.has(n) ? `${n} (dead)` : ready.has(n) ? n : `${n} (starting)`);
    setText(c('where'), (app.nodes || []).map(where).join(', ') || dash);
    setText(c('rps'), rate(f.rps));
    setText(c('errors'), app.error_rate == null ? rate(f.eps) : percent(app.error_rate));
    c('errors').classList.toggle('warn', (app.error_rate ?? 0) > 0);
    setText(c('p50'), millis(f.p50));
    setText(c('p99'), millis(f.p99));
    setText(c('kv'), app.kv_keys ? `${bytes(app.kv_bytes)} · ${app.kv_keys} keys` : dash);
    const back = row.querySelector('button[data-action="rollback"]');
    back.disabled = !app.can_roll_back;
    back.title = app.can_roll_back ? 'deploy the previous version again' : 'no earlier version stored on this node';
  }

  function sortBy(table, sort, onChange) {
    table.querySelector('thead').addEventListener('click', (event) => {
      const th = event.target.closest('th[data-sort]');
      if (!th) return;
      const key = th.dataset.sort;
      sort.dir = sort.key === key ? -sort.dir : 1;
      sort.key = key;
      for (const other of table.querySelectorAll('th[data-sort]')) {
        other.setAttribute('aria-sort', other === th ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none');
      }
      onChange();
    });
  }

  // ---- recent changes ----------------------------------------------------

  function renderEvents() {
    const events = (state.overview?.events || []).slice(0, 50);
    const list = $('#events');
    list.replaceChildren(...events.map((e) => el('li', { 'data-kind': e.kind },
      el('time', { datetime: new Date(e.at_ms).toISOString(), text: clock(e.at_ms) }), ' ',
      el('span', { class: `kind ${e.kind}`, text: e.kind }), ' ',
      el('strong', { text: e.app }), ` v${e.version}`,
      el('span', { class: 'origin', text: e.origin ? ` from ${e.origin}` : '' }))));
    if (!events.length) list.replaceChildren();
    $('#changes').classList.toggle('empty', !events.length);
  }

  // ---- overview polling --------------------------------------------------

  let overviewTimer = 0;
  async function loadOverview() {
    clearTimeout(overviewTimer);
    if (state.ended) return;
    try {
      const reply = await fetch('/ui/api/overview', { cache: 'no-store', credentials: 'same-origin' });
      if (reply.status === 401) return ended();
      if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
      state.overview = await reply.json();
      renderOverview();
    } catch (error) {
      connection(`node ${state.me || ''} does not answer (${error.message}); retrying`, 'bad');
    }
    overviewTimer = setTimeout(loadOverview, OVERVIEW_EVERY_MS);
  }

  function renderOverview() {
    const o = state.overview;
    setText($('#me'), o.node || state.me);
    setText($('#version'), o.version ? `· shoal ${o.version}` : '');
    renderNodes();
    renderApps();
    renderEvents();
    renderLogChoices();
    drawChart();
  }

  // ---- the live stream ---------------------------------------------------

  function trimSamples() {
    const s = state.samples;
    const last = s[s.length - 1];
    if (!last) return;
    let drop = 0;
    while (drop < s.length && s[drop].t_ms < last.t_ms - WINDOW_MS) drop += 1;
    drop = Math.max(drop, s.length - MAX_SAMPLES);
    if (drop > 0) s.splice(0, drop);
  }

  function connectStream() {
    if (state.ended) return;
    const source = new EventSource('/ui/api/stream');
    state.stream = source;
    source.addEventListener('history', (event) => {
      state.samples = JSON.parse(event.data).samples || [];
      trimSamples();
      drawChart();
    });
    source.addEventListener('sample', (event) => {
      state.samples.push(JSON.parse(event.data));
      trimSamples();
      connection('live', 'ok');
      if (state.overview) { renderNodes(); renderApps(); }
      drawChart();
    });
    source.onopen = () => connection('live', 'ok');
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) return connection('reconnecting…', 'warn');
      connection('the live stream closed; retrying in 5 s', 'bad');
      setTimeout(() => { if (state.stream === source) { loadOverview(); connectStream(); } }, 5000);
    };
  }

  // ---- the chart ---------------------------------------------------------

  // The series to draw: the SERIES busiest by their latest value (the
  // legend counts the rest; the tables above have every figure).
  function chartSeries() {
    const by = state.chartBy, of = state.chartOf;
    const names = new Set();
    for (const s of state.samples) for (const name of Object.keys(s[by] || {})) names.add(name);
    const last = state.samples[state.samples.length - 1];
    const now = (name) => last?.[by]?.[name]?.[of] ?? 0;
    const ranked = [...names].sort((a, b) => now(b) - now(a) || a.localeCompare(b));
    const series = ranked.slice(0, SERIES).map((name) => ({
      name, dead: by === 'nodes' && last?.nodes?.[name]?.live === false,
      value: (s) => s[by]?.[name]?.[of],
    }));
    series.hidden = ranked.length - series.length;
    return series;
  }

  function niceCeil(x) {
    if (x <= 1) return 1;
    const step = 10 ** Math.floor(Math.log10(x));
    for (const m of [1, 2, 2.5, 5, 10]) if (x <= m * step) return m * step;
    return 10 * step;
  }

  let drawQueued = false;
  function drawChart() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; paintChart(); });
  }

  function paintChart() {
    const chart = $('#chart');
    const W = Math.max(chart.clientWidth, 280), H = Math.max(chart.clientHeight, 160);
    chart.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const pad = { l: 44, r: 10, t: 10, b: 22 };
    const samples = state.samples;
    const end = samples.length ? samples[samples.length - 1].t_ms : Date.now();
    const series = chartSeries();
    let max = 0;
    for (const s of samples) for (const line of series) max = Math.max(max, line.value(s) ?? 0);
    max = niceCeil(max);
    const x = (t) => pad.l + ((t - (end - WINDOW_MS)) / WINDOW_MS) * (W - pad.l - pad.r);
    const y = (v) => H - pad.b - (v / max) * (H - pad.t - pad.b);
    const parts = [];
    for (let i = 0; i <= 4; i += 1) {
      const v = (max * i) / 4;
      parts.push(svg('line', { class: 'grid', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
      parts.push(svg('text', { class: 'axis', x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, rate(v)));
    }
    for (let m = 5; m >= 0; m -= 1) {
      const t = end - m * 60000;
      parts.push(svg('text', { class: 'axis', x: x(t), y: H - 6, 'text-anchor': m === 5 ? 'start' : m === 0 ? 'end' : 'middle' },
        m === 0 ? 'now' : `−${m} min`));
    }
    series.forEach((line, i) => {
      for (const points of runs(samples, line.value)) {
        const d = points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
        parts.push(svg('polyline', { class: `line s${i}${line.dead ? ' dead' : ''}`, points: d }));
      }
    });
    chart.replaceChildren(svg('desc', { id: 'chart-desc' }, describe(series, samples)), ...parts);
    renderLegend(series, samples);
  }

  // Unbroken stretches of a series (a gap of more than 3 s, or a missing
  // value, breaks the line).
  function runs(samples, value) {
    const out = [];
    let run = [], prev = null;
    for (const s of samples) {
      const v = value(s);
      if (v == null || (prev != null && s.t_ms - prev > 3000)) { if (run.length) out.push(run); run = []; }
      if (v != null) run.push([s.t_ms, v]);
      prev = s.t_ms;
    }
    if (run.length) out.push(run);
    return out.map((r) => (r.length === 1 ? [r[0], [r[0][0] + 500, r[0][1]]] : r));
  }

  function describe(series, samples) {
    const what = state.chartOf === 'rps' ? 'Requests per second' : 'Errors per second';
    if (!samples.length) return `${what}: no samples yet.`;
    const last = samples[samples.length - 1];
    const now = series.map((l) => `${l.name} ${rate(l.value(last) ?? 0)}${l.dead ? ' (dead)' : ''}`).join(', ');
    return `${what} per ${state.chartBy === 'apps' ? 'app' : 'node'} over the last 5 minutes; now: ${now || 'nothing'}.`;
  }

  function renderLegend(series, samples) {
    const last = samples[samples.length - 1];
    $('#legend').replaceChildren(...series.map((line, i) => {
      const swatch = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      swatch.setAttribute('viewBox', '0 0 16 8');
      swatch.setAttribute('aria-hidden', 'true');
      swatch.append(svg('line', { class: `line s${i}${line.dead ? ' dead' : ''}`, x1: 0, x2: 16, y1: 4, y2: 4 }));
      const value = last ? rate(line.value(last) ?? 0) : dash;
      return el('li', {}, swatch, ` ${line.name}${line.dead ? ' (dead)' : ''} `, el('span', { class: 'value', text: value }));
    }));
    if (series.hidden) {
      const kind = state.chartBy === 'apps' ? 'apps' : 'nodes';
      $('#legend').append(el('li', { class: 'more', text: `and ${series.hidden} quieter ${kind}, not drawn` }));
    }
  }

  // ---- logs --------------------------------------------------------------

  function renderLogChoices() {
    const select = $('#log-app');
    const names = (state.overview?.apps || []).map((a) => a.name).sort();
    if (state.log.app && !names.includes(state.log.app)) names.push(state.log.app);
    const have = [...select.options].slice(1).map((o) => o.value);
    if (have.join('\n') === names.join('\n')) return;
    select.replaceChildren(select.options[0], ...names.map((n) => el('option', { value: n, text: n })));
    select.value = state.log.app;
  }

  function followLogs(app) {
    const log = state.log;
    log.source?.close();
    log.source = null;
    log.app = app;
    log.lines = [];
    log.seen = new Set();
    $('#log-lines').textContent = '';
    if (!app) return setText($('#log-state'), '');
    setText($('#log-state'), `connecting to ${app}'s logs…`);
    const source = new EventSource(`/ui/api/logs/${encodeURIComponent(app)}`);
    log.source = source;
    source.addEventListener('line', (event) => logLine(JSON.parse(event.data)));
    source.onopen = () => setText($('#log-state'), `following ${app} on every node that holds it`);
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) return setText($('#log-state'), 'reconnecting…');
      setText($('#log-state'), `the log stream of ${app} closed; retrying in 5 s`);
      setTimeout(() => { if (log.source === source && !state.ended) followLogs(app); }, 5000);
    };
  }

  function logLine(line) {
    const log = state.log;
    const key = `${line.node}\u0000${line.seq}\u0000${line.at_ms}`;
    if (log.seen.has(key)) return;
    log.seen.add(key);
    const text = `${line.at_ms ? clock(line.at_ms) : ''} ${line.node ?? ''}  ${line.text ?? ''}\n`;
    log.lines.push({ key, text });
    const pre = $('#log-lines');
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    if (log.lines.length > MAX_LOG_LINES) {
      for (const old of log.lines.splice(0, log.lines.length - MAX_LOG_LINES)) log.seen.delete(old.key);
      pre.textContent = log.lines.map((l) => l.text).join('');
    } else {
      pre.append(text);
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  // ---- actions -----------------------------------------------------------

  function confirmDialog(title, text, yes) {
    const dialog = $('#confirm');
    $('#confirm-title').textContent = title;
    $('#confirm-text').textContent = text;
    $('#confirm-yes').textContent = yes;
    dialog.returnValue = '';
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    });
  }

  const ACTIONS = {
    remove: {
      title: (app) => `Remove ${app}?`,
      text: (app) => `This removes app “${app}” from every node of the mesh; its route answers 404 until it is deployed again.`,
      yes: 'Remove',
      done: (app) => `Removed ${app}.`,
    },
    rollback: {
      title: (app) => `Roll ${app} back?`,
      text: (app) => `This deploys the previous version of “${app}” again, as a new version, on every node that holds it.`,
      yes: 'Roll back',
      done: (app, body) => `Rolled ${app} back to version ${body.rolled_back_to} (now version ${body.version}).`,
    },
  };

  async function act(action, app, button) {
    const what = ACTIONS[action];
    if (!what || !(await confirmDialog(what.title(app), what.text(app), what.yes))) return button.focus();
    try {
      const reply = await fetch(`/ui/api/apps/${encodeURIComponent(app)}/${action}`, {
        method: 'POST', credentials: 'same-origin', headers: { 'X-Shoal-CSRF': state.csrf },
      });
      if (reply.status === 401) return ended();
      const body = await reply.json().catch(() => ({}));
      if (reply.ok) toast(what.done(app, body));
      else toast(body.error || `${what.yes} ${app} failed: HTTP ${reply.status}`, true);
    } catch (error) {
      toast(`${what.yes} ${app} failed: ${error.message}`, true);
    }
    loadOverview();
    if (button.isConnected) button.focus();
  }

  async function logout() {
    try {
      await fetch('/ui/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-Shoal-CSRF': state.csrf } });
    } finally {
      ended();
      window.location.reload();
    }
  }

  // ---- wiring ------------------------------------------------------------

  function start() {
    setText($('#me'), state.me);
    $('#apps tbody').addEventListener('click', (event) => {
      const button = event.target.closest('button[data-action]');
      if (button && !button.disabled) act(button.dataset.action, button.dataset.app, button);
    });
    sortBy($('#nodes table'), state.nodeSort, renderNodes);
    sortBy($('#apps table'), state.appSort, renderApps);
    $('#node-filter').addEventListener('input', renderNodes);
    $('#app-filter').addEventListener('input', renderApps);
    $('#log-app').addEventListener('change', (event) => followLogs(event.target.value));
    for (const input of document.querySelectorAll('input[name="chart-by"], input[name="chart-of"]')) {
      input.addEventListener('change', () => {
        state.chartBy = document.querySelector('input[name="chart-by"]:checked').value;
        state.chartOf = document.querySelector('input[name="chart-of"]:checked').value;
        drawChart();
      });
    }
    $('#logout').addEventListener('click', logout);
    window.addEventListener('resize', drawChart);
    loadOverview();
    connectStream();
    drawChart();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
