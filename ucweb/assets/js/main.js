// @ts-check
// Switchboard web client: plain ES modules, no build step, no network beyond its own origin.
// REST under /api/v1 (api.js), one WebSocket per tab (socket.js). This is the entry that
// index.html loads: it signs in and out, starts the app, routes the socket's events to the
// modules that handle them and wires index.html's static controls.
//
// Modules, each using only those before it:
//   wire (types) · util · i18n · icons · state → api → socket → actions → views → callview
//   → people → chat · tones → calls → main

import { $, messageOf } from './util.js';
import { t, loadLanguages, applyI18n, toggleLanguage } from './i18n.js';
import { isIconName, svgIcon } from './icons.js';
import * as api from './api.js';
import { startSocket, stopSocket, dropSocket, reconnectNow, scheduleReconnect, sendDeviceState, send, setSocketHooks } from './socket.js';
import { state, canCall, deviceId, maxSeq, upsertConv } from './state.js';
import { bindActions } from './actions.js';
import {
  showBanner, showTab, renderMe, renderContacts, renderDirectory, renderConvs, renderJournal,
  renderChatHead, renderMessages, renderTyping,
} from './views.js';
import { renderCall, renderIncoming, renderForwarding } from './callview.js';
import * as people from './people.js';
import * as chat from './chat.js';
import * as calls from './calls.js';

/**
 * @import { Availability, ConversationSummary, Hello, ServerEvent } from './wire.js'
 * @import { Me, Tab } from './state.js'
 */

// ------------------------------------------------------------------------------ sign in / out
/** @param {Event} event */
async function signIn(event) {
  event.preventDefault();
  const user = $('login-user', HTMLInputElement).value.trim().toLowerCase();
  const password = $('login-password', HTMLInputElement).value;
  const error = $('login-error');
  const button = $('login-submit', HTMLButtonElement);
  error.textContent = '';
  button.disabled = true;
  button.textContent = t('login.busy');
  if ('Notification' in window && Notification.permission === 'default') {
    Notification.requestPermission().catch(() => {});
  }
  try {
    const res = await api.login({ user, password, device: deviceId() });
    state.token = res.token;
    state.me = { user: res.user, display_name: res.display_name, device: deviceId(), admin: res.admin };
    sessionStorage.setItem('sb.session', JSON.stringify({ token: res.token, me: state.me }));
    $('login-password', HTMLInputElement).value = '';
    await startApp();
  } catch (e) {
    if (!(e instanceof api.ApiError)) error.textContent = messageOf(e);
    else if (e.code === 'invalid_credentials') error.textContent = t('login.failed');
    else if (e.code === 'too_many_attempts') error.textContent = t('login.throttled', { s: Math.ceil((e.body?.retry_after_ms || 1000) / 1000) });
    else if (e.code === 'license_exhausted') error.textContent = t('login.license');
    else if (e.status === 0 || e.status >= 500) error.textContent = t('login.unreachable');
    else error.textContent = e.message;
  } finally {
    button.disabled = false;
    button.textContent = t('login.submit');
  }
}

/** @param {boolean} callServer end the token at the server too (not when it was refused) */
async function signOut(callServer) {
  const token = state.token;
  if (state.call) calls.hangUp();
  state.endedCall = null;
  renderCall();
  calls.dropIncoming();
  stopSocket();
  if (callServer && token) {
    try { await api.logout(); } catch { /* the token ends here anyway */ }
  }
  sessionStorage.removeItem('sb.session');
  state.token = null;
  state.me = null;
  state.convs.clear();
  state.presence.clear();
  state.contacts = [];
  state.current = null;
  state.connectedOnce = false;
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  showBanner(null);
  document.title = t('app.name');
  $('login-user').focus();
}

async function startApp() {
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  renderMe();
  setTab(state.tab);
  showBanner(t('banner.connecting'));
  startSocket();
  people.refreshContacts();
  people.refreshMyPresence();
  chat.refreshConversations();
  calls.loadForwarding();
  updateNotifyButton();
  $('forward-btn').hidden = !canCall;
}

function updateNotifyButton() {
  $('notify-btn').hidden = !('Notification' in window) || Notification.permission !== 'default';
}

