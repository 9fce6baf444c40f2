// A hook: the create/edit form for every delivery type (the API's field
// errors shown at their fields), its actions, the pre-test, the attempt
// log and the dead letters with replay.
import { $, $$, h, add, clear, api, onSubmit, fmtTime, showErrors, clearErrors, confirmClick, lines, toast, fail, jsonBlock, projects, localToISO } from './lib.js';
import { state } from './hooks.js';

const knownTypes = ['http', 'rabbitmq_queue', 'rabbitmq_exchange', 'kafka'];
// Read-only fields of a hook, and the targets of the known types.
const readOnly = ['id', 'cursor', 'stopped_reason', 'created_at', 'updated_at', 'signing_secret'];
const targets = ['http', 'rabbitmq', 'kafka'];

let id = '';
let stored = null;

export async function init(hid) {
  id = hid;
  const form = $('#hook-form');
  const sel = $('#h-project');
  for (const p of await projects()) sel.append(h('option', { value: p.id }, `${p.id}: ${p.name}`));
  form.elements.type.addEventListener('change', () => showType(form));
  form.elements['http.auth.type'].addEventListener('change', () => showType(form));
  if (id) {
    try {
      stored = await api('GET', '/api/v1/hooks/' + encodeURIComponent(id));
    } catch (e) {
      $('#hook-title').textContent = `Hook ${id}: ${e.message}`;
      form.hidden = true;
      return;
    }
    fill(form, stored);
    actions();
    pretest();
    attempts();
    deadLetters();
  }
  showType(form);
  onSubmit(form, (e) => {
    e.preventDefault();
    save(form);
  });
  if (location.hash === '#pretest') $('#t-sample')?.focus();
}

// showType shows the fields of the selected delivery type (and auth).
function showType(form) {
  const type = form.elements.type.value;
  const auth = form.elements['http.auth.type'].value;
  for (const el of $$('[data-type]', form)) el.hidden = !el.dataset.type.split(' ').includes(type);
  for (const el of $$('[data-auth]', form)) el.hidden = el.dataset.auth !== auth;
}

const val = (form, name) => (form.elements[name] ? form.elements[name].value.trim() : '');

