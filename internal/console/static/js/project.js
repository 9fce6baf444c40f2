// A project: settings (the form's fields over the stored settings, so a
// setting the form does not know is kept), tokens, s2s event types,
// commerce schemas.
import { $, h, clear, api, onSubmit, fmtTime, showErrors, clearErrors, confirmClick, lines, toast, fail, jsonBlock, pretty } from './lib.js';

let id;
let stored = {};

// The settings the form has fields for; the rest go to "other".
const known = ['webhook_auth', 'webhook_dedup_field', 'redirect_hosts', 'track', 'app_id', 's2s', 'default_region', 'hash_pii'];

export async function init(pid) {
  id = pid;
  const base = '/api/v1/projects/' + encodeURIComponent(id);
  let p;
  try {
    p = await api('GET', base);
  } catch (e) {
    $('#project-title').textContent = `Project ${id}: ${e.message}`;
    return;
  }
  fill(p);
  const sf = $('#settings-form');
  onSubmit(sf, async (e) => {
    e.preventDefault();
    clearErrors(sf);
    let settings;
    try {
      settings = collect(sf);
    } catch (err) {
      showErrors(sf, err);
      return;
    }
    try {
      const np = await api('PATCH', base, { name: sf.elements.name.value.trim(), settings });
      fill(np);
      toast('Settings saved.');
    } catch (err) {
      showErrors(sf, err);
    }
  });
  confirmClick($('#project-delete'), async () => {
    try {
      await api('DELETE', base);
      location.assign('/projects');
    } catch (e) { fail(e); }
  }, 'Click again: delete this project');

  tokens(base);
  eventTypes(base);
  schemas(base);
}

function fill(p) {
  stored = p.settings || {};
  $('#project-title').textContent = `Project ${p.id}: ${p.name}`;
  const f = $('#settings-form').elements;
  f.name.value = p.name;
  f.app_id.value = stored.app_id || '';
  f.webhook_auth.value = stored.webhook_auth || 'none';
  f.webhook_dedup_field.value = stored.webhook_dedup_field || '';
  f.default_region.value = stored.default_region || '';
  f.hash_pii.checked = !!stored.hash_pii;
  f.s2s.checked = stored.s2s !== false;
  f.redirect_hosts.value = (stored.redirect_hosts || []).join('\n');
  const fields = (list) => (list || []).map((c) => (c.path ? `${c.name} = ${c.path}` : c.name)).join('\n');
  f.custom_dimensions.value = fields(stored.track && stored.track.custom_dimensions);
  f.custom_metrics.value = fields(stored.track && stored.track.custom_metrics);
  const other = {};
  for (const [k, v] of Object.entries(stored)) if (!known.includes(k)) other[k] = v;
  f.other.value = Object.keys(other).length ? pretty(other) : '';
}

function collect(form) {
  const f = form.elements;
  let other = {};
  if (f.other.value.trim()) {
    try {
      other = JSON.parse(f.other.value);
    } catch (e) {
      throw { message: 'Other settings are not JSON', errors: [{ path: 'other', message: e.message }] };
    }
    if (typeof other !== 'object' || other === null || Array.isArray(other)) {
      throw { message: 'Other settings are not a JSON object', errors: [{ path: 'other', message: 'must be a JSON object' }] };
    }
  }
  const s = { ...other };
  const set = (k, v) => { if (v !== '' && v !== undefined) s[k] = v; };
  set('app_id', f.app_id.value.trim());
  set('webhook_auth', f.webhook_auth.value);
  set('webhook_dedup_field', f.webhook_dedup_field.value.trim());
  set('default_region', f.default_region.value.trim());
  if (f.hash_pii.checked) s.hash_pii = true;
  if (!f.s2s.checked) s.s2s = false;
  const hosts = lines(f.redirect_hosts.value);
  if (hosts.length) s.redirect_hosts = hosts;
  const fields = (v) => lines(v).map((l) => {
    const [name, path] = l.split('=').map((x) => x.trim());
    return path ? { name, path } : { name };
  });
  const track = { ...(stored.track || {}) };
  delete track.custom_dimensions;
  delete track.custom_metrics;
  const dims = fields(f.custom_dimensions.value);
  const mets = fields(f.custom_metrics.value);
  if (dims.length) track.custom_dimensions = dims;
  if (mets.length) track.custom_metrics = mets;
  if (Object.keys(track).length) s.track = track;
  return s;
}

