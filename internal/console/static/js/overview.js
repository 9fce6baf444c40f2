// Overview: status tiles and small live charts of the server's own
// metrics (GET /api/v1/overview, sampled server-side every few seconds).
import { $, h, svg, clear, api, fail } from './lib.js';

export function init() {
  tiles();
  charts();
  setInterval(charts, 2000);
  setInterval(tiles, 10000);
}

async function tiles() {
  try {
    const r = await fetch('/readyz', { credentials: 'same-origin' });
    const body = await r.json();
    $('#ready').textContent = body.status + (body.reason ? ': ' + body.reason : '');
    $('#ready').className = 'tile-value ' + (r.ok ? 'ok' : 'bad');
  } catch {
    $('#ready').textContent = 'unknown';
  }
  try {
    const [p, hk, ev] = await Promise.all([api('GET', '/api/v1/projects'), api('GET', '/api/v1/hooks'), api('GET', '/api/v1/events?newest=true&limit=1')]);
    $('#n-projects').textContent = p.projects.length;
    $('#n-hooks').textContent = `${hk.hooks.filter((x) => x.active).length} of ${hk.hooks.length}`;
    hookNames = Object.fromEntries(hk.hooks.map((x) => [x.id, x.name]));
    $('#head').textContent = ev.head;
  } catch (e) {
    fail(e);
  }
}

let failing = false;
let hookNames = {};

async function charts() {
  let o;
  try {
    o = await api('GET', '/api/v1/overview');
    failing = false;
  } catch (e) {
    if (!failing) fail(e);
    failing = true;
    return;
  }
  const box = $('#charts');
  for (const c of o.charts) {
    let card = document.getElementById('chart-' + c.name);
    if (!card) {
      card = h('section', { class: 'chart', id: 'chart-' + c.name, 'aria-labelledby': 'chart-h-' + c.name },
        h('h2', { id: 'chart-h-' + c.name }, c.title, ' ', h('span', { class: 'opt' }, c.unit)), h('div', { class: 'plot' }), h('ul', { class: 'legend' }));
      box.append(card);
    }
    if (c.name.startsWith('hook_')) c.series = c.series.filter((s) => hookNames[s.label]).map((s) => ({ ...s, label: hookNames[s.label] }));
    draw(card, c, o.times);
  }
}

const W = 320;
const H = 110;

// draw plots each series as a line over the sample times, scaled to the
// chart's largest value, with its latest value in the legend.
function draw(card, c, times) {
  const plot = clear(card.querySelector('.plot'));
  const legend = clear(card.querySelector('.legend'));
  let max = 0;
  for (const s of c.series) for (const v of s.values) if (v !== null && v > max) max = v;
  const latest = (s) => { for (let i = s.values.length - 1; i >= 0; i--) if (s.values[i] !== null) return s.values[i]; return null; };
  const summary = c.series.map((s) => `${s.label} ${fmt(latest(s))}`).join(', ') || 'no data yet';
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `${c.title}: ${summary} ${c.unit}` },
    svg('line', { class: 'axis', x1: 0, y1: H - 1, x2: W, y2: H - 1 }));
  const n = times.length;
  if (!n || !c.series.length) {
    g.append(svg('text', { class: 'nodata', x: 8, y: H / 2 }, 'no data yet'));
  } else {
    const top = max > 0 ? max * 1.1 : 1;
    c.series.slice(0, 8).forEach((s, k) => {
      const pts = [];
      s.values.forEach((v, i) => {
        if (v === null) return;
        const x = n === 1 ? W : (i / (n - 1)) * W;
        pts.push(`${x.toFixed(1)},${(H - 2 - (v / top) * (H - 6)).toFixed(1)}`);
      });
      if (pts.length === 1) pts.unshift('0,' + pts[0].split(',')[1]);
      g.append(svg('polyline', { class: 'line s' + k, points: pts.join(' ') }));
    });
    g.append(svg('text', { class: 'max', x: 2, y: 10 }, 'max ' + fmt(max)));
  }
  plot.append(g);
  c.series.slice(0, 8).forEach((s, k) => legend.append(h('li', { class: 's' + k }, h('span', {}, `${s.label}: ${fmt(latest(s))}`))));
  if (!c.series.length) legend.append(h('li', { class: 's7' }, h('span', {}, 'nothing measured yet')));
}

function fmt(v) {
  if (v === null || v === undefined) return '–';
  if (v >= 100) return String(Math.round(v));
  if (v >= 10) return v.toFixed(1);
  return String(Math.round(v * 100) / 100);
}