function fill(form, hk) {
  const f = form.elements;
  $('#hook-title').textContent = hk.name;
  const st = $('#hook-state');
  if (st) st.replaceWith(Object.assign(state(hk), { id: 'hook-state' }));
  const act = $('#hook-actions [data-action="activate"]');
  const stop = $('#hook-actions [data-action="stop"]');
  if (act) act.hidden = !!hk.active;
  if (stop) stop.hidden = !hk.active;
  f.name.value = hk.name || '';
  f.project_id.value = hk.project_id === null || hk.project_id === undefined ? '' : String(hk.project_id);
  f.events.value = (hk.events || []).join('\n');
  f.filter.value = hk.filter || '';
  f.active.checked = !!hk.active;
  f.include_content.checked = !!hk.include_content;
  if (knownTypes.includes(hk.type)) {
    f.type.value = hk.type;
  } else {
    f.type.value = 'other';
    f.other_type.value = hk.type;
    f.other_json.value = JSON.stringify(hk[hk.type] || {}, null, 2);
  }
  const t = hk.http || {};
  f['http.url'].value = t.url || '';
  f['http.timeout'].value = t.timeout || '';
  f['http.success_regex'].value = t.success_regex || '';
  f['http.headers'].value = Object.entries(t.headers || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
  f['http.auth.type'].value = (t.auth && t.auth.type) || 'none';
  f['http.auth.username'].value = (t.auth && t.auth.username) || '';
  const r = hk.rabbitmq || {};
  for (const k of ['host', 'port', 'vhost', 'username', 'timeout', 'ca_file', 'queue', 'exchange', 'exchange_type', 'routing_key']) f['rabbitmq.' + k].value = r[k] ?? '';
  f['rabbitmq.tls'].checked = !!r.tls;
  f['rabbitmq.durable'].checked = r.durable !== false;
  f['rabbitmq.auto_delete'].checked = !!r.auto_delete;
  const k = hk.kafka || {};
  f['kafka.brokers'].value = (k.brokers || []).join('\n');
  for (const n of ['topic', 'key', 'compression', 'sasl', 'username', 'ca_file', 'timeout']) f['kafka.' + n].value = k[n] ?? '';
  f['kafka.tls'].checked = !!k.tls;
  for (const n of ['max_batch_size', 'batch_timeout', 'retry_times', 'retry_period', 'retry_schedule', 'max_in_flight', 'stop_after_dead_letters']) {
    f[n].value = hk[n] ?? '';
  }
  f.custom_data.value = Object.entries(hk.custom_data || {}).map(([k, v]) => `${k} = ${v}`).join('\n');
}

// collect builds the definition: the stored one (fields this form does not
// know are kept), overlaid with the form.
function collect(form) {
  const f = form.elements;
  const hk = stored ? { ...stored } : {};
  for (const k of readOnly) delete hk[k];
  for (const k of targets) delete hk[k];
  hk.name = val(form, 'name');
  hk.project_id = f.project_id.value === '' ? null : Number(f.project_id.value);
  hk.events = lines(f.events.value);
  if (val(form, 'filter')) hk.filter = val(form, 'filter'); else delete hk.filter;
  hk.active = f.active.checked;
  hk.include_content = f.include_content.checked;
  let type = f.type.value;
  if (type === 'other') {
    if (stored && !knownTypes.includes(stored.type)) delete hk[stored.type];
    type = val(form, 'other_type');
    let settings;
    try {
      settings = JSON.parse(f.other_json.value || '{}');
    } catch (e) {
      throw { message: 'The target settings are not JSON', errors: [{ path: 'other', message: e.message }] };
    }
    if (type) hk[type] = settings;
  }
  hk.type = type;
  const set = (obj, key, v) => { if (v !== '' && v !== undefined && v !== null) obj[key] = v; };
  const num = (name) => (f[name].value === '' ? undefined : Number(f[name].value));
  if (type === 'http') {
    const t = {};
    set(t, 'url', val(form, 'http.url'));
    set(t, 'timeout', val(form, 'http.timeout'));
    set(t, 'success_regex', val(form, 'http.success_regex'));
    const headers = {};
    for (const l of lines(f['http.headers'].value)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim()] = l.slice(i + 1).trim();
      else headers[l] = '';
    }
    if (Object.keys(headers).length) t.headers = headers;
    const at = f['http.auth.type'].value;
    if (at !== 'none') {
      t.auth = { type: at };
      if (at === 'basic') {
        set(t.auth, 'username', val(form, 'http.auth.username'));
        set(t.auth, 'password', f['http.auth.password'].value);
      } else {
        set(t.auth, 'token', f['http.auth.token'].value);
      }
    }
    hk.http = t;
  } else if (type === 'rabbitmq_queue' || type === 'rabbitmq_exchange') {
    const r = {};
    for (const k of ['host', 'vhost', 'username', 'timeout', 'ca_file']) set(r, k, val(form, 'rabbitmq.' + k));
    set(r, 'port', num('rabbitmq.port'));
    set(r, 'password', f['rabbitmq.password'].value);
    if (f['rabbitmq.tls'].checked) r.tls = true;
    if (type === 'rabbitmq_queue') {
      set(r, 'queue', val(form, 'rabbitmq.queue'));
    } else {
      for (const k of ['exchange', 'exchange_type', 'routing_key']) set(r, k, val(form, 'rabbitmq.' + k));
      r.durable = f['rabbitmq.durable'].checked;
      if (f['rabbitmq.auto_delete'].checked) r.auto_delete = true;
    }
    hk.rabbitmq = r;
  } else if (type === 'kafka') {
    const k = { brokers: lines(f['kafka.brokers'].value) };
    for (const n of ['topic', 'key', 'compression', 'sasl', 'username', 'ca_file', 'timeout']) set(k, n, val(form, 'kafka.' + n));
    set(k, 'password', f['kafka.password'].value);
    if (f['kafka.tls'].checked) k.tls = true;
    hk.kafka = k;
  }
  for (const n of ['max_batch_size', 'retry_times', 'max_in_flight', 'stop_after_dead_letters']) {
    delete hk[n];
    set(hk, n, num(n));
  }
  for (const n of ['batch_timeout', 'retry_period', 'retry_schedule']) {
    delete hk[n];
    set(hk, n, val(form, n));
  }
  const cd = {};
  for (const l of lines(f.custom_data.value)) {
    const i = l.indexOf('=');
    if (i > 0) cd[l.slice(0, i).trim()] = l.slice(i + 1).trim();
    else cd[l] = '';
  }
  if (Object.keys(cd).length) hk.custom_data = cd; else delete hk.custom_data;
  if (!stored && f.start_from && f.start_from.value) hk.start_from = localToISO(f.start_from.value);
  return hk;
}