async function tokens(base) {
  const rows = $('#tokens-rows');
  const load = async () => {
    let list = [];
    try { list = (await api('GET', base + '/tokens')).tokens; } catch (e) { fail(e); }
    clear(rows);
    for (const t of list) {
      const revoke = h('button', { type: 'button', class: 'danger' }, 'Revoke');
      confirmClick(revoke, async () => {
        try {
          await api('DELETE', `${base}/tokens/${encodeURIComponent(t.id)}`);
          toast(`Token ${t.name} revoked.`);
          load();
        } catch (e) { fail(e); }
      }, 'Click again: revoke');
      rows.append(h('tr', {},
        h('td', { class: 'mono' }, t.id),
        h('td', {}, t.name, ' ', h('span', { class: 'hint' }, t.hint ? `(${t.hint}…)` : '')),
        h('td', { class: 'nowrap' }, fmtTime(t.createdAt)),
        h('td', {}, t.revokedAt ? h('span', { class: 'badge bad' }, 'revoked ' + fmtTime(t.revokedAt)) : h('span', { class: 'badge ok' }, 'valid')),
        h('td', {}, t.revokedAt ? '' : revoke)));
    }
    if (!list.length) rows.append(h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No token yet.')));
  };
  load();
  const form = $('#token-form');
  onSubmit(form, async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = { name: form.elements.name.value.trim() };
    if (form.elements.secret.value) body.secret = form.elements.secret.value;
    try {
      const res = await api('POST', base + '/tokens', body);
      form.reset();
      const box = clear($('#token-secret'));
      box.append(h('strong', {}, `The secret of token ${res.token.name}, shown this once:`), h('code', { tabindex: 0 }, res.secret),
        h('button', { type: 'button', onclick: () => { box.hidden = true; clear(box); } }, 'I have kept it'));
      box.hidden = false;
      box.querySelector('code').focus();
      load();
    } catch (err) {
      showErrors(form, err);
    }
  });
}

async function eventTypes(base) {
  const rows = $('#types-rows');
  const load = async () => {
    let list = [];
    try { list = (await api('GET', base + '/event-types')).eventTypes; } catch (e) { fail(e); }
    clear(rows);
    for (const t of list) {
      const del = h('button', { type: 'button', class: 'danger' }, 'Delete');
      confirmClick(del, async () => {
        try {
          await api('DELETE', `${base}/event-types/${encodeURIComponent(t.slug)}`);
          load();
        } catch (e) { fail(e); }
      });
      rows.append(h('tr', {}, h('td', {}, h('code', {}, t.slug)), h('td', {}, t.kind), h('td', {}, t.name), h('td', {}, t.description || ''), h('td', {}, del)));
    }
    if (!list.length) rows.append(h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No event type yet.')));
  };
  load();
  const form = $('#type-form');
  onSubmit(form, async (e) => {
    e.preventDefault();
    clearErrors(form);
    const f = form.elements;
    const body = { slug: f.slug.value.trim(), kind: f.kind.value };
    if (f.name.value.trim()) body.name = f.name.value.trim();
    if (f.description.value.trim()) body.description = f.description.value.trim();
    try {
      await api('POST', base + '/event-types', body);
      form.reset();
      load();
    } catch (err) {
      showErrors(form, err);
    }
  });
}

async function schemas(base) {
  api('GET', '/api/v1/schemas').then((r) => {
    $('#builtin-schemas').textContent = r.schemas.map((s) => s.type || s.name || s.id).filter(Boolean).join(', ');
  }).catch(fail);
  const rows = $('#schemas-rows');
  const load = async () => {
    let list = [];
    try { list = (await api('GET', base + '/schemas')).schemas; } catch (e) { fail(e); }
    clear(rows);
    for (const s of list) {
      const del = h('button', { type: 'button', class: 'danger' }, 'Delete');
      confirmClick(del, async () => {
        try {
          await api('DELETE', `${base}/schemas/${encodeURIComponent(s.type)}`);
          load();
        } catch (e) { fail(e); }
      });
      const doc = h('details', {}, h('summary', {}, s.title || 'the document'), jsonBlock(s.schema, 'JSON Schema of ' + s.type));
      rows.append(h('tr', {}, h('td', {}, h('code', {}, s.type)), h('td', { class: 'nowrap' }, fmtTime(s.createdAt)), h('td', {}, doc), h('td', {}, del)));
    }
    if (!list.length) rows.append(h('tr', {}, h('td', { colspan: 4, class: 'empty' }, 'No registered schema.')));
  };
  load();
  const form = $('#schema-form');
  onSubmit(form, async (e) => {
    e.preventDefault();
    clearErrors(form);
    let doc;
    try {
      doc = JSON.parse(form.elements.schema.value);
    } catch (err) {
      showErrors(form, { message: 'The schema is not JSON', errors: [{ path: 'schema', message: err.message }] });
      return;
    }
    try {
      await api('POST', base + '/schemas', { type: form.elements.type.value.trim(), schema: doc });
      form.elements.type.value = '';
      load();
    } catch (err) {
      showErrors(form, err);
    }
  });
}
