// Drives the web client through ucweb as two users (alice on two devices, bob) in headless
// Chromium. Started by run.sh, which provides the server, the users and these variables.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const URL = process.env.UC_WEB_URL ?? 'http://localhost:8090';
const PASSWORD = process.env.UC_TEST_PASSWORD;
const SHOTS = process.env.UC_TEST_SCREENSHOTS ?? new globalThis.URL('./screenshots', import.meta.url).pathname;
const WAIT = 10_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 812 };

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
];

let browser;
const pages = {};
const errors = [];

async function newDevice(name, viewport) {
  // Each context is a fresh profile: its own sessionStorage, so its own device.
  const context = await browser.newContext({ viewport, locale: 'en-US' });
  await context.grantPermissions(['notifications'], { origin: URL });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${name} console: ${m.text()}`); });
  await page.goto(URL);
  return page;
}

async function signIn(page, user) {
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#app-view').waitFor({ state: 'visible' });
  await page.locator('#banner').waitFor({ state: 'hidden' }); // hello arrived
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png` });
}

const messageIn = (page, text) => page.locator('#message-list .msg .body', { hasText: text });

describe('web client through ucweb', () => {
  before(async () => {
    assert.ok(PASSWORD, 'UC_TEST_PASSWORD must be set (run.sh sets it)');
    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ARGS,
      timeout: 30_000,
    });
  });

  after(async () => {
    await browser?.close();
  });

  it('serves the client and signs in two users', async () => {
    pages.alice = await newDevice('alice', DESKTOP);
    await shot(pages.alice, 'desktop-login');
    // A wrong password is refused with a readable message.
    await pages.alice.getByLabel('User name').fill('alice');
    await pages.alice.getByLabel('Password').fill('wrong-password');
    await pages.alice.getByRole('button', { name: 'Sign in' }).click();
    await pages.alice.locator('#login-error').filter({ hasText: 'Wrong user name or password' }).waitFor();
    await signIn(pages.alice, 'alice');
    pages.bob = await newDevice('bob', DESKTOP);
    await signIn(pages.bob, 'bob');
    assert.equal(await pages.alice.locator('#me-name').textContent(), 'Alice Anders');
    assert.equal(await pages.bob.locator('#me-name').textContent(), 'Bob Berger');
  });

  it('bob adds alice through the directory and sees her presence change', async () => {
    const bob = pages.bob;
    await bob.getByLabel('Search the directory').fill('ali');
    await bob.getByRole('button', { name: 'Add Alice Anders to contacts' }).click();
    const row = bob.locator('#contact-list li.contact[data-user="alice"]');
    await row.waitFor();
    await row.and(bob.locator('[data-availability="available"]')).waitFor();
    await bob.getByLabel('Search the directory').fill('');
    await bob.locator('#dir-results li').first().waitFor({ state: 'detached' });

    const alice = pages.alice;
    await alice.getByLabel('My availability').selectOption('busy');
    await alice.getByLabel('Status note').fill('In the quarterly review');
    await alice.getByLabel('Status note').press('Enter');
    await row.and(bob.locator('[data-availability="busy"]')).waitFor();
    await row.filter({ hasText: 'In the quarterly review' }).waitFor();
    assert.match(await row.textContent(), /Busy/);
    await shot(bob, 'desktop-contacts');

    // alice adds bob too, so she can start the chat from her contact list.
    await alice.getByLabel('Search the directory').fill('bob');
    await alice.getByRole('button', { name: 'Add Bob Berger to contacts' }).click();
    await alice.locator('#contact-list li.contact[data-user="bob"]').waitFor();
    await alice.getByLabel('Search the directory').fill('');
  });

  it('chats both ways with unread count, typing indicator and read ticks', async () => {
    const { alice, bob } = pages;
    await alice.getByRole('button', { name: /^Chat with Bob Berger/ }).click();
    await alice.getByLabel('Message', { exact: true }).fill('Hello Bob, got a minute?');
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    await messageIn(alice, 'Hello Bob, got a minute?').waitFor();
    assert.equal(await alice.getByLabel('Message', { exact: true }).inputValue(), '', 'Enter sends and clears');

    // bob has not opened it: one unread in the tab title and on the conversation.
    await bob.waitForFunction(() => document.title === '(1) Switchboard', null, { timeout: WAIT });
    await bob.getByRole('tab', { name: /Chats/ }).click();
    const conv = bob.locator('#conv-list li[data-conv="d:alice:bob"]');
    await conv.locator('.badge', { hasText: '1' }).waitFor();
    await conv.getByRole('button').click();
    await messageIn(bob, 'Hello Bob, got a minute?').waitFor();
    await bob.waitForFunction(() => document.title === 'Switchboard', null, { timeout: WAIT });
    assert.equal(await conv.locator('.badge').count(), 0);

    // alice sees that bob read it.
    await alice.locator('.msg.mine .tick.read').first().waitFor();
    assert.match(await alice.locator('.msg.mine .tick').first().getAttribute('aria-label'), /Read by Bob/);

    // bob types: alice sees the indicator; Shift+Enter makes a new line, Enter sends.
    const input = bob.getByLabel('Message', { exact: true });
    await input.pressSequentially('Sure', { delay: 20 });
    await alice.locator('#typing').filter({ hasText: 'Bob Berger is typing' }).waitFor();
    await input.press('Shift+Enter');
    await input.pressSequentially('what is up?', { delay: 5 });
    assert.equal(await input.inputValue(), 'Sure\nwhat is up?');
    await input.press('Enter');
    const reply = messageIn(alice, 'what is up?');
    await reply.waitFor();
    assert.equal(await reply.textContent(), 'Sure\nwhat is up?');
    await alice.locator('#typing').filter({ hasText: /^$/ }).waitFor();
    await shot(alice, 'desktop-chat');
    await shot(bob, 'desktop-chat-bob');
  });

  it('creates a group conversation', async () => {
    const { alice, bob } = pages;
    await alice.getByRole('tab', { name: /Chats/ }).click();
    await alice.getByRole('button', { name: 'New group' }).click();
    await alice.getByLabel('Name', { exact: true }).fill('Launch team');
    await alice.getByRole('checkbox', { name: 'Bob Berger' }).check();
    await shot(alice, 'desktop-group-dialog');
    await alice.getByRole('button', { name: 'Create' }).click();
    await alice.locator('#chat-name', { hasText: 'Launch team' }).waitFor();
    await alice.getByLabel('Message', { exact: true }).fill('Welcome to the launch team');
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    await messageIn(alice, 'Welcome to the launch team').waitFor();
    await bob.locator('#conv-list li', { hasText: 'Launch team' }).waitFor();
  });

  it("alice's second device shows the same messages and keeps read state in step", async () => {
    const { alice, bob } = pages;
    const alice2 = pages.alice2 = await newDevice('alice2', DESKTOP);
    await signIn(alice2, 'alice');
    await alice2.getByRole('tab', { name: /Chats/ }).click();
    await alice2.locator('#conv-list li', { hasText: 'Launch team' }).waitFor();
    await alice2.locator('#conv-list li[data-conv="d:alice:bob"]').getByRole('button').click();
    await messageIn(alice2, 'Hello Bob, got a minute?').waitFor();
    await messageIn(alice2, 'what is up?').waitFor();
    // alice2 goes to the group; alice (device 1) is in the group too. bob writes 1:1.
    await alice2.locator('#conv-list li', { hasText: 'Launch team' }).getByRole('button').click();
    await bob.getByLabel('Message', { exact: true }).fill('Are you both there?');
    await bob.getByLabel('Message', { exact: true }).press('Enter');
    for (const page of [alice, alice2]) {
      await page.locator('#conv-list li[data-conv="d:alice:bob"] .badge', { hasText: '1' }).waitFor();
      await page.waitForFunction(() => document.title === '(1) Switchboard', null, { timeout: WAIT });
    }
    // Reading it on the second device clears it on the first.
    await alice2.locator('#conv-list li[data-conv="d:alice:bob"]').getByRole('button').click();
    await messageIn(alice2, 'Are you both there?').waitFor();
    await alice.waitForFunction(() => document.title === 'Switchboard', null, { timeout: WAIT });
    assert.equal(await alice.locator('#conv-list li[data-conv="d:alice:bob"] .badge').count(), 0);
    // And alice's own message from device 2 shows on device 1.
    await alice2.getByLabel('Message', { exact: true }).fill('Yes, from my laptop');
    await alice2.getByLabel('Message', { exact: true }).press('Enter');
    await alice.locator('#conv-list li[data-conv="d:alice:bob"]').getByRole('button').click();
    await messageIn(alice, 'Yes, from my laptop').waitFor();
    await messageIn(bob, 'Yes, from my laptop').waitFor();
  });

  it('reconnects after a drop and loses no message', async () => {
    const { alice, bob } = pages;
    // Drop alice's socket and hold the retry for ~4 s; bob writes meanwhile.
    await alice.evaluate(() => { window.switchboard.state.backoff = 3; window.switchboard.reconnect(); });
    await alice.locator('#banner', { hasText: 'reconnecting' }).waitFor();
    await bob.getByLabel('Message', { exact: true }).fill('Sent while you were away');
    await bob.getByLabel('Message', { exact: true }).press('Enter');
    await messageIn(bob, 'Sent while you were away').waitFor();
    await alice.locator('#banner').waitFor({ state: 'hidden', timeout: 15_000 });
    await messageIn(alice, 'Sent while you were away').waitFor();
    assert.equal(await messageIn(alice, 'Sent while you were away').count(), 1, 'no duplicate after sync');
  });

  it('shows the journal', async () => {
    const { alice } = pages;
    await alice.getByRole('tab', { name: 'Journal' }).click();
    await alice.locator('#journal-list li').first().waitFor();
    await shot(alice, 'desktop-journal');
  });

  it('works at phone width with a back button', async () => {
    const phone = pages.phone = await newDevice('bob-phone', PHONE);
    await shot(phone, 'phone-login');
    await signIn(phone, 'bob');
    await phone.locator('#contact-list li.contact[data-user="alice"]').waitFor();
    assert.equal(await phone.locator('#pane').isVisible(), false, 'one column on a phone');
    await shot(phone, 'phone-contacts');
    await phone.getByRole('tab', { name: /Chats/ }).click();
    await phone.locator('#conv-list li[data-conv="d:alice:bob"]').waitFor();
    await shot(phone, 'phone-chats');
    await phone.locator('#conv-list li[data-conv="d:alice:bob"]').getByRole('button').click();
    await messageIn(phone, 'Hello Bob, got a minute?').waitFor();
    assert.equal(await phone.locator('#side').isVisible(), false);
    await shot(phone, 'phone-chat');
    await phone.getByRole('button', { name: 'Back' }).click();
    await phone.locator('#conv-list').waitFor({ state: 'visible' });
  });

  it('switches to German and signs out', async () => {
    const { phone } = pages;
    await phone.getByRole('button', { name: 'Deutsch' }).first().click();
    await phone.getByRole('tab', { name: 'Kontakte' }).waitFor();
    await shot(phone, 'phone-contacts-de');
    await phone.getByRole('tab', { name: 'Kontakte' }).click();
    await phone.getByRole('button', { name: 'Abmelden' }).click();
    await phone.getByRole('button', { name: 'Anmelden' }).waitFor();
  });

  it('every visible control has an accessible name and no page error happened', async () => {
    const unnamed = await pages.alice.evaluate(() => [...document.querySelectorAll('button, input, select, textarea, [role=tab]')]
      .filter((n) => n.offsetParent !== null)
      .filter((n) => !(n.getAttribute('aria-label') || n.labels?.length || n.textContent.trim() || n.getAttribute('aria-labelledby')))
      .map((n) => n.outerHTML.slice(0, 80)));
    assert.deepEqual(unnamed, []);
    assert.deepEqual(errors.filter((e) => !/401|Failed to load resource/.test(e)), []);
  });
});