async function save(form) {
  clearErrors(form);
  let body;
  try {
    body = collect(form);
  } catch (err) {
    showErrors(form, err);
    return;
  }
  const btn = $('#hook-save');
  btn.disabled = true;
  try {
    if (stored) {
      stored = await api('PUT', '/api/v1/hooks/' + encodeURIComponent(id), body);
      fill(form, stored);
      showType(form);
      toast('Hook saved.');
    } else {
      const hk = await api('POST', '/api/v1/hooks', body);
      showSecret(hk, `Hook ${hk.name} is created.`, true);
    }
  } catch (err) {
    showErrors(form, err);
  } finally {
    btn.disabled = false;
  }
}

// showSecret shows a signing secret this once.
function showSecret(hk, what, created) {
  const box = clear($('#hook-secret'));
  add(box, h('strong', {}, what),
    hk.signing_secret ? [h('p', {}, 'Its signing secret, shown this once (the target checks the webhook-signature header with it):'), h('code', { tabindex: 0 }, hk.signing_secret)] : null,
    created ? h('a', { class: 'button primary', href: '/hooks/' + encodeURIComponent(hk.id), id: 'hook-continue' }, 'Continue to the hook') : null);
  box.hidden = false;
  (box.querySelector('code') || box.querySelector('a') || box).focus();
  if (created) $('#hook-form').hidden = true;
}

function actions() {
  const base = '/api/v1/hooks/' + encodeURIComponent(id);
  const form = $('#hook-form');
  for (const b of $$('#hook-actions button')) {
    const a = b.dataset.action;
    const go = async () => {
      try {
        const res = await api(a === 'delete' ? 'DELETE' : 'POST', `${base}${a === 'delete' ? '' : '/' + a}`);
        if (a === 'delete') return location.assign('/hooks');
        if (a === 'clone') return location.assign('/hooks/' + encodeURIComponent(res.id));
        stored = res;
        fill(form, stored);
        showType(form);
        if (a === 'rotate-secret') showSecret(res, 'The signing secret is rotated.', false);
        else toast(`Hook ${a === 'stop' ? 'stopped' : 'activated'}.`);
      } catch (e) { fail(e); }
    };
    if (a === 'delete') confirmClick(b, go, 'Click again: delete');
    else if (a === 'rotate-secret') confirmClick(b, go, 'Click again: rotate');
    else b.addEventListener('click', go);
  }
}

