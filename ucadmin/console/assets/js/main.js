// The UCAdmin console: sign-in, the view named in the URL's hash (#/overview, #/users,
// #/groups, #/audit, #/servers, #/sessions, #/presence, #/settings, #/transfer), and the
// refresh. Updates are polled: the overview and the settings every 5 s while shown (live push
// is a later step).
import * as api from './api.js';
import { $, toast } from './dom.js';
import { ui, applyRole, wireViews, renderOverview, renderUsers, renderGroups, renderAudit } from './views.js';
import { renderServers, wireServers } from './servers.js';
import { renderSessions, wireSessions } from './sessions.js';
import { renderPresence, wirePresence } from './presence.js';
import { renderSettings, wireSettings } from './settings.js';
import { wireTransfer, renderTransfer } from './transfer.js';

const VIEWS = {
  overview: renderOverview, users: renderUsers, groups: renderGroups, audit: renderAudit,
  servers: renderServers, sessions: renderSessions, presence: renderPresence, settings: renderSettings,
  transfer: renderTransfer,
};
/** Views polled while shown: the overview, and the settings (each server's confirmation). */
const POLLED = ['overview', 'settings'];
const REFRESH_MS = 5000;
let refreshTimer = 0;

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
