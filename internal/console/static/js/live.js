// Live: events as they are committed and requests as they are refused,
// from GET /api/v1/live (Server-Sent Events), filtered, with pause and
// resume; a click shows the canonical JSON and the raw request when kept.
import { $, h, clear, api, fmtTime, jsonBlock, detailPanel, eventDetail, rowOpener, selectRow, fillIdentityTypes, toSignin } from './lib.js';

const MAX_ROWS = 500;
const MAX_WAITING = 5000;

let source = null;
let paused = false;
let waiting = [];
let counts = { events: 0, refusals: 0, missed: 0 };

export function init() {
  fillIdentityTypes();
  const form = $('#live-filter');
  const params = new URLSearchParams(location.search);
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === 'checkbox') {
      if (params.has(el.name)) el.checked = params.get(el.name) !== '0';
    } else if (params.has(el.name)) el.value = params.get(el.name);
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    connect(form);
  });
  $('#live-pause').addEventListener('click', () => {
    paused = !paused;
    const b = $('#live-pause');
    b.setAttribute('aria-pressed', String(paused));
    b.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) {
      const items = waiting;
      waiting = [];
      for (const it of items) render(it);
    }
    status();
  });
  $('#live-clear').addEventListener('click', () => {
    clear($('#live-rows'));
    counts = { events: 0, refusals: 0, missed: 0 };
    $('#detail').hidden = true;
    status();
  });
  connect(form);
}

function query(form) {
  const q = new URLSearchParams();
  const page = new URLSearchParams();
  for (const name of ['project', 'key', 'identity', 'identity_type', 'text']) {
    const v = form.elements[name].value.trim();
    if (v) {
      q.set(name, v);
      page.set(name, v);
    }
  }
  const kinds = [];
  if (form.elements.events.checked) kinds.push('events');
  else page.set('events', '0');
  if (form.elements.refusals.checked) kinds.push('refusals');
  else page.set('refusals', '0');
  q.set('kinds', kinds.join(',') || 'none');
  history.replaceState(null, '', page.toString() ? '?' + page : location.pathname);
  return q;
}

function connect(form) {
  if (source) source.close();
  const q = query(form);
  if (q.get('kinds') === 'none') {
    source = null;
    $('#live-status').textContent = 'Nothing to show: tick events or refusals.';
    return;
  }
  q.set('backlog', '50');
  clear($('#live-rows'));
  counts = { events: 0, refusals: 0, missed: 0 };
  waiting = [];
  const url = '/api/v1/live?' + q;
  // First a plain request: a bad filter is answered 400 with its field
  // paths, which an EventSource cannot read.
  check(url).then((ok) => {
    if (!ok) return;
    source = new EventSource(url);
    source.addEventListener('open', () => status());
    source.addEventListener('event', (m) => take({ kind: 'event', ...JSON.parse(m.data) }));
    source.addEventListener('refusal', (m) => take({ kind: 'refusal', refusal: JSON.parse(m.data) }));
    source.addEventListener('missed', (m) => {
      counts.missed += JSON.parse(m.data).missed;
      status();
    });
    source.addEventListener('error', async () => {
      if (source.readyState === EventSource.CLOSED) {
        // Not a passing drop (those reconnect by themselves): signed out?
        try {
          await api('GET', '/api/v1/overview');
          $('#live-status').textContent = 'The stream ended; Apply to reconnect.';
        } catch { /* api() went to sign in */ }
      } else {
        $('#live-status').textContent = 'Reconnecting…';
      }
    });
  });
}

async function check(url) {
  const ctl = new AbortController();
  try {
    const r = await fetch(url + '&limit=1&backlog=0', { credentials: 'same-origin', signal: ctl.signal });
    if (r.status === 401) {
      toSignin();
      return false;
    }
    if (r.status === 400) {
      const body = await r.json();
      $('#live-status').textContent = 'Filter refused: ' + (body.errors || []).map((e) => `${e.path}: ${e.message}`).join('; ');
      return false;
    }
    return true;
  } finally {
    ctl.abort(); // the stream itself is not wanted here
  }
}

