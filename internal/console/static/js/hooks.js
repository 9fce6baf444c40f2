// Hooks: the list with state, last delivery and lag, and a menu per hook
// to activate, stop, clone, test or delete it.
import { $, h, clear, api, fmtTime, fmtAgo, toast, fail, confirmClick } from './lib.js';

const MAX_LISTED = 200;

export function init() {
  load();
  setInterval(load, 10000);
}

// target names where a hook sends.
export function target(hk) {
  if (hk.http) return hk.http.url;
  if (hk.rabbitmq) return `${hk.rabbitmq.host}${hk.rabbitmq.queue ? ' queue ' + hk.rabbitmq.queue : ''}${hk.rabbitmq.exchange ? ' exchange ' + hk.rabbitmq.exchange : ''}`;
  if (hk.kafka) return `${(hk.kafka.brokers || []).join(',')} topic ${hk.kafka.topic}`;
  return '';
}

export function state(hk) {
  if (hk.active) return h('span', { class: 'badge ok' }, 'active');
  return h('span', { class: 'badge ' + (hk.stopped_reason ? 'bad' : 'warn'), title: hk.stopped_reason || '' }, 'stopped' + (hk.stopped_reason ? ': ' + hk.stopped_reason : ''));
}

let loading = false;

async function load() {
  if (loading || document.querySelector('details.menu[open]')) return; // not under an open menu
  loading = true;
  try {
    const [list, ov] = await Promise.all([api('GET', '/api/v1/hooks'), api('GET', '/api/v1/overview').catch(() => ({ hooks: {} }))]);
    const hooks = list.hooks.slice(0, MAX_LISTED);
    const last = await Promise.all(hooks.map((hk) => api('GET', `/api/v1/hooks/${encodeURIComponent(hk.id)}/deliveries?limit=1`).then((r) => r.deliveries[0]).catch(() => null)));
    const rows = clear($('#hooks-rows'));
    hooks.forEach((hk, i) => rows.append(row(hk, last[i], ov.hooks[hk.id])));
    if (!hooks.length) rows.append(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No hook yet: + Create one.')));
    $('#hooks-status').textContent = `${list.hooks.length} hooks, ${list.hooks.filter((x) => x.active).length} active` + (list.hooks.length > MAX_LISTED ? ` (the first ${MAX_LISTED} listed)` : '');
  } catch (e) {
    fail(e);
  } finally {
    loading = false;
  }
}

function row(hk, d, stats) {
  const tr = h('tr', { 'data-hook': hk.id, 'data-name': hk.name });
  const act = (label, fn) => h('button', { type: 'button', 'data-action': label.toLowerCase(), onclick: fn }, label);
  const run = (what, method, path, done) => async () => {
    try {
      const res = await api(method, path);
      toast(`${hk.name}: ${what}.`);
      if (done) done(res);
      else { tr.querySelector('details').open = false; load(); }
    } catch (e) { fail(e); }
  };
  const base = '/api/v1/hooks/' + encodeURIComponent(hk.id);
  const del = h('button', { type: 'button', class: 'danger', 'data-action': 'delete' }, 'Delete');
  confirmClick(del, run('deleted', 'DELETE', base), 'Click again: delete');
  const menu = h('details', { class: 'menu' }, h('summary', { 'aria-label': 'Actions of ' + hk.name }, 'Actions ▾'),
    h('div', { class: 'menu-items' },
      hk.active ? act('Stop', run('stopped', 'POST', base + '/stop')) : act('Activate', run('activated', 'POST', base + '/activate')),
      act('Clone', run('cloned', 'POST', base + '/clone', (c) => location.assign('/hooks/' + encodeURIComponent(c.id)))),
      act('Edit', () => location.assign('/hooks/' + encodeURIComponent(hk.id))),
      act('Test', () => location.assign('/hooks/' + encodeURIComponent(hk.id) + '#pretest')),
      del));
  menu.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { menu.open = false; menu.querySelector('summary').focus(); }
  });
  const lastCell = d ? [h('span', { class: 'badge ' + (d.error ? 'bad' : 'ok') }, d.status || d.error_class || 'error'), ' ', fmtAgo(d.ended_at || d.started_at),
    d.error ? h('div', { class: 'hint trunc' }, d.error) : null] : h('span', { class: 'hint' }, 'none yet');
  const lag = stats ? `${stats.lag_events} events` + (stats.lag_seconds ? ` · ${Math.round(stats.lag_seconds)} s` : '') : '–';
  tr.append(
    h('td', {}, h('a', { href: '/hooks/' + encodeURIComponent(hk.id) }, hk.name), h('div', { class: 'hint mono' }, hk.id)),
    h('td', {}, state(hk)),
    h('td', {}, hk.type, h('div', { class: 'hint trunc' }, target(hk))),
    h('td', {}, (hk.events || []).map((g) => h('div', {}, h('code', {}, g)))),
    h('td', { class: 'nowrap' }, lastCell, d ? h('div', { class: 'hint' }, fmtTime(d.ended_at || d.started_at)) : null),
    h('td', { class: 'nowrap' }, lag),
    h('td', {}, menu));
  return tr;
}