function pretest() {
  const form = $('#test-form');
  onSubmit(form, async (e) => {
    e.preventDefault();
    clearErrors(form);
    const out = clear($('#test-result'));
    let body;
    const sample = form.elements.sample.value.trim();
    if (sample) {
      try {
        body = { sample: JSON.parse(sample) };
      } catch (err) {
        showErrors(form, { message: 'The sample is not JSON', errors: [{ path: 'sample', message: err.message }] });
        return;
      }
    }
    out.append(h('p', { class: 'hint' }, 'Sending…'));
    try {
      const r = await api('POST', `/api/v1/hooks/${encodeURIComponent(id)}/test`, body);
      clear(out);
      add(out, h('p', {}, h('span', { class: 'badge ' + (r.delivered ? 'ok' : 'bad'), id: 'test-outcome' }, r.delivered ? 'delivered' : 'not delivered'),
        ` status ${r.status || '–'} · ${Math.round(r.latency_ms)} ms · event: ${r.event_source}`),
        r.error ? h('p', { class: 'field-error' }, r.error) : null,
        h('h3', {}, 'The target answered'), jsonBlock(r.response || '(empty)', 'The answer'),
        r.request ? [h('h3', {}, 'What was sent'), jsonBlock(`${r.request.method} ${r.request.url}\n` + Object.entries(r.request.header || {}).map(([k, v]) => `${k}: ${v.join(', ')}`).join('\n') + '\n\n' + r.request.body, 'The request')] : null);
      attempts();
    } catch (err) {
      clear(out);
      showErrors(form, err);
    }
  });
}

async function attempts() {
  const rows = $('#attempts-rows');
  $('#attempts-refresh').onclick = attempts;
  let list = [];
  try { list = (await api('GET', `/api/v1/hooks/${encodeURIComponent(id)}/deliveries?limit=50`)).deliveries; } catch (e) { fail(e); }
  clear(rows);
  for (const d of list) {
    rows.append(h('tr', {},
      h('td', { class: 'nowrap' }, fmtTime(d.started_at)),
      h('td', {}, d.kind), h('td', {}, d.attempt), h('td', {}, d.events),
      h('td', {}, h('span', { class: 'badge ' + (d.error ? 'bad' : 'ok') }, d.status || '–')),
      h('td', { class: 'trunc' }, d.error ? `${d.error_class || ''} ${d.error}` : '', d.next_attempt_at ? h('div', { class: 'hint' }, 'next try ' + fmtTime(d.next_attempt_at)) : null),
      h('td', { class: 'trunc mono' }, d.response || '')));
  }
  if (!list.length) rows.append(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No attempt yet.')));
}

async function deadLetters() {
  const base = `/api/v1/hooks/${encodeURIComponent(id)}/dead-letters`;
  const rows = $('#dl-rows');
  const out = $('#dl-result');
  const report = (res) => {
    clear(out);
    out.append(h('ul', {}, res.replayed.map((r) => h('li', {}, `dead letter ${r.id}: `, h('span', { class: 'badge ' + (r.delivered ? 'ok' : 'bad') }, r.delivered ? 'delivered' : 'failed again'),
      r.status ? ` status ${r.status}` : '', r.error ? ' ' + r.error : ''))));
    if (!res.replayed.length) out.append(h('p', {}, 'Nothing to replay.'));
    load();
    attempts();
  };
  const load = async () => {
    let list = [];
    try { list = (await api('GET', base)).dead_letters; } catch (e) { fail(e); }
    clear(rows);
    for (const d of list) {
      const replay = h('button', { type: 'button', 'data-dl': d.id }, 'Replay');
      replay.addEventListener('click', async () => {
        replay.disabled = true;
        try { report(await api('POST', `${base}/${d.id}/replay`)); } catch (e) { fail(e); replay.disabled = false; }
      });
      rows.append(h('tr', {}, h('td', {}, d.id), h('td', { class: 'nowrap' }, fmtTime(d.created_at)), h('td', {}, d.events),
        h('td', { class: 'trunc' }, d.last_status ? `status ${d.last_status} ` : '', d.last_error || ''), h('td', {}, replay)));
    }
    if (!list.length) rows.append(h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No dead letter.')));
  };
  $('#dl-refresh').onclick = load;
  $('#dl-replay-all').onclick = async () => {
    try { report(await api('POST', base + '/replay')); } catch (e) { fail(e); }
  };
  load();
}
