// Profiles: look a person up by any identity; identities, attributes with
// their times, traits, the timeline across dialects; erasure. Fields the
// page does not know are shown as they come, so a newer API shows through.
import { $, h, add, clear, api, fmtTime, jsonBlock, projects, fillIdentityTypes, confirmClick, eventDetail, rowOpener, selectRow } from './lib.js';

const shown = ['id', 'projectId', 'firstSeen', 'lastSeen', 'createdAt', 'updatedAt', 'merged', 'identities', 'attributes', 'traits', 'conflicts'];

export async function init() {
  fillIdentityTypes();
  const sel = $('#pf-project');
  for (const p of await projects()) sel.append(h('option', { value: p.id }, `${p.id}: ${p.name}`));
  const form = $('#profile-form');
  const params = new URLSearchParams(location.search);
  if (params.get('project')) sel.value = params.get('project');
  if (params.get('type')) form.elements.type.value = params.get('type');
  if (params.get('value')) form.elements.value.value = params.get('value');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    lookup(form);
  });
  if (params.get('value')) lookup(form);
}

function path(form) {
  const f = form.elements;
  return `/api/v1/projects/${encodeURIComponent(f.project.value)}/profiles/${encodeURIComponent(f.type.value.trim())}/${encodeURIComponent(f.value.value.trim())}`;
}

async function lookup(form) {
  const f = form.elements;
  history.replaceState(null, '', '?' + new URLSearchParams({ project: f.project.value, type: f.type.value.trim(), value: f.value.value.trim() }));
  const out = clear($('#profile'));
  const st = $('#profile-status');
  st.textContent = 'Looking up…';
  let p;
  try {
    p = await api('GET', path(form));
  } catch (e) {
    st.textContent = e.message;
    return;
  }
  st.textContent = '';
  const attrs = Object.entries(p.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  const erase = h('button', { type: 'button', class: 'danger', id: 'profile-erase' }, 'Erase this person');
  const extra = Object.entries(p).filter(([k]) => !shown.includes(k));
  add(out,
    h('section', { class: 'card' },
      h('div', { class: 'heading' }, h('h2', { id: 'profile-title' }, `Profile ${p.id}`), erase),
      h('dl', { class: 'kv' },
        h('dt', {}, 'project'), h('dd', {}, p.projectId),
        h('dt', {}, 'first seen'), h('dd', {}, fmtTime(p.firstSeen || p.createdAt)),
        h('dt', {}, 'last seen'), h('dd', {}, fmtTime(p.lastSeen || p.updatedAt)),
        p.merged && p.merged.length ? [h('dt', {}, 'merged from'), h('dd', {}, p.merged.join(', '))] : null,
        extra.filter(([, v]) => typeof v !== 'object' || v === null).map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]))),
    h('section', { class: 'card' }, h('h2', {}, 'Identities'),
      table(['Type', 'Value', 'First seen', 'Last seen'], (p.identities || []).map((i) => [h('code', {}, i.type), h('code', {}, i.value), fmtTime(i.firstSeen), fmtTime(i.lastSeen)]), 'identities')),
    h('section', { class: 'card' }, h('h2', {}, 'Attributes'),
      table(['Name', 'Value', 'Set at'], attrs.map(([k, a]) => [h('code', {}, k), h('code', {}, JSON.stringify(a && a.value !== undefined ? a.value : a)), fmtTime(a && a.time)]), 'attributes')),
    p.traits ? h('section', { class: 'card' }, h('h2', {}, 'Traits'),
      table(['Trait', 'Value'], Object.entries(p.traits).filter(([, v]) => v !== null && !(Array.isArray(v) && !v.length) && !(typeof v === 'object' && !Array.isArray(v) && !Object.keys(v).length))
        .map(([k, v]) => [h('code', {}, k), typeof v === 'object' ? jsonBlock(v, k) : /^\d{4}-\d\d-\d\dT/.test(String(v)) ? fmtTime(v) : String(v)]), 'traits')) : null,
    p.conflicts && p.conflicts.length ? h('section', { class: 'card' }, h('h2', {}, 'Conflicts'),
      h('p', { class: 'hint' }, 'Links that events made and the merge rule refused (two different strong identities of one type never merge).'),
      table(['Time', 'Type', 'Held', 'Linked value', 'Event'], p.conflicts.map((c) => [fmtTime(c.time), h('code', {}, c.type), h('code', {}, c.held), h('code', {}, c.value), h('code', {}, c.eventId)]), 'conflicts')) : null,
    extra.filter(([, v]) => typeof v === 'object' && v !== null).map(([k, v]) => h('section', { class: 'card' }, h('h2', {}, k), jsonBlock(v, k))),
    h('section', { class: 'card' }, h('h2', {}, 'Timeline'), h('p', { class: 'hint', id: 'timeline-note' }), h('div', { class: 'split' },
      h('div', { class: 'table-wrap' }, h('table', { class: 'list' }, h('caption', { class: 'sr-only' }, 'Events of this person, newest first'),
        h('thead', {}, h('tr', {}, ['Time', 'Key', 'Dialect', 'Project'].map((c) => h('th', { scope: 'col' }, c)))), h('tbody', { id: 'timeline-rows' }))),
      h('aside', { id: 'detail', class: 'detail', 'aria-label': 'Selected event', hidden: true })),
      h('button', { type: 'button', id: 'timeline-more', hidden: true }, 'Older events')));
  confirmClick(erase, () => eraseProfile(form, out), 'Click again: erase for good');
  timeline(form);
}

function table(cols, rows, what) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'list', 'data-table': what },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))) : h('tr', {}, h('td', { colspan: cols.length, class: 'empty' }, 'none')))));
}

// timeline reads the person's events across every dialect, newest first,
// a page at a time.
async function timeline(form, before) {
  const rows = $('#timeline-rows');
  const note = $('#timeline-note');
  let page;
  try {
    page = await api('GET', path(form) + '/events?limit=50' + (before ? '&before=' + encodeURIComponent(before) : ''));
  } catch (e) {
    note.textContent = e.message;
    return;
  }
  note.textContent = 'Newest first, across every dialect.';
  if (!before) clear(rows);
  for (const ev of page.events) {
    const tr = h('tr', { 'data-id': ev.id });
    const open = () => { selectRow(tr); eventDetail(ev); };
    tr.append(h('td', { class: 'nowrap' }, rowOpener(tr, fmtTime(ev.time), open)), h('td', {}, h('code', {}, ev.key)), h('td', {}, ev.dialect), h('td', {}, ev.projectId));
    rows.append(tr);
  }
  if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: 4, class: 'empty' }, 'No event found.')));
  const more = $('#timeline-more');
  more.hidden = !page.next;
  more.onclick = () => timeline(form, page.next);
}

async function eraseProfile(form, out) {
  try {
    const r = await api('DELETE', path(form));
    clear(out);
    out.append(h('section', { class: 'card', id: 'erased' }, h('h2', {}, 'Erased'),
      h('p', {}, r ? `Profile ${r.profile}: ${r.profiles} profiles, ${r.identities} identities, ${r.attributes} attributes and ${r.events} events removed from every read path and from hook deliveries not yet made.` : 'The profile is gone.')));
  } catch (e) {
    $('#profile-status').textContent = e.message;
  }
}
