// Helpers shared by the console's pages. Everything the pages show is
// built with DOM calls and textContent: no HTML string from data is ever
// parsed.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || '';

// h builds an element: h('a', {href: '/x', class: 'y', onclick: f}, 'text', child…).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

// add appends children (strings, nodes, arrays of them; null skipped).
export function add(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// svg builds an SVG element.
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// APIError is a refused API call: its status, message and field errors.
export class APIError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];
  }
}

// api calls the admin API with the session (and its CSRF token when the
// call changes state). A lost session goes to sign in.
export async function api(method, path, body) {
  const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (method !== 'GET' && method !== 'HEAD') opts.headers['X-CSRF-Token'] = csrf();
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) {
    toSignin();
    throw new APIError(401, { message: 'signed out' });
  }
  const text = await r.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text }; }
  }
  if (!r.ok) throw new APIError(r.status, data);
  return data;
}

export function toSignin() {
  location.assign('/signin?next=' + encodeURIComponent(location.pathname + location.search));
}

// toast shows a short message for a few seconds (announced politely).
export function toast(msg, bad = false) {
  const box = document.getElementById('toast');
  if (!box) return;
  const m = h('div', { class: bad ? 'msg bad' : 'msg' }, msg);
  box.append(m);
  setTimeout(() => m.remove(), bad ? 8000 : 4000);
}

