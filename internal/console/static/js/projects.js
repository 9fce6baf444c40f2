// Projects: the list, and a new project.
import { $, h, clear, api, onSubmit, fmtTime, showErrors, clearErrors, projects } from './lib.js';

export async function init() {
  const rows = $('#projects-rows');
  const list = await projects();
  clear(rows);
  for (const p of list) {
    rows.append(h('tr', {},
      h('td', {}, p.id),
      h('td', {}, h('a', { href: '/projects/' + p.id }, p.name)),
      h('td', {}, h('code', {}, p.settings.app_id || '')),
      h('td', {}, p.settings.webhook_auth || 'none'),
      h('td', {}, p.settings.hash_pii ? 'yes' : 'no'),
      h('td', { class: 'nowrap' }, fmtTime(p.createdAt))));
  }
  const form = $('#project-create');
  onSubmit(form, async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = { name: form.elements.name.value.trim() };
    if (form.elements.id.value !== '') body.id = Number(form.elements.id.value);
    try {
      const p = await api('POST', '/api/v1/projects', body);
      location.assign('/projects/' + p.id);
    } catch (err) {
      showErrors(form, err);
    }
  });
}
