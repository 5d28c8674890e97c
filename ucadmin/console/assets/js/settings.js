// The "Settings" view: every runtime setting with, per server, the value it should run with,
// where that comes from (its own override, the cluster-wide value, its configuration) and
// whether the server confirmed it applied it. A full administrator edits a value for the
// cluster or one server; the server's reason for a refused value is shown, and an edit made
// from an old version is refused naming who changed the value meanwhile.
import * as api from './api.js';
import { $, el, when, pill } from './dom.js';
import { ui } from './views.js';

/** The last view drawn: the form takes keys, scopes and versions from it. */
let shown = null;
/** What the form edits: the setting, the scope and the version it was filled from. */
let editing = null;

const text = (value) => (value === undefined || value === null ? '—' : JSON.stringify(value));

/** The stored value of `setting` in `scope`, if any. */
function stored(setting, scope) {
  if (scope === 'global') return setting.global ?? null;
  return setting.overrides.find((o) => o.scope === scope) ?? null;
}

export async function renderSettings() {
  const view = await api.settings();
  shown = view;
  $('settings-revision').textContent = `Revision ${view.revision}`;
  $('settings-servers').replaceChildren(...view.servers.map((s) => el('li', { 'data-server': s.server },
    el('strong', { class: 'grow', text: s.server }),
    s.alive ? null : pill('down', 'not beating'),
    s.revision === view.revision ? pill('ok', 'up to date') : pill('down', s.revision == null ? 'not reported' : 'not yet'),
    el('span', { class: 'small', text: s.revision == null ? 'has not reported' : `applied revision ${s.revision} at ${when(s.applied_ms)}` }),
    ...s.refused.map((r) => el('span', { class: 'error small', text: `refused ${r.key}: ${r.reason}` })))));

  const head = $('settings-table').querySelector('thead tr');
  head.replaceChildren(el('th', { text: 'Setting' }), el('th', { text: 'Cluster-wide' }),
    ...view.servers.map((s) => el('th', { text: s.server })));
  $('settings-table').querySelector('tbody').replaceChildren(...view.settings.map((setting) => el('tr', { 'data-setting': setting.key },
    el('td', {}, el('strong', { text: setting.key }), el('div', { class: 'muted small', text: `${setting.description} (${setting.min}–${setting.max})` }),
      setting.applies_live ? null : el('div', { class: 'error small', text: `restart ${setting.restart} to apply` })),
    el('td', { text: setting.global ? `${text(setting.global.value)} (v${setting.global.version})` : '—' }),
    ...setting.servers.map((on) => el('td', { 'data-server': on.server },
      el('div', { class: 'value', text: text(on.effective) }),
      el('div', { class: 'muted small', text: on.source === 'server' ? 'this server' : on.source === 'global' ? 'cluster-wide' : 'configuration' }),
      on.applied ? pill('ok', 'applied') : pill('down', on.running === undefined ? 'not reported' : `running ${text(on.running)}`))))));

  const canChange = ui.role === 'full';
  $('setting-form').hidden = !canChange;
  if (!canChange) return;
  const keys = $('s-key');
  if (keys.options.length !== view.settings.length) {
    keys.replaceChildren(...view.settings.map((s) => el('option', { value: s.key, text: s.key })));
    $('s-scope').replaceChildren(el('option', { value: 'global', text: 'Cluster-wide' }),
      ...view.servers.map((s) => el('option', { value: s.server, text: `Only ${s.server}` })));
    fill();
  }
}

/** Fills the form from the view for the chosen setting and scope (and its version). */
function fill() {
  const setting = shown?.settings.find((s) => s.key === $('s-key').value);
  if (!setting) return;
  const scope = $('s-scope').value;
  const value = stored(setting, scope);
  editing = { key: setting.key, scope, version: value?.version ?? 0 };
  $('s-value').value = value ? text(value.value) : '';
  $('s-value').placeholder = `default ${text(setting.default)}`;
  $('s-version').textContent = value ? `version ${value.version}` : 'not set';
  $('s-unset').disabled = !value;
  $('setting-error').textContent = '';
  $('setting-conflict').hidden = true;
}

/** Shows who changed the value meanwhile; the edit stays in the form until reloaded. */
function showConflict(error) {
  const current = error.body?.current;
  const who = current?.changed_by ? ` by ${current.changed_by}` : '';
  const at = current?.changed_ms ? ` at ${when(current.changed_ms)}` : '';
  $('setting-conflict').replaceChildren(
    el('strong', { text: 'Not saved: someone else changed this setting meanwhile.' }),
    el('span', { text: `Changed${who}${at} (now version ${current?.version ?? '?'}; you edited version ${editing?.version ?? '?'}).` }),
    el('button', { type: 'button', class: 'secondary small-btn', text: 'Load the current value',
      onclick: async () => { await renderSettings(); fill(); } }));
  $('setting-conflict').hidden = false;
}

async function act(change) {
  $('setting-error').textContent = '';
  $('setting-conflict').hidden = true;
  try {
    await change();
    await renderSettings();
    fill();
  } catch (error) {
    if (error.code === 'conflict' && error.body?.current) showConflict(error);
    else $('setting-error').textContent = error.message;
  }
}

export function wireSettings() {
  $('s-key').addEventListener('change', fill);
  $('s-scope').addEventListener('change', fill);
  $('setting-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (!editing) return;
    const raw = $('s-value').value.trim();
    // A number as such; anything else goes as text, and the server says why it refuses it.
    let value = raw;
    try { value = JSON.parse(raw); } catch { /* text */ }
    act(() => api.putSetting(editing.key, editing.scope, value, editing.version));
  });
  $('s-unset').addEventListener('click', () => {
    if (editing) act(() => api.deleteSetting(editing.key, editing.scope, editing.version));
  });
}
