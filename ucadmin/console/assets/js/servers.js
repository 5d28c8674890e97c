// The Servers view: every UCServer with its high-availability state (why, since when, its
// redundancy group), version, users, devices and calls, and every MediaServer with its load.
// Full administrators get the server actions (drain, undrain, failover, fallback, hold,
// recover) and add, drain and remove MediaServers, each confirmed with what it will do;
// other roles see no buttons.
import { call } from './api.js';
import { $, el, ago, when, toast, pill } from './dom.js';
import { ui } from './views.js';
import { confirmAction } from './confirm.js';

const enc = encodeURIComponent;

/** Each action: its button label and what it does to server `id`, in words. */
const ACTIONS = {
  drain: ['Drain', (id) => `Every user of ${id} moves to their backup server now, without signing out, and stays there until you undrain ${id}.`],
  undrain: ['Undrain', (id) => `${id} serves its own users again: they move back from their backups at once.`],
  failover: ['Fail over', (id) => `Like drain: every user of ${id} moves to their backup server now and stays there until you undrain ${id}.`],
  fallback: ['Fall back', (id) => `The users of ${id} come back from their backups now, without waiting for the fallback delay.`],
  hold: ['Hold', (id) => `The users of ${id} stay on their backups: no automatic fallback until you recover ${id}.`],
  recover: ['Recover', (id) => `Drain, hold and fallback of ${id} are cleared: the automatic rules apply again.`],
};

/** A state as a pill: normal is green, a dead server red, anything in between amber. */
function statePill(server) {
  const state = server.state || 'unknown';
  const kind = state === 'normal' ? 'ok' : state === 'failed' || !server.alive ? 'down' : 'warn';
  return pill(kind, state.replaceAll('_', ' '));
}

async function act(id, action) {
  const [label, explain] = ACTIONS[action];
  if (!await confirmAction(`${label} ${id}?`, explain(id), `${label} ${id}`)) return;
  try {
    await call('POST', `/admin/servers/${enc(id)}/${action}`);
    toast(`${label} ${id}: done; the servers act on it within a heartbeat`);
    await renderServers();
  } catch (error) {
    toast(error.message);
  }
}

/** Takes MediaServer `id` out of service (`drain`) or back, after a confirmation. */
async function actOnMedia(id, drain) {
  const label = drain ? 'Drain' : 'Undrain';
  const explain = drain
    ? `No new call goes to MediaServer ${id}; the calls it carries now go on until they end.`
    : `MediaServer ${id} takes new calls again.`;
  if (!await confirmAction(`${label} ${id}?`, explain, `${label} ${id}`)) return;
  try {
    await call('POST', `/admin/media/${enc(id)}/${drain ? 'drain' : 'undrain'}`);
    toast(`${label} ${id}: done`);
    await renderServers();
  } catch (error) {
    toast(error.message);
  }
}

/** Forgets MediaServer `id`, after a confirmation. */
async function removeMedia(id) {
  const explain = `No new call goes to ${id} any more; the calls it carries now go on until they end. `
    + 'Add it again to use it again.';
  if (!await confirmAction(`Remove ${id}?`, explain, `Remove ${id}`)) return;
  try {
    await call('DELETE', `/admin/media/${enc(id)}`);
    toast(`Removed ${id}`);
    await renderServers();
  } catch (error) {
    toast(error.message);
  }
}

async function addMedia(event) {
  event.preventDefault();
  const id = $('media-add-id').value.trim();
  const url = $('media-add-url').value.trim();
  try {
    await call('POST', '/admin/media', { id, control_url: url });
    $('media-add-id').value = '';
    $('media-add-url').value = '';
    toast(`Added ${id}: new calls may go there once it reports in`);
    await renderServers();
  } catch (error) {
    toast(error.message);
  }
}

export async function renderServers() {
  const { data } = await call('GET', '/admin/servers');
  const now = Date.now();
  const mayAct = ui.role === 'full';
  const body = $('ha-servers-table').querySelector('tbody');
  body.replaceChildren(...data.servers.map((s) => el('tr', { 'data-server': s.id },
    el('td', {}, el('strong', { text: s.id })),
    el('td', { class: 'state-cell' }, statePill(s), s.reason ? el('div', { class: 'small muted', text: s.reason }) : null),
    el('td', { text: s.alive && s.since_ms ? ago(s.since_ms, now).replace(' ago', '') : '—', title: when(s.since_ms) }),
    el('td', { class: 'opt', text: s.group || '—' }),
    el('td', { class: 'opt', text: s.version || '—' }),
    el('td', { text: `${s.sessions} / ${s.devices}` }),
    el('td', { text: s.calls }),
    mayAct ? el('td', {}, el('div', { class: 'actions' }, ...Object.entries(ACTIONS).map(([action, [label]]) =>
      el('button', { type: 'button', class: 'secondary small-btn', text: label, 'aria-label': `${label} ${s.id}`, onclick: () => act(s.id, action) })))) : null)));
  $('ha-actions-head').hidden = !mayAct;
  if (!data.servers.length) body.replaceChildren(el('tr', { class: 'empty-row' }, el('td', { colspan: 8, text: 'No UCServer is known.' })));

  const media = $('ha-media-table').querySelector('tbody');
  media.replaceChildren(...data.media.map((m) => el('tr', { 'data-media': m.id },
    el('td', {}, el('strong', { text: m.id })),
    el('td', {}, !m.alive ? pill('down', 'not beating') : m.draining ? pill('warn', 'drained') : pill('ok', 'alive')),
    el('td', { text: m.calls }),
    el('td', { text: `${Math.round(m.load * 100)} %` }),
    el('td', { class: 'opt', text: m.control_url }),
    el('td', { text: ago(m.last_seen_ms, now) }),
    mayAct ? el('td', {}, el('div', { class: 'actions' }, el('button', {
      type: 'button', class: 'secondary small-btn',
      text: m.draining ? 'Undrain' : 'Drain',
      'aria-label': `${m.draining ? 'Undrain' : 'Drain'} ${m.id}`,
      onclick: () => actOnMedia(m.id, !m.draining),
    }), el('button', {
      type: 'button', class: 'secondary small-btn', text: 'Remove',
      'aria-label': `Remove ${m.id}`,
      onclick: () => removeMedia(m.id),
    }))) : null)));
  $('ha-media-actions-head').hidden = !mayAct;
  $('media-add-form').hidden = !mayAct;
  if (!data.media.length) media.replaceChildren(el('tr', { class: 'empty-row' }, el('td', { colspan: 7, text: 'No MediaServer is known.' })));
  $('ha-updated').textContent = `As of ${new Date(now).toLocaleTimeString()}`;
}

export function wireServers() {
  $('media-add-form').addEventListener('submit', addMedia);
  $('ha-refresh').addEventListener('click', () => renderServers().catch((error) => toast(error.message)));
}
