// Drives the UCAdmin console through ucweb (two UCServers behind it) in headless Chromium:
// the overview shows both servers, a user is created, two administrators edit the same user
// and the slower one is told who changed it meanwhile while the other console shows the change
// at once (the live channel), the overview's charts of the last hour, an import file is previewed (bad rows
// named by line, nothing applied) then applied and the users exported, and a read-only
// administrator is offered nothing to change; the servers view with a confirmed action and a
// MediaServer added and removed, a user moved, disabled and deleted, one of
// a user's two web-client tabs signed out by an administrator, and the presence viewer. Started
// by run.sh, which provides the lab, UC_TEST_ADMIN_PASSWORD and UC_TEST_PASSWORD.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const URL = process.env.UC_WEB_URL ?? 'http://localhost:8090';
const ADMIN_PASSWORD = process.env.UC_TEST_ADMIN_PASSWORD;
const SHOTS = process.env.UC_TEST_SCREENSHOTS ?? new globalThis.URL('./screenshots', import.meta.url).pathname;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let browser;
const errors = [];

async function open(name, viewport, path = '/admin/') {
  const context = await browser.newContext({ viewport, locale: 'en-US' });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    // A refused edit is an answer the console shows, not a failure of the page.
    if (m.type() === 'error' && !/status of 409/.test(m.text())) errors.push(`${name} console: ${m.text()}`);
  });
  await page.goto(URL + path);
  return page;
}

async function signIn(page, user, password) {
  const form = page.locator('#login-form');
  await form.getByLabel('User name').fill(user);
  await form.getByLabel('Password').fill(password);
  await form.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#app-view').waitFor();
}

