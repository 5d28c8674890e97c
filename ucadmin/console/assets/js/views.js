// The console's four views. Each `render*` reads from the admin API and draws its section;
// nothing is cached between views except the server list (for the home-server choice) and
// the signed-in administrator's role (which decides what the page offers to change).
import * as api from './api.js';
import { $, el, ago, when, toast, pill, saveBlob, ROLE_NAMES } from './dom.js';
import { showDelegates } from './delegates.js';
import { confirmAction } from './confirm.js';

export const ui = {
  /** @type {'full' | 'users' | 'read_only'} */
  role: 'read_only',
  /** Server ids known from the last overview, for the home-server choice. */
  servers: [],
};

const canWrite = () => ui.role !== 'read_only';

/** Shows or hides every control marked `data-write` for the current role. */
export function applyRole() {
  for (const node of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('[data-write]'))) node.hidden = !canWrite();
  $('readonly-note').hidden = canWrite();
  $('who-role').textContent = ROLE_NAMES[ui.role] || ui.role;
}

/** The message of a failed request, for people. */
const message = (error) => error?.message || String(error);

function emptyRow(table, columns, text) {
  $(table).querySelector('tbody').replaceChildren(
    el('tr', { class: 'empty-row' }, el('td', { colspan: columns, text })));
}

// ------------------------------------------------------------------------------ overview

/** Draws the overview; returns it (the caller learns the role from it). */
export async function renderOverview() {
  const data = await api.overview();
  ui.role = data.role;
  ui.servers = data.servers.map((s) => s.id);
  const now = data.at_ms;
  const alive = data.servers.filter((s) => s.alive);
  const tiles = [
    ['UCServers alive', `${alive.length} / ${data.servers.length}`],
    ['MediaServers alive', `${data.media.filter((m) => m.alive).length} / ${data.media.length}`],
    ['Users', data.users ?? '?'],
    ['Users online', alive.reduce((n, s) => n + s.sessions, 0)],
    ['Devices', alive.reduce((n, s) => n + s.devices, 0)],
    ['Calls', alive.reduce((n, s) => n + s.calls, 0)],
  ];
  $('overview-tiles').replaceChildren(...tiles.map(([label, value]) =>
    el('div', { class: 'tile' }, el('div', { class: 'value', text: value }), el('div', { class: 'label', text: label }))));

  const servers = $('servers-table').querySelector('tbody');
  servers.replaceChildren(...data.servers.map((s) => el('tr', { 'data-server': s.id },
    el('td', {}, el('strong', { text: s.id })),
    el('td', {}, s.alive ? pill('ok', 'alive') : pill('down', 'not beating')),
    el('td', { text: s.version || '—' }),
    el('td', { text: s.sessions }),
    el('td', { text: s.devices }),
    el('td', { text: s.calls }),
    el('td', { text: s.stats ? `${Math.round(s.stats.cpu_percent)} %` : '—' }),
    el('td', { class: 'opt', text: s.stats ? `${Math.round(s.stats.resident_bytes / 1048576)} MiB` : '—' }),
    el('td', { class: 'opt', text: s.url }),
    el('td', { text: ago(s.last_seen_ms, now) }))));
  if (!data.servers.length) emptyRow('servers-table', 10, 'No UCServer is known.');

  const sum = (read) => alive.reduce((n, s) => n + (s.stats ? read(s.stats) : 0), 0);
  const counters = [
    ['Messages stored', sum((c) => c.messages_stored)],
    ['Messages delivered to devices', sum((c) => c.messages_delivered)],
    ['Devices in quiet mode', sum((c) => c.mdm_quiet_sessions)],
    ['Held batches sent', sum((c) => c.mdm_buffer_flushes)],
    ['Events in held batches', sum((c) => c.mdm_flushed_packets)],
    ['Sign-ins', sum((c) => c.logins)],
  ];
  $('mdm-tiles').replaceChildren(...counters.map(([label, value]) =>
    el('div', { class: 'tile' }, el('div', { class: 'value', text: value }), el('div', { class: 'label', text: label }))));

  const media = $('media-table').querySelector('tbody');
  media.replaceChildren(...data.media.map((m) => el('tr', { 'data-media': m.id },
    el('td', {}, el('strong', { text: m.id })),
    el('td', {}, m.alive ? pill('ok', 'alive') : pill('down', 'not beating')),
    el('td', { text: m.calls }),
    el('td', { text: `${Math.round(m.load * 100)} % (${m.legs}/${m.capacity} legs)` }),
    el('td', { class: 'opt', text: m.control_url }),
    el('td', { text: ago(m.last_seen_ms, now) }))));
  if (!data.media.length) emptyRow('media-table', 6, 'No MediaServer is known.');

  $('health-list').replaceChildren(...data.checks.map((c) => el('li', {},
    el('span', { class: 'grow', text: c.name === 'sql' ? 'SQL database' : c.name.replace('bus', 'Bus') }),
    c.ok ? pill('ok', 'ok') : pill('down', 'down'),
    c.detail ? el('span', { class: 'detail', text: c.detail }) : null)));

  $('license-list').replaceChildren(...(data.licenses.length ? data.licenses.map((l) => el('li', {},
    el('span', { class: 'grow', text: l.kind }),
    el('span', { class: 'small', text: l.capacity == null ? `${l.in_use} in use, not limited` : `${l.in_use} of ${l.capacity} in use` }),
    l.capacity == null ? null : el('meter', {
      min: 0, max: l.capacity, value: l.in_use, high: Math.ceil(l.capacity * 0.9), optimum: 0,
      'aria-label': `${l.kind} in use`,
    }))) : [el('li', { class: 'muted', text: 'No license kind is configured.' })]));

  $('overview-updated').textContent = `Seen from ${data.server} at ${new Date(now).toLocaleTimeString()}`;
  return data;
}