function renderAll() {
  renderMe();
  renderContacts();
  renderDirectory();
  renderConvs();
  renderJournal();
  renderCall();
  renderIncoming();
  renderForwarding();
  if (state.current) { renderChatHead(); renderMessages({ keep: true }); renderTyping(); }
}

/** @param {Tab} tab */
function setTab(tab) {
  showTab(tab);
  if (tab === 'journal') people.loadJournal();
}

// ------------------------------------------------------------------------------ socket events
/** @param {ServerEvent} ev */
function handleEvent(ev) {
  switch (ev.type) {
    case 'hello': onHello(ev); break;
    case 'presence': people.onPresence(ev.presence); break;
    case 'message': chat.onMessage(ev.message, ev.alert, ev.replay); break;
    case 'read': chat.onRead(ev.conversation, ev.user, ev.seq); break;
    case 'typing': chat.onTyping(ev.conversation, ev.user, ev.typing); break;
    case 'conversation':
      upsertConv(ev.conversation);
      renderConvs();
      if (state.current === ev.conversation.id) renderChatHead();
      chat.ensureHistory();
      break;
    case 'conversation_heads': onHeads(ev.conversations); break;
    case 'goodbye': dropSocket(); break;
    case 'reconnect': reconnectNow(); break;
    case 'ack': case 'pong': break;
    case 'error': console.warn('server error', ev.error, ev.message); break;
    case 'forwarding_changed': calls.onForwardingChanged(ev); break;
    default:
      if (ev.type.startsWith('call_')) calls.onCallEvent(ev);
      break;
  }
}

/**
 * Takes in the server's summaries; returns, for each conversation this tab has loaded, where
 * to sync from: all of them, or (`onlyAhead`) those the server is past.
 * @param {ConversationSummary[]} summaries
 * @param {boolean} onlyAhead
 */
function behind(summaries, onlyAhead) {
  /** @type {Record<string, number>} */
  const since = {};
  for (const summary of summaries) {
    const held = state.convs.get(summary.id);
    if (held && held.loaded && (!onlyAhead || summary.last_seq > maxSeq(held))) since[summary.id] = maxSeq(held);
    upsertConv(summary);
  }
  return since;
}

/**
 * The server may have missed deliveries (its link to the other servers was away): fetch what
 * this tab lacks.
 * @param {ConversationSummary[]} summaries
 */
function onHeads(summaries) {
  const since = behind(summaries, true);
  if (Object.keys(since).length) send({ type: 'sync', since });
  // A summary's last message is taken in at once, so the open conversation shows it now.
  renderAll();
  chat.ensureHistory();
}

/** @param {Hello} ev */
function onHello(ev) {
  const reconnect = state.connectedOnce;
  state.connectedOnce = true;
  state.backoff = 0;
  showBanner(null);
  for (const p of ev.presence || []) people.onPresence(p, false);
  // Ask for everything after what this tab already holds, so nothing is lost during a drop.
  const since = behind(ev.conversations || [], false);
  if (reconnect) {
    // Not a 1:1 chat without messages: the server does not have it, and would refuse the sync.
    for (const [id, conv] of state.convs) if (conv.loaded && conv.known && !(id in since)) since[id] = maxSeq(conv);
  }
  if (Object.keys(since).length) send({ type: 'sync', since });
  renderAll();
  chat.ensureHistory();
  if (reconnect) { people.refreshContacts(); calls.loadForwarding(); }
  if (state.current) chat.markReadIfVisible(state.current);
}

// ------------------------------------------------------------------------------ start
/**
 * @param {string} value
 * @returns {value is Availability}
 */
function isAvailability(value) {
  return ['available', 'away', 'busy', 'dnd', 'offline'].includes(value);
}

/**
 * @param {string | undefined} value
 * @returns {value is Tab}
 */
function isTab(value) {
  return value === 'contacts' || value === 'chats' || value === 'journal';
}