function take(it) {
  if (it.kind === 'event') counts.events++;
  else counts.refusals++;
  if (paused) {
    if (waiting.length < MAX_WAITING) waiting.push(it);
    else counts.missed++;
  } else {
    render(it);
  }
  status();
}

function status() {
  const state = !source ? 'Not connected' : paused ? `Paused · ${waiting.length} waiting` : source.readyState === EventSource.OPEN ? 'Live' : 'Connecting…';
  $('#live-status').textContent = `${state} · ${counts.events} events · ${counts.refusals} refusals` + (counts.missed ? ` · ${counts.missed} missed (too fast to show)` : '');
}

function render(it) {
  const rows = $('#live-rows');
  let tr;
  if (it.kind === 'event') {
    const ev = it.event;
    tr = h('tr', { 'data-kind': 'event', 'data-key': ev.key });
    const open = () => { selectRow(tr); eventDetail(ev, it.content); };
    tr.append(
      h('td', { class: 'nowrap' }, rowOpener(tr, fmtTime(ev.receivedAt || ev.time), open)),
      h('td', {}, h('span', { class: 'badge ev' }, ev.dialect || 'event')),
      h('td', {}, ev.projectId),
      h('td', {}, h('code', {}, ev.key)),
      h('td', { class: 'trunc' }, summary(ev)));
  } else {
    const r = it.refusal;
    tr = h('tr', { 'data-kind': 'refusal' });
    const open = () => { selectRow(tr); refusalDetail(r); };
    const paths = (r.errors || []).map((e) => `${e.path}: ${e.message}`).join('; ');
    tr.append(
      h('td', { class: 'nowrap' }, rowOpener(tr, fmtTime(r.time), open)),
      h('td', {}, h('span', { class: 'badge bad' }, 'refused')),
      h('td', {}, r.projectId ?? '–'),
      h('td', {}, h('span', { class: 'badge bad' }, r.status), ' ', r.dialect),
      h('td', { class: 'trunc' }, r.message + (paths ? ' — ' + paths : ''), ' ', h('span', { class: 'hint' }, `${r.method} ${r.path} from ${r.source}`)));
  }
  rows.prepend(tr);
  while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove();
}

function summary(ev) {
  const ids = (ev.identities || []).map((i) => `${i.type}=${i.value}`).join(' ');
  const data = JSON.stringify(ev.data || {});
  return (ids ? ids + ' · ' : '') + (data.length > 160 ? data.slice(0, 160) + '…' : data);
}

function refusalDetail(r) {
  detailPanel(`Refused: ${r.status}`,
    h('dl', { class: 'kv' },
      h('dt', {}, 'when'), h('dd', {}, fmtTime(r.time)),
      h('dt', {}, 'dialect'), h('dd', {}, r.dialect),
      h('dt', {}, 'project'), h('dd', {}, r.projectId ?? 'not known (refused before authentication)'),
      h('dt', {}, 'sender'), h('dd', {}, r.source),
      h('dt', {}, 'request'), h('dd', {}, h('code', {}, `${r.method} ${r.path}`)),
      h('dt', {}, 'answer'), h('dd', {}, r.message + (r.code ? ` (${r.code})` : ''))),
    (r.errors && r.errors.length) ? [h('h3', {}, 'Fields at fault'),
      h('ul', { class: 'errors-list' }, r.errors.map((e) => h('li', {}, h('code', {}, e.path || '(request)'), ' ', e.message, e.index !== undefined ? ` (item ${e.index})` : '')))] : null,
    h('h3', {}, 'As answered'), jsonBlock(r, 'The refusal'),
    h('p', { class: 'hint' }, 'Refusals are kept in memory only (the last 4096), never stored.'));
}