// ------------------------------------------------------------------------------ users

let searchText = '';

export async function renderUsers() {
  const list = await api.users(searchText);
  const body = $('users-table').querySelector('tbody');
  body.replaceChildren(...list.map((u) => el('tr', { class: 'clickable', 'data-user': u.id, onclick: () => openUser(u.id) },
    el('td', {}, el('button', { type: 'button', class: 'link', text: u.id, 'aria-label': `Edit ${u.id}` })),
    el('td', { text: u.display_name }),
    el('td', { text: u.home_server }),
    el('td', { text: u.role ? ROLE_NAMES[u.role] : '—' }),
    el('td', {}, u.disabled ? pill('down', 'disabled') : u.online ? pill('ok', 'online') : pill('off', 'offline')))));
  if (!list.length) emptyRow('users-table', 5, searchText ? 'No user matches.' : 'No users yet.');
}

/** The user the dialog edits, as last loaded (`null` while creating one). */
let editing = null;

function fillHomeChoice(selected) {
  const choices = new Set(ui.servers);
  if (selected) choices.add(selected);
  $('u-home').replaceChildren(...[...choices].sort().map((id) => el('option', { value: id, text: id })));
  if (selected) $('u-home').value = selected;
}

function fillDialog(user) {
  editing = user;
  const creating = !user;
  $('user-dialog-title').textContent = creating ? 'New user' : `User ${user.id}`;
  $('user-new-fields').hidden = !creating;
  $('u-id').required = creating;
  $('u-password').required = creating;
  $('u-id').value = '';
  $('u-password').value = '';
  $('u-display').value = user?.display_name ?? '';
  fillHomeChoice(user?.home_server ?? ui.servers[0]);
  $('u-role').value = user?.role ?? '';
  $('u-disabled').checked = !!user?.disabled;
  $('user-version').textContent = creating ? '' :
    `Version ${user.version}, changed ${user.changed_by ? `by ${user.changed_by} ` : ''}${ago(user.changed_ms)}`;
  $('user-conflict').hidden = true;
  $('user-error').textContent = '';
  $('user-password-out').hidden = true;
  $('u-delete').hidden = creating || !canWrite();
  $('u-reset').hidden = creating || !canWrite();
  $('u-save').hidden = !canWrite();
  for (const id of ['u-display', 'u-home', 'u-disabled']) $(id).disabled = !canWrite();
  // Roles are given and taken by full administrators only.
  $('u-role').disabled = ui.role !== 'full';
  showDelegates(user?.id ?? null, canWrite());
}

