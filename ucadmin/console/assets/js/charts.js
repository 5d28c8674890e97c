// The overview's small charts of the last hour, drawn as inline SVG from `GET /admin/history`
// (each server samples its own counters; no Prometheus). One line per server; counters that
// only grow (messages) are drawn as a rate per minute between samples.
import { call } from './api.js';
import { $, el, toast } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 300;
const HEIGHT = 90;
const HOUR_MS = 3600000;
const COLORS = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2', '#65a30d', '#dc2626'];

/** What is charted: a title, the unit shown, and how a value is read from a sample. */
const CHARTS = [
  { title: 'Users online', unit: '', value: (s) => s.sessions },
  { title: 'Devices', unit: '', value: (s) => s.devices },
  { title: 'Calls', unit: '', value: (s) => s.calls },
  { title: 'Messages delivered', unit: '/min', rate: (s) => s.stats.messages_delivered },
  { title: 'CPU', unit: ' %', value: (s) => Math.round(s.stats.cpu_percent) },
  { title: 'Memory', unit: ' MiB', value: (s) => Math.round(s.stats.resident_bytes / 1048576) },
];

let fetchedAt = 0;
let history = null;

/** The points of one server for one chart: [time, value]. */
function points(chart, samples) {
  if (chart.value) return samples.map((s) => [s.at_ms, chart.value(s)]);
  const out = [];
  for (let i = 1; i < samples.length; i += 1) {
    const before = chart.rate(samples[i - 1]);
    const after = chart.rate(samples[i]);
    const minutes = (samples[i].at_ms - samples[i - 1].at_ms) / 60000;
    // A restart starts the counter again at 0.
    const counted = after >= before ? after - before : after;
    if (minutes > 0) out.push([samples[i].at_ms, Math.round((counted / minutes) * 10) / 10]);
  }
  return out;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function drawChart(chart, data, now) {
  const series = data.servers.map((server, index) => ({
    server: server.server,
    color: COLORS[index % COLORS.length],
    points: points(chart, server.samples),
  }));
  // The time axis spans the samples there are (at least 5 min), up to the hour.
  const oldest = Math.min(now, ...series.flatMap((s) => s.points.map(([t]) => t)));
  const span = Math.min(HOUR_MS, Math.max(5 * 60000, now - oldest));
  const since = now - span;
  const max = Math.max(1, ...series.flatMap((s) => s.points.map(([, v]) => v)));
  const x = (t) => Math.max(0, ((t - since) / span) * WIDTH);
  const y = (v) => HEIGHT - 4 - (v / max) * (HEIGHT - 8);
  const latest = series.map((s) => `${s.server} ${s.points.length ? s.points[s.points.length - 1][1] : 'no data'}${chart.unit}`);
  const picture = svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart-svg', preserveAspectRatio: 'none', 'aria-hidden': 'true' });
  picture.append(svg('line', { x1: 0, y1: HEIGHT - 4, x2: WIDTH, y2: HEIGHT - 4, class: 'chart-axis' }));
  for (const s of series) {
    if (!s.points.length) continue;
    const line = s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    const shape = s.points.length === 1
      ? svg('circle', { cx: x(s.points[0][0]), cy: y(s.points[0][1]), r: 2.5, fill: s.color })
      : svg('polyline', { points: line, fill: 'none', stroke: s.color, 'stroke-width': 1.8, 'vector-effect': 'non-scaling-stroke' });
    picture.append(shape);
  }
  return el('figure', {
    class: 'chart card', role: 'img',
    'aria-label': `${chart.title} over the last hour: ${latest.join(', ')}`,
    'data-chart': chart.title,
  },
  el('figcaption', {}, el('strong', { text: chart.title }), el('span', { class: 'muted small', text: ` up to ${max}${chart.unit}` })),
  picture,
  el('div', { class: 'legend small' }, ...series.map((s, i) => el('span', {}, swatch(s.color), latest[i]))),
  el('div', { class: 'axis small muted' }, el('span', { text: `${Math.round(span / 60000)} min ago` }), el('span', { text: 'now' })));
}

/** A legend's colour square (an SVG fill: the page's policy allows no inline styles). */
function swatch(color) {
  const square = svg('svg', { class: 'swatch', viewBox: '0 0 10 10', 'aria-hidden': 'true' });
  square.append(svg('rect', { width: 10, height: 10, rx: 2, fill: color }));
  return square;
}

/** Draws the charts, reading the history again when a new sample may be there. */
export async function renderCharts(force = false) {
  const now = Date.now();
  const every = Math.min(history?.sample_ms ?? 30000, 30000);
  if (force || !history || now - fetchedAt >= every) {
    try {
      history = (await call('GET', '/admin/history')).data;
      fetchedAt = now;
    } catch (error) {
      toast(`The charts cannot be read: ${error.message}`);
      if (!history) return;
    }
  }
  $('charts').replaceChildren(...CHARTS.map((chart) => drawChart(chart, history, history.at_ms)));
  const note = history.note ? ` · ${history.note}` : '';
  $('charts-updated').textContent = `One sample every ${Math.round(history.sample_ms / 1000)} s per server${note}`;
}
