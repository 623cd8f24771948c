// The queue dashboard: polls the admin JSON API (tag Admin of the contract) with the token
// kept in sessionStorage, draws depth and throughput from a bounded client-side history, and
// runs the operator's actions. No framework and no network access beyond this server.
'use strict';

const API = '/api/v1/admin';
// 150 samples 2 s apart: five minutes of history, whatever the page's uptime.
const POLL_MS = 2000;
const MAX_SAMPLES = 150;
const PAGE = 20;
const PRIOS = ['critical', 'default', 'low'];

const history = [];
let cursors = [null]; // cursors[i] opens page i; the last page has no successor
let pageIndex = 0;
let nextCursor = null;
let timer = null;

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
};
const svgEl = (tag, attrs = {}) => {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};

function token() { return sessionStorage.getItem('adminToken') || ''; }

function status(text, error = false) {
  const s = $('status');
  s.textContent = text;
  s.className = error ? 'error' : '';
}

// One call of the admin API; the contract's envelope either way ({code, msg, data}).
async function api(method, path) {
  const r = await fetch(API + path, { method, headers: { token: token() } });
  let body = null;
  try { body = await r.json(); } catch (_) { /* a body that is not JSON is reported below */ }
  if (!r.ok) {
    const msg = body && body.msg ? `${body.msg} (${r.status}, code ${body.code})` : `HTTP ${r.status}`;
    throw new Error(msg);
  }
  return body ? body.data : null;
}

async function poll() {
  if (!token()) return;
  try {
    const s = await api('GET', '/queue/stats');
    history.push(s);
    if (history.length > MAX_SAMPLES) history.shift();
    renderStats(s);
    drawDepth();
    drawRates();
    status(`Updated ${new Date(s.sampled_at).toLocaleTimeString()}`);
  } catch (e) {
    status(`Stats: ${e.message}`, true);
  }
}

function renderStats(s) {
  const q = $('queues');
  q.replaceChildren(...s.queues.map((x) => {
    const action = x.paused ? 'resume' : 'pause';
    const card = el('div', { class: `card${x.paused ? ' paused' : ''}`, 'data-priority': x.priority },
      el('h3', {}, x.priority, ...(x.paused ? [el('span', { class: 'badge' }, 'paused')] : [])),
      el('div', { class: 'n pending' }, String(x.pending)),
      el('button', { type: 'button', class: action, onclick: () => act('POST', `/queues/${x.priority}/${action}`, `${action}d ${x.priority}`) },
        x.paused ? 'Resume' : 'Pause'));
    return card;
  }));
  const states = [['scheduled', s.scheduled], ['retry', s.retry], ['active', s.active], ['completed', s.completed], ['dead', s.dead],
    ['oldest wait', `${(s.oldest_pending_age_ms / 1000).toFixed(1)} s`]];
  $('states').replaceChildren(...states.map(([name, n]) =>
    el('div', { class: 'card', 'data-state': name }, el('h3', {}, name), el('div', { class: 'n' }, String(n)))));
}