async function openUser(id) {
  try {
    fillDialog(await api.user(id));
    $('user-dialog').showModal();
  } catch (error) {
    toast(message(error));
  }
}

function openNewUser() {
  fillDialog(null);
  $('user-dialog').showModal();
  $('u-id').focus();
}

/** Shows who changed the user meanwhile; the edit stays in the form until reloaded. */
function showConflict(error) {
  const current = error.body?.current;
  const box = $('user-conflict');
  const who = current?.changed_by ? ` by ${current.changed_by}` : '';
  const at = current?.changed_ms ? ` at ${when(current.changed_ms)}` : '';
  box.replaceChildren(
    el('strong', { text: 'Not saved: someone else changed this user meanwhile.' }),
    el('span', { text: `Changed${who}${at} (now version ${current?.version ?? '?'}; you edited version ${editing?.version ?? '?'}).` }),
    el('button', { type: 'button', class: 'secondary small-btn', text: 'Load the current version',
      onclick: () => editing && openUser(editing.id) }));
  box.hidden = false;
}

async function saveUser(event) {
  event.preventDefault();
  $('user-error').textContent = '';
  const role = $('u-role').value || null;
  try {
    if (!editing) {
      const made = await api.createUser({
        id: $('u-id').value.trim(), password: $('u-password').value,
        display_name: $('u-display').value.trim() || undefined, home_server: $('u-home').value || undefined,
        admin: !!role,
      });
      // A new administrator is a full one; another role is given right after.
      if (role && role !== 'full') await api.updateUser(made.id, { role }, made.version);
      toast(`User ${$('u-id').value.trim()} created`);
    } else {
      const change = {};
      if ($('u-display').value !== editing.display_name) change.display_name = $('u-display').value;
      if ($('u-home').value !== editing.home_server) change.home_server = $('u-home').value;
      if ((editing.role ?? null) !== role) { change.admin = !!role; if (role) change.role = role; }
      if ($('u-disabled').checked !== editing.disabled) change.disabled = $('u-disabled').checked;
      if (!Object.keys(change).length) { $('user-dialog').close(); return; }
      const saved = await api.updateUser(editing.id, change, editing.version);
      toast(`User ${saved.id} saved (version ${saved.version})`);
    }
    $('user-dialog').close();
    await renderUsers();
  } catch (error) {
    if (error.code === 'conflict' && error.body?.current) showConflict(error);
    else $('user-error').textContent = message(error);
  }
}

async function deleteUser() {
  if (!editing) return;
  const sure = await confirmAction(`Delete ${editing.id}?`,
    `${editing.id} is signed out everywhere and removed with their contacts, delegates and memberships; their messages stay in the conversations. This cannot be undone.`,
    `Delete ${editing.id}`);
  if (!sure) return;
  try {
    await api.deleteUser(editing.id, editing.version);
    $('user-dialog').close();
    toast(`User ${editing.id} deleted`);
    await renderUsers();
  } catch (error) {
    if (error.code === 'conflict' && error.body?.current) showConflict(error);
    else $('user-error').textContent = message(error);
  }
}

async function resetPassword() {
  if (!editing) return;
  try {
    const answer = await api.resetPassword(editing.id);
    editing = answer.user;
    const out = $('user-password-out');
    out.textContent = `New password for ${answer.user.id}: ${answer.password} (shown once; pass it on safely)`;
    out.hidden = false;
  } catch (error) {
    $('user-error').textContent = message(error);
  }
}

// ------------------------------------------------------------------------------ groups

