// The "Import / export" view: export buttons (a download of CSV or JSON), and an import that
// always shows its plan first (a dry run: counts, every bad row by line, each change) and
// changes nothing until Apply. A file with bad rows cannot be applied; the server refuses it
// whole anyway.
import * as api from './api.js';
import { $, el, saveBlob, toast, when } from './dom.js';

/** The file chosen, with its content type, until it is applied or replaced. */
let chosen = null;

const KINDS = { create: 'create', update: 'update', deactivate: 'deactivate' };

/** Shows whether a directory is configured and reachable, and the last sync. */
export async function renderTransfer() {
  const s = await api.directoryStatus();
  let text;
  if (!s.configured) text = 'No directory is configured (UC_LDAP_URL): users are made here or imported.';
  else if (s.reachable === false) text = `The directory ${s.url} is DOWN: ${s.error}. Its ${s.users} users keep working; nothing is synced until it answers.`;
  else {
    const last = s.last_counts ? `last sync ${when(s.last_sync_ms)}: ${s.last_counts.create} created, ${s.last_counts.update} updated, ${s.last_counts.deactivate} deactivated` : 'not synced yet';
    text = `The directory ${s.url} is ${s.reachable ? 'reachable' : 'not read yet'}; ${s.users} users come from it; ${last}.`;
  }
  if (s.configured && s.interval_secs > 0) {
    text += ` Synced every ${s.interval_secs} s by ${s.scheduled_on ?? 'no server yet'}.`;
  }
  $('directory-status').textContent = text;
}

export function wireTransfer() {
  $('export-csv').addEventListener('click', () => download('csv'));
  $('export-json').addEventListener('click', () => download('json'));
  $('import-file').addEventListener('change', choose);
  $('import-apply').addEventListener('click', apply);
}

async function download(format) {
  try {
    saveBlob(await api.exportFile(format), `users.${format}`);
  } catch (error) {
    toast(error.message);
  }
}

async function choose() {
  const file = $('import-file').files?.[0];
  if (!file) return;
  const text = await file.text();
  const json = file.name.endsWith('.json') || (!file.name.endsWith('.csv') && text.trimStart().startsWith('{'));
  chosen = { text, type: json ? 'application/json' : 'text/csv' };
  $('import-passwords').hidden = true;
  await plan(true);
}

async function apply() {
  if (!chosen) return;
  $('import-apply').disabled = true;
  await plan(false);
}

/** Sends the chosen file (a dry run, or for real) and draws the answer. */
async function plan(dryRun) {
  try {
    const answer = await api.importFile(chosen.text, chosen.type, dryRun);
    draw(answer);
    if (answer.applied) {
      chosen = null;
      $('import-file').value = '';
      toast('The import was applied.');
    }
  } catch (error) {
    $('import-plan').hidden = false;
    $('import-summary').textContent = `The file cannot be read: ${error.message}`;
    $('import-errors').hidden = true;
    $('import-changes').querySelector('tbody').replaceChildren();
    $('import-apply').disabled = true;
  }
}

function draw(answer) {
  const c = answer.counts;
  $('import-plan').hidden = false;
  const what = answer.applied ? 'Applied' : 'Plan (nothing changed yet)';
  $('import-summary').textContent = `${what}: ${c.create} to create, ${c.update} to update, ${c.deactivate} to deactivate, `
    + `${c.unchanged} unchanged, ${c.errors} rows with errors, ${answer.new_groups.length} new groups.`
    + (c.errors ? ' Correct the rows below and choose the file again: nothing is applied while any row is bad.' : '');
  $('import-errors').hidden = !answer.errors.length;
  $('import-errors').querySelector('tbody').replaceChildren(...answer.errors.map((e) => el('tr', { 'data-line': e.line },
    el('td', { text: e.line || 'file' }),
    el('td', { text: e.user || '' }),
    el('td', { text: e.reason }))));
  $('import-changes').querySelector('tbody').replaceChildren(...answer.changes.slice(0, 500).map((ch) => el('tr', { 'data-user': ch.user },
    el('td', { text: KINDS[ch.kind] || ch.kind }),
    el('td', { text: ch.line ?? '' }),
    el('td', { text: ch.user }),
    el('td', { text: ch.fields.map((f) => (f.from ? `${f.field}: ${f.from} → ${f.to}` : `${f.field} = ${f.to}`)).join('; ') }))));
  const nothing = !answer.changes.length && !answer.new_groups.length;
  $('import-apply').disabled = answer.applied || answer.errors.length > 0 || nothing;
  $('import-passwords').hidden = !answer.passwords?.length;
  $('import-passwords').querySelector('tbody').replaceChildren(...(answer.passwords || []).map((p) => el('tr', {},
    el('td', { text: p.user }), el('td', {}, el('code', { text: p.password })))));
}