// A line chart of `series` ({name, values}) over the history, scaled to its maximum.
function chart(svg, series, unit) {
  const W = 600, H = 180, L = 40, B = 20, T = 8;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const n = Math.max(2, MAX_SAMPLES);
  const x = (i, len) => L + ((n - len + i) / (n - 1)) * (W - L - 4);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const kids = [svgEl('line', { class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B }), svgEl('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B })];
  const top = svgEl('text', { x: 2, y: T + 8 }); top.textContent = `${+max.toFixed(2)}${unit}`;
  const zero = svgEl('text', { x: 2, y: H - B }); zero.textContent = '0';
  kids.push(top, zero);
  series.forEach((s, k) => {
    const pts = s.values.map((v, i) => `${x(i, s.values.length).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    kids.push(svgEl('polyline', { class: `s-${s.name}`, points: pts, 'data-series': s.name }));
    const label = svgEl('text', { class: `s-${s.name}`, x: L + 8 + k * 110, y: H - 4 });
    const last = s.values.length ? s.values[s.values.length - 1] : 0;
    label.textContent = `${s.name}: ${+last.toFixed(2)}`;
    kids.push(label);
  });
  svg.replaceChildren(...kids);
  // For tests and scripts: the number of samples and each series' latest value.
  svg.dataset.samples = String(history.length);
  svg.dataset.latest = JSON.stringify(Object.fromEntries(series.map((s) => [s.name, s.values[s.values.length - 1] ?? 0])));
}

function drawDepth() {
  chart($('depth-chart'), PRIOS.map((p) => ({ name: p, values: history.map((h) => h.queues.find((q) => q.priority === p).pending) })), '');
}

function drawRates() {
  const rate = (key) => history.slice(1).map((h, i) => {
    const prev = history[i];
    const dt = (new Date(h.sampled_at) - new Date(prev.sampled_at)) / 1000;
    return dt > 0 ? Math.max(0, (h.totals[key] - prev.totals[key]) / dt) : 0;
  });
  chart($('rate-chart'), ['completed', 'failed', 'dead'].map((k) => ({ name: k, values: rate(k) })), '/s');
}

async function loadTasks() {
  if (!token()) return;
  const state = $('state').value;
  const priority = $('priority').value;
  const q = new URLSearchParams({ state, limit: String(PAGE) });
  if (priority) q.set('priority', priority);
  if (cursors[pageIndex]) q.set('cursor', cursors[pageIndex]);
  try {
    const page = await api('GET', `/tasks?${q}`);
    nextCursor = page.next_cursor || null;
    const rows = page.tasks.map((t) => {
      const actions = [];
      if (t.state === 'dead') actions.push(el('button', { type: 'button', class: 'retry', onclick: () => act('POST', `/tasks/${t.task_id}/retry`, `retried ${t.task_id}`) }, 'Retry'));
      if (t.state === 'pending') actions.push(el('button', { type: 'button', class: 'delete danger', onclick: () => confirmed(`Delete task ${t.task_id}?`) && act('DELETE', `/tasks/${t.task_id}`, `deleted ${t.task_id}`) }, 'Delete'));
      if (t.state === 'active') actions.push(el('button', { type: 'button', class: 'cancel danger', onclick: () => confirmed(`Cancel task ${t.task_id}?`) && act('POST', `/tasks/${t.task_id}/cancel`, `cancelled ${t.task_id}`) }, 'Cancel'));
      return el('tr', { 'data-id': t.task_id, 'data-state': t.state },
        el('td', { class: 'id' }, el('a', { onclick: () => openTask(t.task_id) }, t.task_id)),
        el('td', {}, t.type), el('td', {}, t.queue), el('td', {}, String(t.attempts)),
        el('td', {}, new Date(t.updated_at).toLocaleString()), el('td', { class: 'error' }, t.last_error || ''),
        el('td', {}, ...actions));
    });
    $('tasks').tBodies[0].replaceChildren(...rows);
    $('page-info').textContent = `${state}: ${page.total} task(s), page ${pageIndex + 1}`;
    $('prev').disabled = pageIndex === 0;
    $('next').disabled = !nextCursor;
  } catch (e) {
    status(`Tasks: ${e.message}`, true);
  }
}

// Destructive actions ask first; tests drive the page with window.confirm answered yes.
function confirmed(question) { return window.confirm(question); }

async function act(method, path, done) {
  try {
    await api(method, path);
    status(`Done: ${done}`);
  } catch (e) {
    status(`Failed: ${e.message}`, true);
  }
  await Promise.all([poll(), loadTasks()]);
  if (!$('detail').hidden) openTask($('detail-id').textContent);
}

async function openTask(id) {
  try {
    const d = await api('GET', `/tasks/${encodeURIComponent(id)}`);
    const t = d.task;
    $('detail').hidden = false;
    $('detail-id').textContent = t.task_id;
    const fields = [['type', t.type], ['state', t.state], ['priority', t.queue], ['attempts', `${t.attempts} (max retries ${t.max_retries})`],
      ['created', t.created_at], ['updated', t.updated_at], ['started', t.started_at], ['finished', t.completed_at], ['next run', t.run_at],
      ['last error', t.last_error], ['result', t.result]].filter(([, v]) => v !== null && v !== undefined);
    $('detail-fields').replaceChildren(...fields.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, String(v))]));
    $("detail-payload").textContent = d.payload === null || d.payload === undefined ? "(none: dropped at completion)" : JSON.stringify(d.payload, null, 2);
    $("detail-redacted").textContent = d.redacted.length ? `redacted: ${d.redacted.join(", ")}` : "";
    $('detail-errors').tBodies[0].replaceChildren(...t.errors.map((e) => el('tr', {}, el('td', {}, String(e.attempt)), el('td', {}, e.at), el('td', { class: 'error' }, e.error))));
    const actions = [];
    if (t.state === 'dead') actions.push(el('button', { type: 'button', onclick: () => act('POST', `/tasks/${t.task_id}/retry`, `retried ${t.task_id}`) }, 'Retry'));
    if (t.state === 'pending') actions.push(el('button', { type: 'button', class: 'danger', onclick: () => confirmed(`Delete task ${t.task_id}?`) && act('DELETE', `/tasks/${t.task_id}`, `deleted ${t.task_id}`) }, 'Delete'));
    if (t.state === 'active') actions.push(el('button', { type: 'button', class: 'danger', onclick: () => confirmed(`Cancel task ${t.task_id}?`) && act('POST', `/tasks/${t.task_id}/cancel`, `cancelled ${t.task_id}`) }, 'Cancel'));
    $('detail-actions').replaceChildren(...actions);
  } catch (e) {
    status(`Task ${id}: ${e.message}`, true);
  }
}

function start() {
  if (timer) clearInterval(timer);
  history.length = 0;
  cursors = [null];
  pageIndex = 0;
  poll();
  loadTasks();
  timer = setInterval(() => { poll(); }, POLL_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('adminToken', $('token').value.trim());
    $('token').value = '';
    start();
  });
  $('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem('adminToken');
    if (timer) clearInterval(timer);
    status('Token forgotten.');
  });
  $('filters').addEventListener('submit', (ev) => { ev.preventDefault(); cursors = [null]; pageIndex = 0; loadTasks(); });
  $('state').addEventListener('change', () => { cursors = [null]; pageIndex = 0; loadTasks(); });
  $('priority').addEventListener('change', () => { cursors = [null]; pageIndex = 0; loadTasks(); });
  $('next').addEventListener('click', () => { if (nextCursor) { cursors[pageIndex + 1] = nextCursor; pageIndex += 1; loadTasks(); } });
  $('prev').addEventListener('click', () => { if (pageIndex > 0) { pageIndex -= 1; loadTasks(); } });
  $('search').addEventListener('submit', (ev) => { ev.preventDefault(); const id = $('search-id').value.trim(); if (id) openTask(id); });
  $('close-detail').addEventListener('click', () => { $('detail').hidden = true; });
  if (token()) start();
});