export async function renderGroups() {
  const list = await api.groups();
  const cards = list.map((g) => {
    const input = /** @type {HTMLInputElement} */ (el('input', { 'aria-label': `User to add to ${g.id}`, placeholder: 'user id', autocapitalize: 'none', spellcheck: 'false' }));
    const add = async (event) => {
      event.preventDefault();
      const userId = input.value.trim();
      if (!userId) return;
      try {
        await api.addMember(g.id, userId);
        toast(`${userId} added to ${g.id}`);
        await renderGroups();
      } catch (error) { toast(message(error)); }
    };
    const remove = async (userId) => {
      try {
        await api.removeMember(g.id, userId);
        toast(`${userId} removed from ${g.id}`);
        await renderGroups();
      } catch (error) { toast(message(error)); }
    };
    return el('article', { class: 'group', 'data-group': g.id, 'aria-label': `Group ${g.id}` },
      el('h3', { text: g.display_name === g.id ? g.id : `${g.display_name} (${g.id})` }),
      g.members.length
        ? el('ul', { class: 'chips', 'aria-label': `Members of ${g.id}` }, ...g.members.map((m) => el('li', { class: 'chip' },
          el('span', { text: m }),
          canWrite() ? el('button', { type: 'button', 'aria-label': `Remove ${m} from ${g.id}`, text: '×', onclick: () => remove(m) }) : null)))
        : el('p', { class: 'muted small', text: 'No members yet.' }),
      canWrite() ? el('form', { class: 'member-form', onsubmit: add }, input,
        el('button', { type: 'submit', class: 'secondary small-btn', text: 'Add member', 'aria-label': `Add member to ${g.id}` })) : null);
  });
  $('group-list').replaceChildren(...(cards.length ? cards : [el('p', { class: 'muted', text: 'No groups yet.' })]));
}

async function createGroup(event) {
  event.preventDefault();
  const id = $('group-id').value.trim();
  try {
    await api.createGroup({ id, display_name: $('group-name').value.trim() || undefined });
    $('group-id').value = '';
    $('group-name').value = '';
    toast(`Group ${id} created`);
    await renderGroups();
  } catch (error) { toast(message(error)); }
}

// ------------------------------------------------------------------------------ audit

/** The audit view's filter as the API takes it; the times from the local-time inputs. */
function auditFilter() {
  const time = (id) => {
    const value = $(id).value;
    return value ? new Date(value).getTime() : undefined;
  };
  return {
    actor: $('audit-actor').value.trim(),
    action: $('audit-action').value.trim(),
    since_ms: time('audit-since'),
    until_ms: time('audit-until'),
  };
}

export async function renderAudit() {
  const filter = auditFilter();
  const entries = await api.audit(filter, 200);
  $('audit-table').querySelector('tbody').replaceChildren(...entries.map((e) => el('tr', {},
    el('td', { text: when(e.at_ms) }),
    el('td', { text: e.actor }),
    el('td', {}, el('code', { text: e.action })),
    el('td', { class: 'wrap', text: e.detail }),
    el('td', { class: 'opt', text: e.client ?? '' }))));
  const filtered = Object.values(filter).some((value) => value !== undefined && value !== '');
  if (!entries.length) emptyRow('audit-table', 5, filtered ? 'No entry matches the filter.' : 'Nothing has been changed yet.');
}

/** Downloads the filtered log as `audit.csv` or `audit.json`. @param {'csv' | 'json'} format */
async function exportAudit(format) {
  try {
    const { blob, truncated } = await api.auditExport(format, auditFilter());
    saveBlob(blob, `audit.${format}`);
    $('audit-export-note').textContent = truncated
      ? 'More entries matched than one export holds (100,000): the oldest were left out. Narrow the time range to export them.'
      : '';
  } catch (error) { toast(message(error)); }
}

/** Wires the views' own controls (once, at start). */
export function wireViews() {
  $('new-user-btn').addEventListener('click', openNewUser);
  $('user-form').addEventListener('submit', saveUser);
  $('u-cancel').addEventListener('click', () => $('user-dialog').close());
  $('u-delete').addEventListener('click', deleteUser);
  $('u-reset').addEventListener('click', resetPassword);
  let timer = 0;
  $('user-search').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      searchText = $('user-search').value.trim();
      renderUsers().catch((error) => toast(message(error)));
    }, 250);
  });
  $('user-search-form').addEventListener('submit', (event) => event.preventDefault());
  $('group-form').addEventListener('submit', createGroup);
  $('audit-refresh').addEventListener('click', () => renderAudit().catch((error) => toast(message(error))));
  $('audit-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    renderAudit().catch((error) => toast(message(error)));
  });
  $('audit-export-csv').addEventListener('click', () => exportAudit('csv'));
  $('audit-export-json').addEventListener('click', () => exportAudit('json'));
}