// fail reports an error of an action that has no form.
export function fail(err) {
  if (err instanceof APIError && err.status === 401) return;
  const detail = err.errors && err.errors.length ? ': ' + err.errors.map((e) => (e.path ? e.path + ': ' : '') + e.message).join('; ') : '';
  toast(err.message + detail, true);
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

// fmtTime writes Unix ms or an RFC 3339 time in local time.
export function fmtTime(t) {
  if (t === null || t === undefined || t === '' || t === 0) return '';
  const d = typeof t === 'number' ? new Date(t) : new Date(t);
  if (isNaN(d)) return String(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtAgo(t) {
  const d = typeof t === 'number' ? t : Date.parse(t);
  if (!d) return '';
  const s = Math.round((Date.now() - d) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// localToISO turns a datetime-local value into RFC 3339 ("" stays "").
export function localToISO(v) {
  if (!v) return '';
  const d = new Date(v);
  return isNaN(d) ? '' : d.toISOString();
}

export function isoToLocal(v) {
  if (!v) return '';
  const d = new Date(v);
  if (isNaN(d)) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function pretty(v) {
  return JSON.stringify(v, null, 2);
}

export function jsonBlock(v, label) {
  return h('pre', { tabindex: 0, 'aria-label': label || 'JSON' }, typeof v === 'string' ? v : pretty(v));
}

// The identity types profiles are looked up by (docs/profiles.md), and
// profile for a profile's own id; cuid:<type> too.
export const identityTypes = ['custom_user_id', 'user_id', 'phone_hash', 'email_hash', 'metrix_user_id', 'anonymous_id', 'ga_client_id', 'uid', 'profile'];

export function fillIdentityTypes() {
  const dl = document.getElementById('identity-types');
  if (!dl) return;
  for (const t of identityTypes) dl.append(h('option', { value: t }));
}

// Field errors: an API error path is shown at the field whose data-path is
// its longest prefix (events[0] at events, http.auth.token at itself);
// the rest in the form's summary. The first field at fault gets focus.
// onSubmit runs fn on form's submits and then enables its submit buttons
// marked data-until-bound. The page serves them disabled: a click before
// the page's script has bound the form (it may await the API first) would
// submit it natively, as a GET that puts every field, secrets and samples
// included, into the URL.
export function onSubmit(form, fn) {
  form.addEventListener('submit', fn);
  for (const b of form.querySelectorAll('button[type=submit][data-until-bound]')) b.disabled = false;
}

export function clearErrors(form) {
  for (const e of $$('.field-error', form)) e.remove();
  for (const e of $$('[aria-invalid="true"]', form)) {
    e.removeAttribute('aria-invalid');
    e.removeAttribute('aria-describedby');
  }
  const sum = $('.form-errors', form);
  if (sum) clear(sum);
}

function fieldFor(form, path) {
  let best = null;
  let len = -1;
  for (const f of $$('[data-path]', form)) {
    const p = f.dataset.path;
    if (!p) continue;
    if (f.closest('[hidden]')) continue;
    const hit = path === p || path.startsWith(p + '.') || path.startsWith(p + '[');
    if (hit && p.length > len) {
      best = f;
      len = p.length;
    }
  }
  return best;
}

let errSeq = 0;

export function showErrors(form, err) {
  clearErrors(form);
  const sum = $('.form-errors', form);
  const rest = [];
  let first = null;
  const errors = (err.errors && err.errors.length) ? err.errors : errorsFromMessage(err.message);
  for (const e of errors) {
    const f = e.path ? fieldFor(form, e.path) : null;
    if (!f) {
      rest.push(e);
      continue;
    }
    const id = 'err-' + (++errSeq);
    const msg = h('p', { class: 'field-error', id }, (e.path !== f.dataset.path ? e.path + ': ' : '') + e.message);
    f.append(msg);
    const input = $('input, select, textarea', f);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', id);
      if (!first) first = input;
    }
  }
  if (sum) {
    const lines = [];
    if (!errors.length || rest.length) lines.push(h('p', {}, err.message));
    if (rest.length) lines.push(h('ul', {}, rest.map((e) => h('li', {}, (e.path ? e.path + ': ' : '') + e.message))));
    if (errors.length && !rest.length) lines.push(h('p', {}, err.message + ' (see the fields marked)'));
    sum.append(...lines);
  }
  (first || sum || form).focus?.();
  if (first) first.scrollIntoView({ block: 'center' });
}

// errorsFromMessage reads "path: message" lines from a message that names
// fields without listing them (project settings answer so).
export function errorsFromMessage(msg) {
  const out = [];
  for (let line of String(msg || '').split(/\n|; /)) {
    line = line.replace(/^invalid [a-z ]+: /, '');
    const m = /^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*|\[\d+\])*)(?: \([^)]*\))?: (.+)$/.exec(line.trim());
    if (m) out.push({ path: m[1], message: m[2] });
  }
  return out;
}

// confirmClick makes a button ask once more before it acts.
export function confirmClick(btn, action, label = 'Click again to confirm') {
  let armed = false;
  let timer = null;
  const text = btn.textContent;
  btn.addEventListener('click', async (ev) => {
    ev.preventDefault();
    if (!armed) {
      armed = true;
      btn.classList.add('armed');
      btn.textContent = label;
      timer = setTimeout(() => {
        armed = false;
        btn.classList.remove('armed');
        btn.textContent = text;
      }, 5000);
      return;
    }
    clearTimeout(timer);
    armed = false;
    btn.classList.remove('armed');
    btn.textContent = text;
    await action();
  });
}

// lines splits a textarea into trimmed, non-empty lines.
export function lines(v) {
  return String(v || '').split('\n').map((s) => s.trim()).filter(Boolean);
}

// selectRow marks one row of a table as the selected one.
export function selectRow(tr) {
  for (const r of $$('tr.selected', tr.parentElement)) r.classList.remove('selected');
  tr.classList.add('selected');
}

// rowOpener makes a whole row open its item on click, and its first
// cell's button on Enter (keyboard users tab to the button).
export function rowOpener(tr, label, open) {
  const btn = h('button', { type: 'button', class: 'open', onclick: (e) => { e.stopPropagation(); open(); } }, label);
  tr.addEventListener('click', open);
  return btn;
}

export async function projects() {
  try {
    return (await api('GET', '/api/v1/projects')).projects || [];
  } catch (e) {
    fail(e);
    return [];
  }
}

// detailPanel shows the selected item beside a list, with a close button.
export function detailPanel(title, ...content) {
  const panel = document.getElementById('detail');
  clear(panel);
  const close = h('button', { type: 'button', 'aria-label': 'Close the details', onclick: () => { panel.hidden = true; } }, '×');
  panel.append(h('h2', {}, h('span', {}, title), close));
  append(panel, content);
  panel.hidden = false;
  return panel;
}

// eventDetail shows a stored event: its canonical JSON and, when kept,
// the raw request it came in (fetched on demand).
export async function eventDetail(ev, hasContent) {
  const raw = h('div', {});
  const panel = detailPanel('Event ' + ev.id,
    h('dl', { class: 'kv' },
      h('dt', {}, 'key'), h('dd', {}, h('code', {}, ev.key)),
      h('dt', {}, 'project'), h('dd', {}, ev.projectId),
      h('dt', {}, 'dialect'), h('dd', {}, ev.dialect),
      h('dt', {}, 'time'), h('dd', {}, fmtTime(ev.time)),
      h('dt', {}, 'received'), h('dd', {}, fmtTime(ev.receivedAt))),
    h('h3', {}, 'Canonical JSON'), jsonBlock(ev, 'Canonical JSON of the event'), raw);
  if (hasContent === false) {
    raw.append(h('p', { class: 'hint' }, 'The raw request is not kept for this event (only while a hook with include_content wants its project).'));
    return panel;
  }
  raw.append(h('p', { class: 'hint' }, 'Looking for the raw request…'));
  try {
    const one = await api('GET', '/api/v1/events/' + encodeURIComponent(ev.id));
    clear(raw);
    if (one.content) {
      raw.append(h('h3', {}, 'Raw request'), h('p', { class: 'hint' }, 'received ' + fmtTime(one.content.receivedAt) + (one.content.encoding === 'base64' ? ' · not text: base64' : '')),
        jsonBlock(one.content.body, 'Raw request'));
    } else {
      raw.append(h('p', { class: 'hint' }, 'The raw request is not kept for this event (only while a hook with include_content wants its project).'));
    }
  } catch (e) {
    clear(raw);
    raw.append(h('p', { class: 'hint' }, 'The event is gone from the log: ' + e.message));
  }
  return panel;
}