const shot = (page, name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
const dialog = (page) => page.getByRole('dialog');

async function createUser(page, { id, display, home, role }) {
  await page.getByRole('link', { name: 'Users' }).click();
  await page.getByRole('button', { name: 'New user' }).click();
  const form = dialog(page);
  await form.getByLabel('User id').fill(id);
  await form.getByLabel('Password').fill(`${id}-password-1`);
  await form.getByLabel('Display name').fill(display);
  await form.getByLabel('Home server').selectOption(home);
  await form.getByLabel('Administrator role').selectOption(role);
  await form.getByRole('button', { name: 'Save' }).click();
  await form.waitFor({ state: 'hidden' });
  await page.locator(`#users-table tr[data-user="${id}"]`).waitFor();
}

describe('admin console through ucweb', () => {
  const pages = {};

  before(async () => {
    assert.ok(ADMIN_PASSWORD, 'UC_TEST_ADMIN_PASSWORD must be set (run.sh sets it)');
    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ARGS, timeout: 30_000 });
  });

  after(async () => {
    await browser?.close();
    assert.deepEqual(errors, [], 'no page errors');
  });

  it('an admin in the web client finds the console', async () => {
    const page = await open('admin-client', DESKTOP, '/');
    await page.getByLabel('User name').fill('admin');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const link = page.getByRole('link', { name: 'Admin console' });
    await link.click();
    await page.waitForURL(/\/admin\/$/);
    await page.locator('#login-form').waitFor();
    await page.context().close();
  });

  it('the overview shows both UCServers, the MediaServers and health', async () => {
    const page = pages.admin = await open('admin', DESKTOP);
    await shot(page, 'console-desktop-login');
    await signIn(page, 'admin', ADMIN_PASSWORD);
    for (const id of ['s1', 's2']) {
      await page.locator(`#servers-table tr[data-server="${id}"]`).filter({ hasText: 'alive' }).waitFor();
    }
    await page.locator('#media-table tr[data-media="m1"]').waitFor();
    await page.getByRole('list', { name: 'Health' }).getByText('SQL database').waitFor();
    assert.equal(await page.locator('#who-role').textContent(), 'Full admin');
    // The overview polls: its time stamp moves on by itself.
    const first = await page.locator('#overview-updated').textContent();
    await page.waitForFunction((text) => document.getElementById('overview-updated').textContent !== text, first, { timeout: 12_000 });
    // The live channel is open, and the charts of the last hour show both servers' samples.
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
    const memory = page.getByRole('img', { name: /^Memory over the last hour/ });
    await page.waitForFunction(() => {
      const label = document.querySelector('[data-chart="Memory"]')?.getAttribute('aria-label') ?? '';
      return /s1 \d+ MiB/.test(label) && /s2 \d+ MiB/.test(label);
    }, null, { timeout: 15_000 });
    assert.match(await memory.getAttribute('aria-label'), /s1 \d+ MiB, s2 \d+ MiB/);
    await page.getByRole('img', { name: /^Devices over the last hour/ }).waitFor();
    await page.getByText('Events in held batches').waitFor();
    await shot(page, 'console-desktop-overview');
  });

  it('creates users with roles', async () => {
    const page = pages.admin;
    await createUser(page, { id: 'dave', display: 'Dave Dunn', home: 's2', role: '' });
    await createUser(page, { id: 'fiona', display: 'Fiona Full', home: 's1', role: 'full' });
    await createUser(page, { id: 'hazel', display: 'Hazel Help', home: 's1', role: 'read_only' });
    const dave = page.locator('#users-table tr[data-user="dave"]');
    assert.match(await dave.textContent(), /Dave Dunn.*s2/);
    assert.match(await page.locator('#users-table tr[data-user="hazel"]').textContent(), /Read-only/);
    await page.getByLabel('Search users').fill('haz');
    await page.locator('#users-table tr[data-user="dave"]').waitFor({ state: 'detached' });
    await page.getByLabel('Search users').fill('');
    await dave.waitFor();
    await shot(page, 'console-desktop-users');
  });

  it('a stale edit is refused and says who changed the user meanwhile', async () => {
    const admin = pages.admin;
    await admin.getByRole('button', { name: 'Edit dave' }).click();
    await dialog(admin).getByText(/^Version 1,/).waitFor();

    const fiona = pages.fiona = await open('fiona', DESKTOP);
    await signIn(fiona, 'fiona', 'fiona-password-1');
    await fiona.getByRole('link', { name: 'Users' }).click();
    await fiona.getByRole('button', { name: 'Edit dave' }).click();
    await dialog(fiona).getByLabel('Display name').fill('Dave by Fiona');
    await dialog(fiona).getByRole('button', { name: 'Save' }).click();
    await dialog(fiona).waitFor({ state: 'hidden' });

    await dialog(admin).getByLabel('Display name').fill('Dave by Admin');
    await dialog(admin).getByRole('button', { name: 'Save' }).click();
    const conflict = dialog(admin).getByRole('alert').filter({ hasText: 'someone else changed this user' });
    await conflict.waitFor();
    assert.match(await conflict.textContent(), /by fiona .*now version 2; you edited version 1/);
    await shot(admin, 'console-desktop-conflict');
    await conflict.getByRole('button', { name: 'Load the current version' }).click();
    await dialog(admin).getByText(/^Version 2,/).waitFor();
    assert.equal(await dialog(admin).getByLabel('Display name').inputValue(), 'Dave by Fiona');
    await dialog(admin).getByRole('button', { name: 'Close' }).click();
  });

  it('another open console shows a change at once, and who made it', async () => {
    const admin = pages.admin;
    const fiona = pages.fiona;
    await fiona.getByRole('status').filter({ hasText: 'Live' }).waitFor();
    await admin.getByRole('button', { name: 'Edit dave' }).click();
    await dialog(admin).getByLabel('Display name').fill('Dave Dunn');
    await dialog(admin).getByRole('button', { name: 'Save' }).click();
    await dialog(admin).waitFor({ state: 'hidden' });
    // Fiona's users view was not reloaded by her: the live channel redrew it.
    await fiona.locator('#users-table tr[data-user="dave"]').filter({ hasText: 'Dave Dunn' }).waitFor();
    await fiona.locator('#toast').filter({ hasText: /^admin: user\.update dave/ }).waitFor();
    await shot(fiona, 'console-desktop-live-change');
  });

  it('groups and the audit log', async () => {
    const page = pages.admin;
    await page.getByRole('link', { name: 'Groups' }).click();
    await page.getByLabel('New group id').fill('night-shift');
    await page.getByLabel('Display name', { exact: true }).first().fill('Night shift');
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.getByLabel('User to add to night-shift').fill('dave');
    await page.getByRole('button', { name: 'Add member to night-shift' }).click();
    await page.getByRole('list', { name: 'Members of night-shift' }).getByText('dave').waitFor();
    await page.getByRole('link', { name: 'Audit log' }).click();
    const rows = page.locator('#audit-table tbody tr');
    await rows.filter({ hasText: 'group.member.add' }).filter({ hasText: 'night-shift dave' }).waitFor();
    await rows.filter({ hasText: 'fiona' }).filter({ hasText: 'display_name=Dave by Fiona' }).waitFor();
    await shot(page, 'console-desktop-audit');

    // Filtered to one administrator's group changes, then downloaded as CSV.
    const filter = page.getByRole('search', { name: 'Filter the audit log' });
    await filter.getByLabel('Administrator').fill('admin');
    await filter.getByLabel('Action starts with').fill('group.');
    await filter.getByRole('button', { name: 'Filter' }).click();
    const byFiona = rows.filter({ hasText: 'display_name=Dave by Fiona' });
    await byFiona.waitFor({ state: 'detached' });
    await rows.filter({ hasText: 'group.member.add' }).first().waitFor();
    const actions = await page.locator('#audit-table tbody tr td:nth-child(3)').allTextContents();
    assert.ok(actions.length > 0 && actions.every((action) => action.startsWith('group.')), actions.join());
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      filter.getByRole('button', { name: 'Export audit log as CSV' }).click(),
    ]);
    assert.equal(download.suggestedFilename(), 'audit.csv');
    const chunks = [];
    for await (const chunk of await download.createReadStream()) chunks.push(chunk);
    const lines = Buffer.concat(chunks).toString().trimEnd().split('\n');
    assert.equal(lines[0], 'at_ms,time_utc,actor,action,detail,client');
    assert.equal(lines.length - 1, actions.length, lines.join('\n'));
    assert.ok(lines.slice(1).every((line) => /^\d+,\d{4}-\d\d-\d\dT[^,]+Z,admin,group\./.test(line)), lines.join('\n'));
    await filter.getByLabel('Administrator').fill('');
    await filter.getByLabel('Action starts with').fill('');
    await filter.getByRole('button', { name: 'Filter' }).click();
    await byFiona.waitFor();
  });

  it('import dry run: bad rows named by line, nothing applied; a clean file applied; export', async () => {
    const page = pages.admin;
    await page.getByRole('link', { name: 'Import / export' }).click();
    await page.locator('#directory-status').filter({ hasText: 'No directory is configured' }).waitFor();
    const file = page.getByLabel('Import file');
    const csv = (text) => ({ name: 'users.csv', mimeType: 'text/csv', buffer: Buffer.from(text) });
    await file.setInputFiles(csv('id,display_name,groups\nivy,Ivy,night-shift\nivy,Twice,\nBad!,x,\n'));
    const summary = page.locator('#import-summary');
    await summary.filter({ hasText: '2 rows with errors' }).waitFor();
    const errorsTable = page.getByRole('table', { name: 'Rows with errors' });
    assert.match(await errorsTable.locator('tr[data-line="3"]').textContent(), /ivy.*already on line 2/);
    assert.match(await errorsTable.locator('tr[data-line="4"]').textContent(), /Bad!.*not a valid name/);
    assert.ok(await page.getByRole('button', { name: 'Apply' }).isDisabled());
    await shot(page, 'console-desktop-import-errors');

    await file.setInputFiles(csv('id,display_name,groups\nivy,Ivy Imported,night-shift\njack,Jack Imported,\n'));
    await summary.filter({ hasText: 'Plan (nothing changed yet): 2 to create' }).waitFor();
    assert.match(await page.locator('#import-changes tr[data-user="ivy"]').textContent(), /create.*2.*ivy.*groups = night-shift/);
    await page.getByRole('button', { name: 'Apply' }).click();
    await summary.filter({ hasText: 'Applied: 2 to create' }).waitFor();
    const passwords = page.getByRole('table', { name: 'Passwords of the new users' });
    assert.equal(await passwords.locator('tbody tr').count(), 2);
    await shot(page, 'console-desktop-import-applied');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    const chunks = [];
    for await (const chunk of await download.createReadStream()) chunks.push(chunk);
    const exported = Buffer.concat(chunks).toString();
    assert.match(exported, /^id,display_name,home_server,groups,contacts,disabled\n/);
    assert.match(exported, /\nivy,Ivy Imported,s\d,night-shift,,false\n/);
    assert.doesNotMatch(exported, /password|argon2/);

    await page.getByRole('link', { name: 'Users' }).click();
    await page.locator('#users-table tr[data-user="jack"]').waitFor();
  });

  it('a read-only admin is offered nothing to change, also on a phone', async () => {
    const page = await open('hazel', PHONE);
    await shot(page, 'console-phone-login');
    await signIn(page, 'hazel', 'hazel-password-1');
    await page.getByRole('note').filter({ hasText: 'read-only' }).waitFor();
    await page.locator('#servers-table tr[data-server="s2"]').waitFor();
    await shot(page, 'console-phone-overview');
    await page.getByRole('link', { name: 'Users' }).click();
    await page.locator('#users-table tr[data-user="dave"]').waitFor();
    assert.equal(await page.getByRole('button', { name: 'New user' }).count(), 0);
    await shot(page, 'console-phone-users');
    await page.getByRole('button', { name: 'Edit dave' }).click();
    const form = dialog(page);
    await form.getByText(/^Version 3,/).waitFor();
    assert.equal(await form.getByRole('button', { name: 'Save' }).count(), 0);
    assert.equal(await form.getByRole('button', { name: 'Delete user' }).count(), 0);
    assert.ok(await form.getByLabel('Display name').isDisabled());
    await shot(page, 'console-phone-user');
    await form.getByRole('button', { name: 'Close' }).click();
    await page.getByRole('link', { name: 'Groups' }).click();
    await page.getByRole('list', { name: 'Members of night-shift' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Create group' }).count(), 0);
    assert.equal(await page.getByRole('button', { name: /^Remove dave/ }).count(), 0);
    await page.getByRole('link', { name: 'Import / export' }).click();
    await page.getByRole('button', { name: 'Export JSON' }).waitFor();
    assert.equal(await page.locator('#import-file').isVisible(), false);
  });
  it('the servers view shows each UCServer state, and a full admin confirms an action', async () => {
    const page = pages.admin;
    await page.getByRole('link', { name: 'Servers' }).click();
    const table = page.getByRole('table', { name: 'UCServers and their state' });
    for (const id of ['s1', 's2']) await table.locator(`tr[data-server="${id}"]`).filter({ hasText: 'normal' }).waitFor();
    await page.getByRole('table', { name: 'MediaServers and their load' }).locator('tr[data-media="m1"]').waitFor();
    await page.getByRole('button', { name: 'Recover s2' }).click();
    const confirm = dialog(page);
    await confirm.getByText('Drain, hold and fallback of s2 are cleared').waitFor();
    await shot(page, 'console-desktop-servers-confirm');
    await confirm.getByRole('button', { name: 'Recover s2' }).click();
    await confirm.waitFor({ state: 'hidden' });
    await page.getByRole('status').filter({ hasText: 'Recover s2: done' }).waitFor();
    // A MediaServer added by hand (not running: not beating), then removed after a confirmation.
    const media = page.getByRole('table', { name: 'MediaServers and their load' });
    const add = page.getByRole('form', { name: 'Add a MediaServer' });
    await add.getByLabel('MediaServer id').fill('m9');
    await add.getByLabel('Control URL').fill('http://127.0.0.1:9');
    await add.getByRole('button', { name: 'Add MediaServer' }).click();
    await media.locator('tr[data-media="m9"]').filter({ hasText: 'not beating' }).waitFor();
    await shot(page, 'console-desktop-servers');
    await page.getByRole('button', { name: 'Remove m9' }).click();
    await confirm.getByText('No new call goes to m9 any more').waitFor();
    await confirm.getByRole('button', { name: 'Remove m9' }).click();
    await media.locator('tr[data-media="m9"]').waitFor({ state: 'detached' });
    await media.locator('tr[data-media="m1"]').waitFor();
  });

  it('a user moved to another home, disabled, then deleted after a confirmation', async () => {
    const page = pages.admin;
    await createUser(page, { id: 'gus', display: 'Gus Gray', home: 's1', role: '' });
    const row = page.locator('#users-table tr[data-user="gus"]');
    const edit = async (change) => {
      await page.getByRole('button', { name: 'Edit gus' }).click();
      await change(dialog(page));
      await dialog(page).getByRole('button', { name: 'Save' }).click();
      await dialog(page).waitFor({ state: 'hidden' });
    };
    await edit((form) => form.getByLabel('Home server').selectOption('s2'));
    await row.filter({ hasText: 's2' }).waitFor();
    await edit((form) => form.getByLabel('Disabled (cannot sign in)').check());
    await row.filter({ hasText: 'disabled' }).waitFor();
    await page.getByRole('button', { name: 'Edit gus' }).click();
    await dialog(page).getByRole('button', { name: 'Delete user' }).click();
    const sure = page.getByRole('dialog', { name: 'Delete gus?' });
    await sure.getByText('This cannot be undone').waitFor();
    await sure.getByRole('button', { name: 'Delete gus' }).click();
    await row.waitFor({ state: 'detached' });
    await page.getByRole('link', { name: 'Audit log' }).click();
    const audit = page.locator('#audit-table tbody tr');
    await audit.filter({ hasText: 'user.delete' }).filter({ hasText: 'gus' }).waitFor();
    await audit.filter({ hasText: 'user.update' }).filter({ hasText: 'home=s2' }).waitFor();
  });

  it('signs out one device of a user; the other stays signed in', async () => {
    const password = process.env.UC_TEST_PASSWORD;
    assert.ok(password, 'UC_TEST_PASSWORD must be set (run.sh sets it)');
    const devices = [];
    for (const name of ['alice-tab-1', 'alice-tab-2']) {
      const context = await browser.newContext({ viewport: DESKTOP, locale: 'en-US' });
      const tab = await context.newPage();
      tab.setDefaultTimeout(10_000);
      tab.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
      // The kicked tab learns that its session ended from a 401 when it tries again: expected.
      tab.on('console', (m) => {
        if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push(`${name} console: ${m.text()}`);
      });
      await tab.goto(`${URL}/`);
      await tab.getByLabel('User name').fill('alice');
      await tab.getByLabel('Password').fill(password);
      await tab.getByRole('button', { name: 'Sign in' }).click();
      await tab.locator('#app-view').waitFor({ state: 'visible' });
      devices.push({ tab, id: await tab.evaluate(() => sessionStorage.getItem('sb.device')) });
    }
    const page = pages.admin;
    await page.getByRole('link', { name: 'Sessions' }).click();
    const form = page.locator('#sessions-form');
    await form.getByLabel('User', { exact: true }).fill('alice');
    await form.getByRole('button', { name: 'Show devices' }).click();
    const rows = page.getByRole('table', { name: 'Connected devices' }).locator('tbody tr[data-device]');
    for (const device of devices) await rows.and(page.locator(`[data-device="${device.id}"]`)).waitFor();
    assert.match(await page.locator('#sessions-summary').textContent(), /alice is served by s1/);
    // ucweb passes the browser's User-Agent and address on with the WebSocket.
    assert.match(await rows.first().textContent(), /HeadlessChrome.*127\.0\.0\.1/);
    await shot(page, 'console-desktop-sessions');
    const [gone, stays] = devices;
    await page.getByRole('button', { name: `Sign out ${gone.id}` }).click();
    const confirm = dialog(page);
    await confirm.getByText(`alice's other devices stay connected`).waitFor();
    await confirm.getByRole('button', { name: `Sign out ${gone.id}` }).click();
    await page.getByRole('status').filter({ hasText: `${gone.id} of alice signed out on s1` }).waitFor();
    await rows.and(page.locator(`[data-device="${gone.id}"]`)).waitFor({ state: 'detached' });
    await rows.and(page.locator(`[data-device="${stays.id}"]`)).waitFor();
    // The kicked tab is back at the sign-in form; the other is still in.
    await gone.tab.locator('#login-view').waitFor({ state: 'visible', timeout: 20_000 });
    assert.ok(await stays.tab.locator('#app-view').isVisible());
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.locator('#audit-table tbody tr').filter({ hasText: 'user.kick' }).filter({ hasText: `alice device=${gone.id}` }).waitFor();
    for (const device of devices) await device.tab.context().close();
  });

  it('the presence viewer shows what one user sees of another, and why', async () => {
    const page = pages.admin;
    // carol joins dave's group (users the web client's tests have not related otherwise).
    await page.getByRole('link', { name: 'Groups' }).click();
    await page.getByLabel('User to add to night-shift').fill('carol');
    await page.getByRole('button', { name: 'Add member to night-shift' }).click();
    await page.getByRole('list', { name: 'Members of night-shift' }).getByText('carol').waitFor();
    await page.getByRole('link', { name: 'Presence' }).click();
    const form = page.locator('#presence-form');
    await form.getByLabel('User', { exact: true }).fill('dave');
    await form.getByLabel('Seen by').fill('carol');
    await form.getByRole('button', { name: 'Show presence' }).click();
    const seen = page.getByRole('region', { name: 'carol sees dave as' });
    await seen.getByText('Group mate', { exact: true }).waitFor();
    await page.getByRole('table', { name: 'Watchers' }).locator('tr[data-watcher="carol"]').waitFor();
    await shot(page, 'console-desktop-presence');
    await form.getByLabel('Seen by').fill('alice');
    await form.getByRole('button', { name: 'Show presence' }).click();
    const basic = page.getByRole('region', { name: 'alice sees dave as' });
    await basic.getByText('Basic', { exact: true }).waitFor();
    await basic.getByText('Availability only', { exact: true }).waitFor();
    await form.getByLabel('Seen by').fill('fiona');
    await form.getByRole('button', { name: 'Show presence' }).click();
    await page.getByRole('region', { name: 'fiona sees dave as' }).getByText('Administrator', { exact: true }).waitFor();

    // alice made dave's delegate in his user dialog: she sees all of him now, by that rule.
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByRole('button', { name: 'Edit dave' }).click();
    const user = dialog(page);
    await user.getByLabel('User to make a delegate').fill('alice');
    await user.getByRole('button', { name: 'Add delegate' }).click();
    await user.getByRole('list', { name: 'Delegates' }).locator('li[data-delegate="alice"]').waitFor();
    await shot(page, 'console-desktop-delegates');
    await user.getByRole('button', { name: 'Close' }).click();
    await page.getByRole('link', { name: 'Presence' }).click();
    await form.getByLabel('User', { exact: true }).fill('dave');
    await form.getByLabel('Seen by').fill('alice');
    await form.getByRole('button', { name: 'Show presence' }).click();
    await page.getByRole('region', { name: 'alice sees dave as' }).getByText('Delegate', { exact: true }).waitFor();
    // Taken away again: alice is back to the basic view.
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByRole('button', { name: 'Edit dave' }).click();
    await user.getByRole('button', { name: 'Remove delegate alice of dave' }).click();
    await user.getByText('Nobody acts for this user.').waitFor();
    await user.getByRole('button', { name: 'Close' }).click();
  });

  it('a read-only admin sees the servers view and the presence viewer without buttons, on a phone', async () => {
    const page = await open('hazel-phone', PHONE);
    await signIn(page, 'hazel', 'hazel-password-1');
    await page.getByRole('link', { name: 'Servers' }).click();
    await page.getByRole('table', { name: 'UCServers and their state' }).locator('tr[data-server="s2"]').filter({ hasText: 'normal' }).waitFor();
    assert.equal(await page.getByRole('button', { name: /^(Drain|Recover|Hold) s/ }).count(), 0);
    await shot(page, 'console-phone-servers');
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.locator('#sessions-form').getByLabel('User', { exact: true }).fill('bob');
    await page.locator('#sessions-form').getByRole('button', { name: 'Show devices' }).click();
    await page.locator('#sessions-summary').filter({ hasText: 'bob is served by s2' }).waitFor();
    assert.equal(await page.getByRole('button', { name: /^Sign out / }).count(), 0);
    await page.getByRole('link', { name: 'Presence' }).click();
    const form = page.locator('#presence-form');
    await form.getByLabel('User', { exact: true }).fill('dave');
    await form.getByLabel('Seen by').fill('carol');
    await form.getByRole('button', { name: 'Show presence' }).click();
    await page.getByRole('region', { name: 'carol sees dave as' }).getByText('Group mate', { exact: true }).waitFor();
    await shot(page, 'console-phone-presence');
    await page.context().close();
  });
});
