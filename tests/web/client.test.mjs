// Drives the web client through ucweb as three users (alice on two devices, bob, carol) in
// headless Chromium. Started by run.sh, which provides the servers (MediaServers included), the
// users and these variables. Calls use Chromium's fake microphone and camera; their media
// really crosses a MediaServer over loopback, which getStats() on both ends proves.
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
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
  // The MediaServers announce 127.0.0.1: let WebRTC use the loopback interface too.
  '--allow-loopback-in-peer-connection',
];

let browser;
const pages = {};
// Page errors and console errors, "Failed to load resource" included: every request that
// fails is a bug unless a test provokes it and says so with expectFailures.
const errors = [];
let expected = [];
let currentTest = '';

// Lets console errors of one page that match one of `patterns` (tested against the text and
// the URL) happen until the returned function is called.
function expectFailures(name, ...patterns) {
  const entry = { name, patterns };
  expected.push(entry);
  return () => { expected = expected.filter((e) => e !== entry); };
}

/** Sends the lab (web-lab) a command and waits until it prints `answer`. */
async function lab(command, answer) {
  appendFileSync(process.env.UC_LAB_CONTROL, `${command}\n`);
  const deadline = Date.now() + 60_000;
  while (!readFileSync(process.env.UC_LAB_OUTPUT, 'utf8').includes(answer)) {
    assert.ok(Date.now() < deadline, `the lab did not answer ${command}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function newDevice(name, viewport) {
  // Each context is a fresh profile: its own sessionStorage, so its own device.
  const context = await browser.newContext({ viewport, locale: 'en-US' });
  await context.grantPermissions(['notifications'], { origin: URL });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => errors.push(`[${currentTest}] ${name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const line = `[${currentTest}] ${name} console: ${m.text()} (${m.location().url})`;
    if (!expected.some((e) => e.name === name && e.patterns.some((p) => p.test(line)))) errors.push(line);
  });
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

// Visible controls without an accessible name.
function unnamedControls(page) {
  return page.evaluate(() => [...document.querySelectorAll('button, input, select, textarea, [role=tab]')]
    .filter((n) => n.offsetParent !== null)
    .filter((n) => !(n.getAttribute('aria-label') || n.labels?.length || n.textContent.trim() || n.getAttribute('aria-labelledby')))
    .map((n) => n.outerHTML.slice(0, 80)));
}

// What the current call's peer connection received, summed over its m-lines of one kind.
function inbound(page, kind) {
  return page.evaluate(async (kind) => {
    const pc = window.__switchboard.pc;
    if (!pc) return null;
    let packets = 0;
    let frames = 0;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === kind) {
        packets += r.packetsReceived || 0;
        frames += r.framesDecoded || 0;
      }
    });
    return { packets, frames, connection: pc.connectionState };
  }, kind);
}

async function mediaFlows(page, kind) {
  const deadline = Date.now() + 20_000;
  let last = null;
  while (Date.now() < deadline) {
    last = await inbound(page, kind);
    if (last && last.packets > 0 && (kind !== 'video' || last.frames > 0)) return last;
    await page.waitForTimeout(250);
  }
  assert.fail(`no inbound ${kind} RTP on this page: ${JSON.stringify(last)}`);
}

// Waits until `lines` audio m-lines of the current call receive RTP: a conference of three
// hears each of the two others on its own m-line.
async function audioFrom(page, lines) {
  const deadline = Date.now() + 20_000;
  let last = 0;
  while (Date.now() < deadline) {
    last = await page.evaluate(async () => {
      let receiving = 0;
      (await window.__switchboard.pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio' && r.packetsReceived > 0) receiving += 1;
      });
      return receiving;
    });
    if (last >= lines) return;
    await page.waitForTimeout(250);
  }
  assert.fail(`${lines} audio m-lines should receive RTP, ${last} do`);
}

