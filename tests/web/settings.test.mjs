// Drives the console's "Settings" view through ucweb (two UCServers behind it) in headless
// Chromium: both servers confirm the configuration they run with; a value out of bounds is
// refused with the server's reason and nothing changes; a cluster-wide change is seen applied
// on both servers, a per-server override on its server only; an edit made from an old
// version is refused naming who changed the value meanwhile. Started by run.sh.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const URL = process.env.UC_WEB_URL ?? 'http://localhost:8090';
const ADMIN_PASSWORD = process.env.UC_TEST_ADMIN_PASSWORD;
const SHOTS = process.env.UC_TEST_SCREENSHOTS ?? new globalThis.URL('./screenshots', import.meta.url).pathname;
const DESKTOP = { width: 1280, height: 900 };
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const KEY = 'ring_timeout_ms';

let browser;
const errors = [];

async function openSettings(name) {
  const context = await browser.newContext({ viewport: DESKTOP, locale: 'en-US' });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    // Refused edits (400, 409) are answers the view shows, not failures of the page.
    if (m.type() === 'error' && !/status of (400|409)/.test(m.text())) errors.push(`${name} console: ${m.text()}`);
  });
  await page.goto(`${URL}/admin/`);
  const form = page.locator('#login-form');
  await form.getByLabel('User name').fill('admin');
  await form.getByLabel('Password').fill(ADMIN_PASSWORD);
  await form.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#app-view').waitFor();
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.locator(`#settings-table tr[data-setting="${KEY}"]`).waitFor();
  return page;
}

const cell = (page, server) => page.locator(`#settings-table tr[data-setting="${KEY}"] td[data-server="${server}"]`);
const shot = (page, name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

async function edit(page, scope, value) {
  const form = page.locator('#setting-form');
  await form.getByLabel('Setting').selectOption(KEY);
  await form.getByLabel('Scope').selectOption(scope);
  await form.getByLabel('Value').fill(String(value));
  await form.getByRole('button', { name: 'Save' }).click();
}

/** Waits until `server` shows `value` from `source` and confirms it applied it. */
async function applied(page, server, value, source) {
  await cell(page, server).filter({ hasText: String(value) }).filter({ hasText: source }).filter({ hasText: 'applied' })
    .waitFor({ timeout: 15_000 });
}

describe('runtime settings in the console through ucweb', () => {
  before(async () => {
    assert.ok(ADMIN_PASSWORD, 'UC_TEST_ADMIN_PASSWORD must be set (run.sh sets it)');
    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ARGS, timeout: 30_000 });
  });

  after(async () => {
    await browser?.close();
    assert.deepEqual(errors, [], 'no page errors');
  });

  it('changes apply on both servers, bad values and stale edits are refused', async () => {
    const page = await openSettings('admin');
    for (const server of ['s1', 's2']) {
      await page.locator(`#settings-servers li[data-server="${server}"]`).filter({ hasText: 'up to date' }).waitFor();
    }
    const before = await page.locator('#settings-revision').textContent();

    // Out of bounds: the server's reason, and nothing changes anywhere.
    await edit(page, 'global', 10);
    await page.locator('#setting-error').filter({ hasText: 'between 1000 and 600000' }).waitFor();
    assert.equal(await page.locator('#settings-revision').textContent(), before);
    for (const server of ['s1', 's2']) assert.match(await cell(page, server).textContent(), /configuration/);
    await shot(page, 'console-settings-refused');

    // Cluster-wide: both servers confirm it.
    await edit(page, 'global', 20000);
    await applied(page, 's1', 20000, 'cluster-wide');
    await applied(page, 's2', 20000, 'cluster-wide');
    assert.equal(await page.locator('#setting-error').textContent(), '');

    // An override for s2 only.
    await edit(page, 's2', 15000);
    await applied(page, 's2', 15000, 'this server');
    await applied(page, 's1', 20000, 'cluster-wide');
    await shot(page, 'console-settings-applied');

    // Another administrator's page, filled from the current version, is refused after a
    // change made meanwhile, and told who made it.
    const other = await openSettings('other');
    await other.locator('#setting-form').getByLabel('Setting').selectOption(KEY);
    await other.locator('#setting-form').getByLabel('Scope').selectOption('global');
    await other.locator('#s-version').filter({ hasText: 'version 1' }).waitFor();
    await edit(page, 'global', 25000);
    await applied(page, 's1', 25000, 'cluster-wide');
    await other.locator('#setting-form').getByLabel('Value').fill('26000');
    await other.locator('#setting-form').getByRole('button', { name: 'Save' }).click();
    const conflict = other.locator('#setting-conflict');
    await conflict.filter({ hasText: 'someone else changed this setting' }).waitFor();
    assert.match(await conflict.textContent(), /by admin .*now version 2; you edited version 1/);
    await shot(other, 'console-settings-conflict');
    await conflict.getByRole('button', { name: 'Load the current value' }).click();
    await other.locator('#s-version').filter({ hasText: 'version 2' }).waitFor();
    assert.equal(await other.locator('#s-value').inputValue(), '25000');
    await other.context().close();

    // Removing both values brings each server back to its configuration.
    const form = page.locator('#setting-form');
    await form.getByLabel('Scope').selectOption('s2');
    await form.getByRole('button', { name: 'Remove value' }).click();
    await applied(page, 's2', 25000, 'cluster-wide');
    await form.getByLabel('Scope').selectOption('global');
    await form.getByRole('button', { name: 'Remove value' }).click();
    await applied(page, 's1', 30000, 'configuration');
    await applied(page, 's2', 30000, 'configuration');
    await page.context().close();
  });
});
