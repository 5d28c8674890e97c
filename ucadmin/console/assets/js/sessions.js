// The Sessions view: one user's connected devices (client, address, since when, quiet mode,
// last activity) as the server serving them knows them, wherever that is; user and full
// administrators may end one device's session (a kick: the device is disconnected and must
// sign in again, the user's other devices stay).
import { call, users } from './api.js';
import { $, el, ago, when, toast, pill } from './dom.js';
import { ui } from './views.js';
import { confirmAction } from './confirm.js';

const enc = encodeURIComponent;

/** Fills the user pickers' suggestions (every `<input list="user-choices">`). */
export async function fillUserChoices() {
  const list = await users('');
  $('user-choices').replaceChildren(...list.map((u) => el('option', { value: u.id, text: u.display_name })));
}

async function kick(userId, device) {
  const ok = await confirmAction(
    `Sign out ${device}?`,
    `The device ${device} of ${userId} is disconnected now and its session ends: it must sign in again. ${userId}'s other devices stay connected.`,
    `Sign out ${device}`);
  if (!ok) return;
  try {
    const { data } = await call('DELETE', `/admin/users/${enc(userId)}/sessions/${enc(device)}`);
    toast(`${device} of ${userId} signed out on ${data.server}; ${data.devices_left.length} other device(s) still connected`);
    await showSessions(userId);
  } catch (error) {
    toast(error.message);
  }
}

async function showSessions(userId) {
  const { data } = await call('GET', `/admin/users/${enc(userId)}/sessions`);
  const now = Date.now();
  const mayKick = ui.role !== 'read_only';
  $('sessions-summary').textContent = `${data.user} is served by ${data.server} (home ${data.home_server}): `
    + `${data.devices.length} device${data.devices.length === 1 ? '' : 's'} connected.`;
  $('sessions-kick-head').hidden = !mayKick;
  const body = $('sessions-table').querySelector('tbody');
  body.replaceChildren(...data.devices.map((d) => el('tr', { 'data-device': d.device },
    el('td', {}, el('strong', { text: d.device })),
    el('td', { class: 'wrap', text: d.client || 'unknown' }),
    el('td', { class: 'opt', text: d.address || '—' }),
    el('td', { text: ago(d.since_ms, now), title: when(d.since_ms) }),
    el('td', {}, d.quiet ? pill('off', 'quiet') : pill('ok', 'active')),
    el('td', { class: 'opt', text: ago(d.last_active_ms, now) }),
    mayKick ? el('td', {}, el('button', { type: 'button', class: 'danger small-btn', text: 'Sign out',
      'aria-label': `Sign out ${d.device}`, onclick: () => kick(data.user, d.device) })) : null)));
  if (!data.devices.length) {
    body.replaceChildren(el('tr', { class: 'empty-row' }, el('td', { colspan: 7, text: `${data.user} has no device connected.` })));
  }
  $('sessions-result').hidden = false;
}

export async function renderSessions() {
  await fillUserChoices();
  const userId = $('sessions-user').value.trim();
  if (userId) await showSessions(userId);
}

export function wireSessions() {
  $('sessions-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const userId = $('sessions-user').value.trim();
    if (userId) showSessions(userId).catch((error) => { $('sessions-result').hidden = true; toast(error.message); });
  });
}