// The call view says connected and its duration counts up.
async function connectedAndCounting(page) {
  await page.locator('#call-view[data-status="connected"]').waitFor();
  const timer = page.locator('#call-timer');
  await timer.filter({ hasText: /^\d+:\d\d$/ }).waitFor();
  const first = await timer.textContent();
  await page.waitForFunction((text) => document.getElementById('call-timer').textContent !== text, first, { timeout: WAIT });
}

const ringingCard = (page, text) => page.locator('#incoming .incoming[data-state="ringing"]', { hasText: text });
const callEnded = (page, text) => page.locator('#call-view[data-status="ended"]', { hasText: text });

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

  beforeEach((t) => { currentTest = t.name; });

  it('serves the client and signs in two users', async () => {
    pages.alice = await newDevice('alice', DESKTOP);
    await shot(pages.alice, 'desktop-login');
    // A wrong password is refused with a readable message (the browser logs the 401).
    const refused = expectFailures('alice', /status of 401 .*\/api\/v1\/login\)$/);
    await pages.alice.getByLabel('User name').fill('alice');
    await pages.alice.getByLabel('Password').fill('wrong-password');
    await pages.alice.getByRole('button', { name: 'Sign in' }).click();
    await pages.alice.locator('#login-error').filter({ hasText: 'Wrong user name or password' }).waitFor();
    refused();
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
    // A device that just loaded the history knows what bob read (GET /conversations/{id}/read).
    assert.match(await alice2.locator('.msg.mine .tick').first().getAttribute('aria-label'), /Read by Bob/);
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

  it('reconnects by itself after her UCServer restarts and loses no message', async () => {
    const { alice, alice2, bob } = pages;
    await alice.locator('#conv-list li[data-conv="d:alice:bob"]').getByRole('button').click();
    // While s1 stops, ucweb may answer a request of alice's in flight with 502: expected here,
    // and only until both her devices are back.
    const down = [/status of 50[234] .*\/api\/v1\//, /WebSocket connection to .*\/api\/v1\/ws\?.* failed/];
    const serverDown = [expectFailures('alice', ...down), expectFailures('alice2', ...down)];
    // s1 (alice's home) stops gracefully and starts again: it hands alice to s2 on its way
    // out (her pages are told where to reconnect, no sign-in) and takes her back after the
    // fallback delay; her session outlives it (kept in SQL).
    appendFileSync(process.env.UC_LAB_CONTROL, 'restart s1\n');
    const deadline = Date.now() + 60_000;
    while (!readFileSync(process.env.UC_LAB_OUTPUT, 'utf8').includes('RESTARTED s1')) {
      assert.ok(Date.now() < deadline, 's1 did not restart');
      await new Promise((r) => setTimeout(r, 200));
    }
    await bob.getByLabel('Message', { exact: true }).fill('Written while your server restarted');
    await bob.getByLabel('Message', { exact: true }).press('Enter');
    await alice.locator('#banner').waitFor({ state: 'hidden', timeout: 30_000 });
    await alice2.locator('#banner').waitFor({ state: 'hidden', timeout: 30_000 });
    for (const done of serverDown) done();
    await messageIn(alice, 'Written while your server restarted').waitFor({ timeout: 15_000 });
    assert.equal(await messageIn(alice, 'Written while your server restarted').count(), 1);
    // Still signed in (no sign-in form), and sending works again.
    assert.equal(await alice.locator('#app-view').isVisible(), true);
    await alice.getByLabel('Message', { exact: true }).fill('Back again');
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    await messageIn(bob, 'Back again').waitFor({ timeout: 15_000 });
    // s1 takes alice back 3 s after it returned (the lab's fallback delay): let that hand-over
    // end before the next test stops Redis. Without this pause the desktop-alert test below
    // still failed 1 full run in 4 after ucweb's fix: a hand-over cut by Redis can leave one
    // message to arrive by catch-up (no alert).
    await new Promise((r) => setTimeout(r, 6000));
  });

  it('shows what was written while Redis was away once it is back, without a reload', async () => {
    const { alice, bob } = pages;
    await alice.locator('#conv-list li[data-conv="d:alice:bob"]').getByRole('button').click();
    // bob (s2) writes while the bus between the servers is away: stored, but not pushed to s1.
    await lab('stop redis', 'STOPPED redis');
    await bob.getByLabel('Message', { exact: true }).fill('Written while the bus was away');
    await bob.getByLabel('Message', { exact: true }).press('Enter');
    await messageIn(bob, 'Written while the bus was away').waitFor();
    await lab('start redis', 'STARTED redis');
    // s1 tells alice's page where the conversation stands; the page fetches what it lacks.
    await messageIn(alice, 'Written while the bus was away').waitFor({ timeout: 15_000 });
    assert.equal(await messageIn(alice, 'Written while the bus was away').count(), 1);
  });

  it('notifies a new message on the desktop while every tab of the user is hidden', async () => {
    const { alice, alice2, bob } = pages;
    const hide = (hidden) => (page) => page.evaluate((hidden) => {
      if (hidden) {
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
        window.__notifications = [];
        window.__RealNotification ??= window.Notification;
        window.Notification = class {
          static permission = 'granted';
          constructor(title, options) { this.title = title; window.__notifications.push(this); Object.assign(this, options); }
          close() {}
        };
      } else {
        delete document.hidden;
        window.Notification = window.__RealNotification;
      }
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
    // Both of alice's tabs go to the background: the server alerts every device then.
    await Promise.all([alice, alice2].map(hide(true)));
    try {
      await new Promise((r) => setTimeout(r, 500)); // device_state reaches the server
      await bob.locator('#conv-list li[data-conv="d:alice:bob"]').getByRole('button').click();
      await bob.getByLabel('Message', { exact: true }).fill('Ping while you are away');
      await bob.getByLabel('Message', { exact: true }).press('Enter');
      await messageIn(alice, 'Ping while you are away').waitFor();
      const shown = async () => (await Promise.all([alice, alice2].map((p) => p.evaluate(() =>
        window.__notifications.map((n) => [n.title, n.body]))))).flat();
      const deadline = Date.now() + WAIT;
      while ((await shown()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual((await shown())[0], ['New message from Bob Berger', 'Ping while you are away']);
    } finally {
      // Visible again even when this test failed: hidden tabs are quiet devices, whose
      // presence the server holds back, and the call tests below watch presence.
      await Promise.all([alice, alice2].map(hide(false)));
    }
  });

  it('alice calls bob with audio: his page rings, he answers, both hear each other', async () => {
    const { alice, bob } = pages;
    await alice.getByRole('tab', { name: 'Contacts' }).click();
    const bobRow = alice.locator('#contact-list li.contact[data-user="bob"]');
    await bobRow.getByRole('button', { name: 'Call Bob Berger', exact: true }).click();
    await alice.locator('#call-view #call-title', { hasText: 'Bob Berger' }).waitFor();

    // alice (s1) rings bob (s2): the card names the caller; his contacts see him ringing.
    const ring = ringingCard(bob, 'Alice Anders');
    await ring.filter({ hasText: 'Incoming call' }).waitFor();
    await alice.locator('#call-status', { hasText: 'Ringing' }).waitFor();
    await bobRow.and(alice.locator('[data-telephony="ringing"]')).waitFor();
    await alice.getByRole('button', { name: 'Cancel', exact: true }).waitFor();
    await shot(bob, 'desktop-call-incoming');
    assert.deepEqual(await unnamedControls(bob), []);
    await bob.setViewportSize(PHONE);
    await shot(bob, 'phone-call-incoming');
    await bob.setViewportSize(DESKTOP);

    await bob.getByRole('button', { name: 'Answer the call from Alice Anders' }).click();
    await ring.waitFor({ state: 'detached' });
    await connectedAndCounting(alice);
    await connectedAndCounting(bob);
    assert.equal(await alice.locator('#call-title').textContent(), 'Bob Berger');
    assert.equal(await bob.locator('#call-title').textContent(), 'Alice Anders');
    // Audio really crossed the MediaServer, in both directions.
    await mediaFlows(alice, 'audio');
    await mediaFlows(bob, 'audio');
    await bobRow.and(alice.locator('[data-telephony="in_call"]')).waitFor();

    // Mute is a toggle on the microphone track.
    await alice.getByRole('button', { name: 'Mute', exact: true }).click();
    await alice.getByRole('button', { name: 'Unmute', exact: true, pressed: true }).waitFor();
    assert.equal(await alice.evaluate(() => window.__switchboard.state.call.local.getAudioTracks()[0].enabled), false);
    await alice.getByRole('button', { name: 'Unmute', exact: true }).click();
    await alice.getByRole('button', { name: 'Mute', exact: true, pressed: false }).waitFor();

    await shot(alice, 'desktop-call');
    await shot(bob, 'desktop-call-bob');
    assert.deepEqual(await unnamedControls(alice), []);
    await bob.setViewportSize(PHONE);
    await shot(bob, 'phone-call');
    assert.deepEqual(await unnamedControls(bob), []);
    await bob.setViewportSize(DESKTOP);

    await bob.getByRole('button', { name: 'Hang up', exact: true }).click();
    await callEnded(alice, 'Call ended').waitFor();
    await callEnded(bob, 'Call ended').waitFor();
    assert.equal(await alice.evaluate(() => window.__switchboard.pc), null, 'the peer connection is closed');
    await bobRow.and(alice.locator('[data-telephony="idle"]')).waitFor();
  });

  it('calling someone with no device online says so', async () => {
    const { alice } = pages;
    await alice.getByLabel('Search the directory').fill('carol');
    await alice.locator('#dir-results').getByRole('button', { name: 'Call Carol Clark', exact: true }).click();
    await callEnded(alice, 'Carol Clark cannot take calls right now (offline)').waitFor();
    assert.match(await alice.locator('#call-view').getAttribute('class'), /\bfailed\b/, 'shown as a failure');
    await shot(alice, 'desktop-call-offline');
    await alice.getByRole('button', { name: 'Close', exact: true }).click();
    await alice.locator('#call-view').waitFor({ state: 'hidden' });
    await alice.getByLabel('Search the directory').fill('');
  });

  it('bob calls alice with video: both her devices ring, one answers, the other stops', async () => {
    const { alice, alice2, bob } = pages;
    await bob.getByRole('tab', { name: /Chats/ }).click();
    await bob.locator('#conv-list li[data-conv="d:alice:bob"]').getByRole('button').click();
    // alice2's tab is in the background: the call shows as a desktop notification too.
    await alice2.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      window.__notifications = [];
      window.Notification = class {
        static permission = 'granted';
        constructor(title, options) { this.title = title; this.closed = false; window.__notifications.push(this); Object.assign(this, options); }
        close() { this.closed = true; }
      };
    });
    await bob.locator('#chat-actions').getByRole('button', { name: 'Video call with Alice Anders', exact: true }).click();
    for (const page of [alice, alice2]) await ringingCard(page, 'Incoming video call').filter({ hasText: 'Bob Berger' }).waitFor();
    assert.deepEqual(await alice2.evaluate(() => window.__notifications.map((n) => [n.title, n.body, n.closed])),
      [['Bob Berger is calling', 'Incoming video call', false]]);
    await alice.getByRole('button', { name: 'Answer the call from Bob Berger with video' }).click();
    await alice2.locator('#incoming .incoming[data-state="stopped"]', { hasText: 'Answered on another device' }).waitFor();
    assert.equal(await alice2.evaluate(() => window.__notifications[0].closed), true, 'the notification goes when it stops ringing');
    await alice2.evaluate(() => { delete document.hidden; });
    await connectedAndCounting(alice);
    await connectedAndCounting(bob);
    for (const page of [alice, bob]) {
      await mediaFlows(page, 'audio');
      await mediaFlows(page, 'video');
      await page.locator('#call-remote-video').waitFor();
      await page.locator('#call-local-video').waitFor();
    }
    await shot(bob, 'desktop-video-call');
    await alice.setViewportSize(PHONE);
    await shot(alice, 'phone-video-call');
    await alice.setViewportSize(DESKTOP);
    await alice.getByRole('button', { name: 'Camera off', exact: true }).click();
    await alice.getByRole('button', { name: 'Camera on', exact: true, pressed: true }).waitFor();
    assert.equal(await alice.evaluate(() => window.__switchboard.state.call.local.getVideoTracks()[0].enabled), false);
    await alice.getByRole('button', { name: 'Hang up', exact: true }).click();
    await callEnded(bob, 'Call ended').waitFor();
    await alice2.locator('#incoming .incoming').waitFor({ state: 'detached' });
  });

  it('carol picks up a call ringing at bob, who shares a group with her', async () => {
    const { alice, bob } = pages;
    const carol = pages.carol = await newDevice('carol', DESKTOP);
    await signIn(carol, 'carol');
    await carol.getByLabel('Search the directory').fill('bob');
    await carol.getByRole('button', { name: 'Add Bob Berger to contacts' }).click();
    const bobRow = carol.locator('#contact-list li.contact[data-user="bob"]');
    await bobRow.waitFor();
    await carol.getByLabel('Search the directory').fill('');

    await alice.locator('#contact-list li.contact[data-user="bob"]').getByRole('button', { name: 'Call Bob Berger', exact: true }).click();
    await ringingCard(bob, 'Alice Anders').waitFor();
    await bobRow.getByRole('button', { name: 'Pick up the call ringing at Bob Berger' }).click();
    await bob.locator('#incoming .incoming[data-state="stopped"]', { hasText: 'Picked up by Carol Clark' }).waitFor();
    await shot(bob, 'desktop-call-picked-up');
    await connectedAndCounting(alice);
    await connectedAndCounting(carol);
    assert.equal(await alice.locator('#call-title').textContent(), 'Carol Clark');
    assert.equal(await carol.locator('#call-title').textContent(), 'Alice Anders');
    await mediaFlows(alice, 'audio');
    await mediaFlows(carol, 'audio');
    await carol.getByRole('button', { name: 'Hang up', exact: true }).click();
    await callEnded(alice, 'Call ended').waitFor();
  });

  it('forwards calls as set in a dialog, shown on every device of the user', async () => {
    const { alice, alice2, bob, carol } = pages;
    await alice.getByRole('button', { name: 'Call forwarding', exact: true }).click();
    const dialog = alice.getByRole('dialog', { name: 'Call forwarding' });
    await dialog.getByLabel('Always').selectOption('bob');
    await dialog.getByText('Saved: always → Bob Berger').waitFor();
    await shot(alice, 'desktop-forwarding');
    for (const page of [alice, alice2]) await page.locator('#me-forward', { hasText: 'All calls go to Bob Berger' }).waitFor();
    const rules = await alice.evaluate(async () => {
      const res = await fetch('/api/v1/users/alice/forwarding', { headers: { Authorization: `Bearer ${window.switchboard.state.token}` } });
      return res.json();
    });
    assert.deepEqual(rules, { always: 'bob' });
    await dialog.getByRole('button', { name: 'Done' }).click();
    await dialog.waitFor({ state: 'hidden' });

    // carol calls alice: bob rings instead, told whose call it was; he declines.
    await carol.getByLabel('Search the directory').fill('alice');
    await carol.locator('#dir-results').getByRole('button', { name: 'Call Alice Anders', exact: true }).click();
    const ring = ringingCard(bob, 'Carol Clark');
    await ring.filter({ hasText: 'Forwarded from Alice Anders' }).waitFor();
    await carol.locator('#call-note', { hasText: 'Forwarded from Alice Anders to Bob Berger' }).waitFor();
    assert.equal(await ringingCard(alice, 'Carol Clark').count(), 0, "alice's devices do not ring");
    await shot(bob, 'desktop-call-forwarded');
    await bob.getByRole('button', { name: 'Decline the call from Carol Clark' }).click();
    await callEnded(carol, 'Bob Berger declined the call').waitFor();
    await carol.getByLabel('Search the directory').fill('');

    await alice.getByRole('button', { name: /^All calls go to Bob Berger/ }).click();
    await dialog.getByLabel('Always').selectOption('');
    await dialog.getByText('Saved: always is off').waitFor();
    for (const page of [alice, alice2]) await page.locator('#me-forward').waitFor({ state: 'hidden' });
    await dialog.getByRole('button', { name: 'Done' }).click();
    await dialog.waitFor({ state: 'hidden' });
  });

  it('a pickup without the right is refused with a clear message', async () => {
    const { alice, bob, carol } = pages;
    // alice shares no group with bob and is not his delegate.
    await carol.locator('#contact-list li.contact[data-user="bob"]').getByRole('button', { name: 'Call Bob Berger', exact: true }).click();
    await ringingCard(bob, 'Carol Clark').waitFor();
    const bobRow = alice.locator('#contact-list li.contact[data-user="bob"]');
    await bobRow.getByRole('button', { name: 'Pick up the call ringing at Bob Berger' }).click();
    await callEnded(alice, 'You may not pick up the calls of Bob Berger.').waitFor();
    assert.equal(await ringingCard(bob, 'Carol Clark').count(), 1, 'it still rings at bob');
    await carol.getByRole('button', { name: 'Cancel', exact: true }).click();
    await callEnded(carol, 'Call cancelled').waitFor();
  });

  it('alice adds carol to her call with bob: a conference where everyone hears both others', async () => {
    const { alice, bob, carol } = pages;
    await alice.locator('#contact-list li.contact[data-user="bob"]').getByRole('button', { name: 'Call Bob Berger', exact: true }).click();
    await bob.getByRole('button', { name: 'Answer the call from Alice Anders' }).click();
    await alice.locator('#call-view[data-status="connected"]').waitFor();
    // carol takes this one with the keyboard alone.
    await carol.evaluate(() => document.activeElement?.blur());
    await alice.getByRole('button', { name: 'Add person', exact: true }).click();
    const dialog = alice.getByRole('dialog', { name: 'Add someone to the call' });
    // carol is not one of alice's contacts: the search finds her in the directory.
    await dialog.getByLabel('Search contacts').fill('carol');
    await dialog.getByRole('button', { name: /^Add Carol Clark to the call/ }).click();
    await dialog.waitFor({ state: 'hidden' });
    await alice.locator('#call-note', { hasText: 'Ringing Carol Clark' }).waitFor();
    const ring = ringingCard(carol, 'Invitation to a conference call');
    await ring.filter({ hasText: 'With Bob Berger' }).waitFor();
    await shot(carol, 'desktop-conference-invite');
    const focused = () => carol.evaluate(() => document.activeElement?.getAttribute('aria-label') || document.activeElement?.textContent.trim());
    assert.equal(await focused(), 'Answer the call from Alice Anders', 'the ringing call takes the keyboard');
    await carol.keyboard.press('Enter');
    for (const page of [alice, bob, carol]) {
      await page.locator('#call-status', { hasText: 'Conference · 3 people' }).waitFor();
      await audioFrom(page, 2);
    }
    await bob.locator('#call-title', { hasText: 'Alice Anders, Carol Clark' }).waitFor();
    await shot(bob, 'desktop-conference');
    assert.equal(await focused(), 'Hang up');
    await carol.keyboard.press('Control+Shift+M');
    await carol.getByRole('button', { name: 'Unmute', exact: true, pressed: true }).waitFor();
    await carol.keyboard.press('Control+Shift+M');
    await carol.getByRole('button', { name: 'Mute', exact: true, pressed: false }).waitFor();
    await carol.keyboard.press('Enter'); // hangs up: the focus is still there
    for (const page of [alice, bob]) await page.locator('#call-note', { hasText: 'Carol Clark left the call' }).waitFor();
    await alice.getByRole('button', { name: 'Hang up', exact: true }).click();
    await callEnded(bob, 'Call ended').waitFor();
  });

  it('a call the caller cancels while it rings is a missed call', async () => {
    const { alice, bob } = pages;
    await alice.locator('#contact-list li.contact[data-user="bob"]').getByRole('button', { name: 'Call Bob Berger', exact: true }).click();
    await ringingCard(bob, 'Alice Anders').waitFor();
    await alice.locator('#call-status', { hasText: 'Ringing' }).waitFor();
    await alice.getByRole('button', { name: 'Cancel', exact: true }).click();
    await callEnded(alice, 'Call cancelled').waitFor();
    await bob.locator('#incoming .incoming[data-state="stopped"]', { hasText: 'Missed call from Alice Anders' }).waitFor();
  });

  it('shows the journal with calls', async () => {
    const { alice, bob } = pages;
    await alice.getByRole('tab', { name: 'Journal' }).click();
    await alice.locator('#journal-list li').first().waitFor();
    // The call to bob: outgoing, with its duration.
    const call = alice.locator('#journal-list li.journal.j-call', { hasText: 'Bob Berger' }).filter({ hasText: /Outgoing call · \d+:\d\d/ });
    await call.first().waitFor();
    await shot(alice, 'desktop-journal');
    // bob's journal: the cancelled call is missed, and stands out.
    await bob.getByRole('tab', { name: 'Journal' }).click();
    await bob.locator('#journal-list li.journal.j-call.missed', { hasText: 'Alice Anders' }).filter({ hasText: 'Missed call' }).waitFor();
    await bob.locator('#journal-list li.journal.j-call', { hasText: 'Picked up' }).waitFor();
    await shot(bob, 'desktop-journal-bob');
  });

  it("goes on without signing in when bob's UCServer is killed, and loses no message", async () => {
    const { alice, bob } = pages;
    for (const page of [alice, bob]) {
      await page.getByRole('tab', { name: /Chats/ }).click();
      await page.locator('#conv-list li[data-conv="d:alice:bob"]').getByRole('button').click();
    }
    // Until a backup serves bob, ucweb may answer his page's requests with 502/504.
    const down = [/status of 50[234] .*\/api\/v1\//, /WebSocket connection to .*\/api\/v1\/ws\?.* failed/];
    const serverDown = expectFailures('bob', ...down);
    // bob's home s2 dies (SIGKILL): his page reconnects through ucweb to the backup (s1).
    await lab('kill s2', 'KILLED s2');
    await bob.locator('#banner', { hasText: 'reconnecting' }).waitFor({ timeout: 20_000 });
    await alice.getByLabel('Message', { exact: true }).fill('Written while your server was dead');
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    await bob.locator('#banner').waitFor({ state: 'hidden', timeout: 30_000 });
    serverDown();
    await messageIn(bob, 'Written while your server was dead').waitFor({ timeout: 15_000 });
    assert.equal(await messageIn(bob, 'Written while your server was dead').count(), 1);
    assert.equal(await bob.locator('#app-view').isVisible(), true, 'still signed in');
    await shot(bob, 'failover-bob');
    await bob.getByLabel('Message', { exact: true }).fill('Served by the backup');
    await bob.getByLabel('Message', { exact: true }).press('Enter');
    await messageIn(alice, 'Served by the backup').waitFor({ timeout: 15_000 });
    // s2 returns; 3 s later bob's page is told to reconnect there, and carries on.
    await lab('start s2', 'STARTED s2');
    await new Promise((r) => setTimeout(r, 5_000));
    await bob.locator('#banner').waitFor({ state: 'hidden', timeout: 30_000 });
    await alice.getByLabel('Message', { exact: true }).fill('Welcome home');
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    await messageIn(bob, 'Welcome home').waitFor({ timeout: 15_000 });
    assert.equal(await messageIn(bob, 'Welcome home').count(), 1);
    assert.equal(await messageIn(bob, 'Written while your server was dead').count(), 1);
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

  it('every visible control has an accessible name and no page error or failed request happened', async () => {
    assert.deepEqual(await unnamedControls(pages.alice), []);
    assert.deepEqual(errors, []);
  });
});
