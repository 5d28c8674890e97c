// The UCAdmin console: sign-in, the view named in the URL's hash (#/overview, #/users,
// #/groups, #/audit, #/servers, #/sessions, #/presence, #/settings, #/transfer), and the
// refresh. Changes by other administrators arrive on the live channel (live.js) and redraw
// the view they concern at once; the overview's counters and the settings' confirmations by
// each server are read again every 5 s while shown.
import * as api from './api.js';
import { $, toast } from './dom.js';
import { ui, applyRole, wireViews, renderOverview, renderUsers, renderGroups, renderAudit } from './views.js';
import { renderServers, wireServers } from './servers.js';
import { renderSessions, wireSessions } from './sessions.js';
import { renderPresence, wirePresence } from './presence.js';
import { renderSettings, wireSettings } from './settings.js';
import { wireTransfer, renderTransfer } from './transfer.js';
import { renderCharts } from './charts.js';
import { startLive, stopLive } from './live.js';
import { wireDelegates } from './delegates.js';

const VIEWS = {
  overview: async () => { await renderOverview(); await renderCharts(); }, users: renderUsers, groups: renderGroups, audit: renderAudit,
  servers: renderServers, sessions: renderSessions, presence: renderPresence, settings: renderSettings,
  transfer: renderTransfer,
};
/** Views polled while shown: the overview, and the settings (each server's confirmation). */
const POLLED = ['overview', 'settings'];
const REFRESH_MS = 5000;
let refreshTimer = 0;

/** The audit actions (by prefix) whose changes each view shows; the audit log shows all. */
const CONCERNS = {
  overview: ['server.', 'media.', 'license.', 'user.create', 'user.delete', 'directory.'],
  users: ['user.', 'directory.'],
  groups: ['group.', 'user.', 'directory.'],
  audit: [''],
  servers: ['server.', 'media.'],
  sessions: ['user.'],
  presence: ['user.', 'group.', 'directory.'],
  settings: ['setting.'],
  transfer: [],
};

/** A change made by someone on the live channel: say so, and redraw the view if concerned. */
function changed(event) {
  const name = currentView();
  if (event.type === 'change') {
    const { actor, action, detail } = event.entry;
    // This administrator's own change: the view that made it has drawn it already.
    if (actor === api.session.current?.user) return;
    toast(`${actor}: ${action} ${detail}`);
    if (!CONCERNS[name].some((prefix) => action.startsWith(prefix))) return;
  } else if (event.type === 'server_down') {
    toast(`Server ${event.server} was found dead; its users are failing over`);
    if (!['overview', 'servers'].includes(name)) return;
  }
  // A form being filled in is not redrawn under the administrator's hands: after it closes.
  const open = document.querySelector('dialog[open]');
  const typing = document.activeElement?.matches?.('input, select, textarea') ? document.activeElement : null;
  if (open) open.addEventListener('close', redrawSoon, { once: true });
  // Nor while a field has the focus: once it is left (its button's click has run by then).
  else if (typing) typing.addEventListener('blur', redrawSoon, { once: true });
  else redrawSoon();
}

let redrawTimer = 0;
/** One redraw for a burst of changes (an import announces many). */
function redrawSoon() {
  clearTimeout(redrawTimer);
  redrawTimer = setTimeout(() => { if (api.session.current) redrawKeepingInput(); }, 200);
}

/** A field's name that survives a redraw: its id, else its label for assistive technology. */
const fieldKey = (node) => node.id || node.getAttribute('aria-label') || '';

/**
 * Redraws the view shown without losing what the administrator is typing: the values of its
 * fields (by id or aria-label) and the focus are put back after the redraw.
 */
async function redrawKeepingInput() {
  const view = $(`view-${currentView()}`);
  const fields = [...view.querySelectorAll('input:not([type=file]), select, textarea')];
  const typed = new Map(fields.filter((f) => fieldKey(f) && f.value).map((f) => [fieldKey(f), f.value]));
  const focused = fields.includes(document.activeElement) ? fieldKey(document.activeElement) : '';
  await show();
  for (const field of view.querySelectorAll('input:not([type=file]), select, textarea')) {
    const key = fieldKey(field);
    if (typed.has(key) && !field.value) field.value = typed.get(key);
    if (focused && key === focused) field.focus();
  }
}

function currentView() {
  const name = location.hash.replace(/^#\/?/, '');
  return name in VIEWS ? name : 'overview';
}

async function show() {
  const name = currentView();
  for (const view of Object.keys(VIEWS)) $(`view-${view}`).hidden = view !== name;
  for (const link of document.querySelectorAll('.nav a')) {
    if (link.getAttribute('data-view') === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · Switchboard Admin`;
  clearTimeout(refreshTimer);
  try {
    await VIEWS[name]();
  } catch (error) {
    toast(error.message);
  }
  if (POLLED.includes(name) && api.session.current) {
    refreshTimer = setTimeout(show, REFRESH_MS);
  }
}

function signedOut() {
  clearTimeout(refreshTimer);
  stopLive();
  api.session.save(null);
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  $('login-user').focus();
}

async function signedIn() {
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('who-name').textContent = api.session.current.display_name || api.session.current.user;
  try {
    await renderOverview(); // learns the role
  } catch (error) {
    toast(error.message);
  }
  applyRole();
  startLive({
    onEvent: changed,
    onSignedOut: () => { signedOut(); $('login-error').textContent = 'Your session has ended; sign in again.'; },
  });
  await show();
}

async function submitLogin(event) {
  event.preventDefault();
  $('login-error').textContent = '';
  try {
    const answer = await api.login($('login-user').value.trim(), $('login-password').value);
    api.session.save(answer);
    $('login-password').value = '';
    await signedIn();
  } catch (error) {
    $('login-error').textContent = error.message;
  }
}

async function logout() {
  try { await api.logout(); } catch { /* the token ends anyway */ }
  signedOut();
}

wireViews();
wireDelegates();
wireServers();
wireSessions();
wirePresence();
wireSettings();
wireTransfer();
api.whenUnauthorized(() => { signedOut(); $('login-error').textContent = 'Your session has ended; sign in again.'; });
$('login-form').addEventListener('submit', submitLogin);
$('logout-btn').addEventListener('click', logout);
window.addEventListener('hashchange', () => { if (api.session.current) show(); });
if (api.session.current) signedIn();
else signedOut();
export { ui };
