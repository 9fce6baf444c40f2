// Events: search the log by time range, key, project and identity; page
// on; export the same selection as JSON Lines.
import { $, h, clear, api, fmtTime, localToISO, isoToLocal, eventDetail, rowOpener, selectRow, fillIdentityTypes, APIError } from './lib.js';

let next = '';

export function init() {
  fillIdentityTypes();
  const form = $('#events-form');
  const params = new URLSearchParams(location.search);
  for (const el of form.elements) {
    if (!el.name || !params.has(el.name)) continue;
    if (el.type === 'checkbox') el.checked = params.get(el.name) === 'true';
    else if (el.type === 'datetime-local') el.value = isoToLocal(params.get(el.name));
    else el.value = params.get(el.name);
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    search(form, false);
  });
  form.addEventListener('input', () => exportLink(form));
  $('#events-more').addEventListener('click', () => search(form, true));
  exportLink(form);
  search(form, false);
}

function query(form) {
  const q = new URLSearchParams();
  for (const name of ['project', 'key', 'identity', 'identity_type']) {
    const v = form.elements[name].value.trim();
    if (v) q.set(name, v);
  }
  for (const name of ['since', 'until']) {
    const v = localToISO(form.elements[name].value);
    if (v) q.set(name, v);
  }
  return q;
}

function exportLink(form) {
  $('#export').href = '/api/v1/events/export?' + query(form);
}

async function search(form, more) {
  const q = query(form);
  const newest = form.elements.newest.checked;
  const limit = form.elements.limit.value || '50';
  const page = new URLSearchParams(q);
  if (newest) page.set('newest', 'true');
  page.set('limit', limit);
  history.replaceState(null, '', '?' + page);
  const call = new URLSearchParams(page);
  if (more && next) call.set('after', next);
  const rows = $('#events-rows');
  const st = $('#events-status');
  st.textContent = 'Searching…';
  let res;
  try {
    res = await api('GET', '/api/v1/events?' + call);
  } catch (e) {
    if (e instanceof APIError && e.status === 401) return;
    st.textContent = 'Search refused: ' + e.message + ((e.errors || []).length ? ' — ' + e.errors.map((x) => `${x.path}: ${x.message}`).join('; ') : '');
    return;
  }
  if (!more) {
    clear(rows);
    $('#detail').hidden = true;
  }
  const evs = newest ? res.events.slice().reverse() : res.events;
  for (const ev of evs) rows.append(row(ev));
  if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No stored event matches.')));
  next = res.next;
  const full = res.events.length === Number(limit);
  // Paging goes forward through the log: oldest first.
  $('#events-more').hidden = newest || !(full || (q.get('identity') && res.next !== call.get('after')));
  st.textContent = `${rows.querySelectorAll('tr[data-id]').length} events shown` + (newest && full ? ` (the newest ${limit}; untick "newest first" to page through them all)` : '') + ` · log head ${res.head}`;
}

function row(ev) {
  const tr = h('tr', { 'data-id': ev.id });
  const open = () => { selectRow(tr); eventDetail(ev); };
  tr.append(
    h('td', { class: 'nowrap' }, rowOpener(tr, fmtTime(ev.time), open)),
    h('td', { class: 'mono' }, ev.id),
    h('td', {}, ev.projectId),
    h('td', {}, h('code', {}, ev.key)),
    h('td', {}, ev.dialect),
    h('td', { class: 'trunc' }, (ev.identities || []).map((i) => `${i.type}=${i.value}`).join(' ')));
  return tr;
}