function wire() {
  for (const node of document.querySelectorAll('[data-icon]')) {
    if (node instanceof HTMLElement && isIconName(node.dataset.icon)) node.replaceChildren(svgIcon(node.dataset.icon));
  }
  $('login-form').addEventListener('submit', signIn);
  $('logout-btn').addEventListener('click', () => signOut(true));
  for (const b of document.querySelectorAll('.lang-toggle')) {
    b.addEventListener('click', async () => {
      await toggleLanguage();
      if (state.me) renderAll();
    });
  }
  $('notify-btn').addEventListener('click', async () => {
    try { await Notification.requestPermission(); } catch { /* not decided */ }
    updateNotifyButton();
  });
  const status = $('status-select', HTMLSelectElement);
  status.addEventListener('change', () => { if (isAvailability(status.value)) people.setMyPresence({ availability: status.value }); });
  const note = $('note-input', HTMLInputElement);
  note.addEventListener('change', () => people.setMyPresence({ note: note.value.trim() }));
  note.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); note.blur(); } });
  const search = $('dir-search', HTMLInputElement);
  search.addEventListener('input', people.onDirectoryInput);
  search.addEventListener('search', people.onDirectoryInput);
  search.addEventListener('keydown', (e) => { if (e.key === 'Escape') { search.value = ''; people.onDirectoryInput(); } });
  const tabs = [...document.querySelectorAll('[role=tab]')].filter((b) => b instanceof HTMLElement);
  for (const b of tabs) {
    b.addEventListener('click', () => { if (isTab(b.dataset.tab)) setTab(b.dataset.tab); });
    b.addEventListener('keydown', (e) => {
      const i = tabs.indexOf(b);
      const next = e.key === 'ArrowRight' ? tabs[(i + 1) % tabs.length] : e.key === 'ArrowLeft' ? tabs[(i + tabs.length - 1) % tabs.length] : null;
      if (next && isTab(next.dataset.tab)) { e.preventDefault(); setTab(next.dataset.tab); next.focus(); }
    });
  }
  $('new-group-btn').addEventListener('click', chat.openGroupDialog);
  $('group-form').addEventListener('submit', chat.createGroup);
  $('group-cancel').addEventListener('click', () => $('group-dialog', HTMLDialogElement).close());
  $('journal-refresh').addEventListener('click', people.loadJournal);
  calls.wireCalls();
  $('back-btn').addEventListener('click', chat.closeConversation);
  $('composer').addEventListener('submit', chat.sendCurrent);
  const input = $('compose-input', HTMLTextAreaElement);
  input.addEventListener('input', chat.onComposeInput);
  input.addEventListener('blur', chat.stopTyping);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); chat.sendCurrent(); }
    if (e.key === 'Escape' && document.body.classList.contains('show-pane')) chat.closeConversation();
  });
  $('messages').addEventListener('scroll', chat.onMessagesScroll);
  document.addEventListener('visibilitychange', () => {
    sendDeviceState();
    if (!document.hidden && state.current) chat.markReadIfVisible(state.current);
    renderConvs();
  });
  window.addEventListener('online', () => { if (state.token && !state.ws) { state.backoff = 0; scheduleReconnect(); } });
  setInterval(chat.expireTyping, 1000);
}

async function boot() {
  bindActions({
    openDirect: chat.openDirect,
    openConversation: chat.openConversation,
    resend: chat.deliver,
    addContact: people.addContact,
    removeContact: people.removeContact,
    placeCall: calls.placeCall,
    pickUp: calls.pickUp,
    answerCall: calls.answerCall,
    rejectCall: calls.rejectCall,
    invite: calls.invite,
  });
  api.whenUnauthorized(() => signOut(false));
  setSocketHooks({
    event: handleEvent,
    lost: calls.socketLost,
    retrying: () => showBanner(t('banner.reconnecting')),
  });
  await loadLanguages();
  applyI18n();
  wire();
  const saved = sessionStorage.getItem('sb.session');
  if (saved) {
    try {
      /** @type {{ token: string, me: Me }} */
      const session = JSON.parse(saved);
      state.token = session.token;
      state.me = session.me;
      await startApp();
      return;
    } catch { sessionStorage.removeItem('sb.session'); }
  }
  $('login-view').hidden = false;
  $('login-user').focus();
}

// For tests and debugging: a peek at the client's state and its call's peer connection.
const peek = {
  state,
  reconnect: dropSocket,
  // The peer connection of the current call (tests read its getStats()).
  get pc() { return calls.currentPeerConnection(); },
};
Object.assign(window, { switchboard: peek, __switchboard: peek });
boot();
