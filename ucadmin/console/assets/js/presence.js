// The Presence view (the presence viewer): what one user (the watcher) sees of another now,
// exactly as the watcher's client gets it, and the rule that decided it (the server's own
// visibility rule); and who watches the user, online or not, on which server.
import { call } from './api.js';
import { $, el, pill, toast } from './dom.js';
import { fillUserChoices } from './sessions.js';

const enc = encodeURIComponent;
const RULES = { same_user: 'Same user', admin: 'Administrator', delegate: 'Delegate', contact: 'Contact', group_mate: 'Group mate', basic: 'Basic' };
const VISIBILITY = {
  full: 'Full: availability, note, telephony, devices',
  basic: 'Availability only',
  none: 'Nothing (shown as offline)',
};

function row(label, value) {
  return [el('dt', { text: label }), el('dd', {}, value)];
}

async function showPresence(userId, watcher) {
  const [{ data: seen }, { data: watching }] = await Promise.all([
    call('GET', `/admin/presence/${enc(userId)}?watcher=${enc(watcher)}`),
    call('GET', `/admin/presence/${enc(userId)}/watchers`),
  ]);
  const view = seen.presence;
  $('presence-seen-title').textContent = `${seen.watcher} sees ${seen.user} as`;
  $('presence-seen').replaceChildren(
    ...row('Availability', pill(view.availability === 'offline' ? 'off' : 'ok', view.availability)),
    ...row('Rule', el('span', {}, el('strong', { id: 'presence-rule', text: RULES[seen.rule] || seen.rule }), ` — ${seen.explanation}`)),
    ...row('Visibility', VISIBILITY[seen.visibility] || seen.visibility),
    ...row('Live updates', seen.live ? 'yes' : 'no (asks when needed)'),
    ...row('Note', view.note || '—'),
    ...row('Telephony', view.telephony || '—'),
    ...row('Devices', view.devices.length ? view.devices.map((d) => d.device).join(', ') : '—'),
    ...row('Version', String(view.version)));
  $('presence-watchers-title').textContent =
    `Watchers of ${watching.user}: ${watching.watching_now} of ${watching.watchers.length} online now${watching.truncated ? ' (list cut)' : ''}`;
  const body = $('presence-watchers-table').querySelector('tbody');
  body.replaceChildren(...watching.watchers.map((w) => el('tr', { 'data-watcher': w.user },
    el('td', {}, el('strong', { text: w.user })),
    el('td', { text: RULES[w.rule] || w.rule }),
    el('td', {}, w.online ? pill('ok', `online (${w.devices})`) : pill('off', 'offline')),
    el('td', { text: w.server || '—' }))));
  if (!watching.watchers.length) {
    body.replaceChildren(el('tr', { class: 'empty-row' }, el('td', { colspan: 4, text: 'Nobody watches this user.' })));
  }
  $('presence-result').hidden = false;
}

export async function renderPresence() {
  await fillUserChoices();
}

export function wirePresence() {
  $('presence-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const userId = $('presence-user').value.trim();
    const watcher = $('presence-watcher').value.trim();
    if (!userId || !watcher) return;
    showPresence(userId, watcher).catch((error) => { $('presence-result').hidden = true; toast(error.message); });
  });
}
