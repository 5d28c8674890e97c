// @ts-check
// Chat: conversations and their messages as they arrive, history pages, read markers, typing,
// the composer, sending (with retry) and ad-hoc groups.

import { $, el, messageOf } from './util.js';
import { t } from './i18n.js';
import * as api from './api.js';
import { send } from './socket.js';
import {
  state, me, nameOf, directId, otherOf, newConv, newDirectConv, upsertConv, addMessage, maxSeq,
} from './state.js';
import {
  toast, avatar, showTab, renderConvs, renderChatHead, renderMessages, renderOlder, renderTyping,
} from './views.js';

/**
 * @import { ChatMessage, ConversationId, SendMessage, UserId } from './wire.js'
 * @import { Conv, PendingMessage } from './state.js'
 */

const PAGE = 50;
const TYPING_SHOWN_MS = 8000;
const TYPING_REPEAT_MS = 3000;
const TYPING_STOP_MS = 4000;
/** Times a send refused as busy or too fast is sent again by itself. */
const MAX_RESENDS = 5;

// ------------------------------------------------------------------------------ arriving
/**
 * A message arrived on the socket (live, or replayed after a reconnect).
 * @param {ChatMessage} msg
 * @param {boolean} alert this device should notify its user
 * @param {boolean} replay
 */
export function onMessage(msg, alert, replay) {
  let conv = state.convs.get(msg.conversation);
  if (!conv) {
    // A conversation this tab has not seen yet: make a provisional one and fetch the real one.
    const direct = msg.conversation.startsWith('d:');
    const members = direct ? msg.conversation.slice(2).split(':') : [msg.sender, me().user];
    conv = newConv({ id: msg.conversation, kind: direct ? 'direct' : 'group', name: '', members, last_seq: 0, last_read_seq: 0, unread: 0 });
    state.convs.set(msg.conversation, conv);
    refreshConversations();
  }
  // A live message past a hole: the ones between were lost on the way (the server's link to
  // the others was away) or are still coming; ask for everything after what this tab holds.
  const top = maxSeq(conv);
  if (!replay && conv.loaded && msg.seq > top + 1) send({ type: 'sync', since: { [msg.conversation]: top } });
  const fresh = addMessage(conv, msg);
  if (!fresh) return;
  if (state.current === msg.conversation) {
    renderMessages({ stick: true });
    markReadIfVisible(msg.conversation);
    ensureHistory();
  }
  renderConvs();
  if (alert && !replay && document.hidden && msg.sender !== me().user) notify(msg);
  // A message from someone ends their typing indicator.
  clearTyping(msg.conversation, msg.sender);
}

export async function refreshConversations() {
  try {
    for (const s of await api.getConversations()) upsertConv(s);
    renderConvs();
    ensureHistory();
  } catch { /* the next event retries */ }
}

/**
 * Someone (maybe the user on another device) read up to `seq`.
 * @param {ConversationId} id
 * @param {UserId} user
 * @param {number} seq
 */
export function onRead(id, user, seq) {
  const conv = state.convs.get(id);
  if (!conv) return;
  if (user === me().user) {
    if (seq > conv.summary.last_read_seq) conv.summary.last_read_seq = seq;
    renderConvs();
  } else {
    if (seq > (conv.others.get(user) || 0)) conv.others.set(user, seq);
    if (state.current === id) renderMessages({ keep: true });
  }
}

/**
 * @param {ConversationId} id
 * @param {UserId} user
 * @param {boolean} typing
 */
export function onTyping(id, user, typing) {
  if (user === me().user) return;
  let map = state.typing.get(id);
  if (!map) { map = new Map(); state.typing.set(id, map); }
  if (typing) map.set(user, Date.now() + TYPING_SHOWN_MS);
  else map.delete(user);
  renderTyping();
}

/**
 * @param {ConversationId} id
 * @param {UserId} user
 */
function clearTyping(id, user) {
  const map = state.typing.get(id);
  if (map && map.delete(user)) renderTyping();
}

/** Drops typing indicators that were not renewed (called every second). */
export function expireTyping() {
  const now = Date.now();
  let changed = false;
  for (const map of state.typing.values()) {
    for (const [user, until] of map) if (until < now) { map.delete(user); changed = true; }
  }
  if (changed) renderTyping();
}

/**
 * A desktop notification for a message that came while the tab is hidden.
 * @param {ChatMessage} msg
 */
function notify(msg) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(t('notify.title', { name: nameOf(msg.sender) }), {
      body: msg.body.slice(0, 200),
      tag: msg.conversation,
      icon: '/icon.svg',
    });
    n.onclick = () => { window.focus(); openConversation(msg.conversation); n.close(); };
  } catch { /* not allowed in this context */ }
}

// ------------------------------------------------------------------------------ history
/**
 * Fetches the latest page (with the read markers), or the page before the oldest held.
 * @param {Conv} conv
 * @param {boolean} older
 */
async function loadHistory(conv, older) {
  if (!conv.known || conv.loading || (older && conv.complete)) return;
  conv.loading = true;
  renderOlder();
  const id = conv.summary.id;
  try {
    const [page, markers] = await Promise.all([
      api.getMessages(id, PAGE, older ? conv.oldest : null),
      older ? Promise.resolve([]) : api.getReadMarkers(id).catch(() => []),
    ]);
    for (const m of page) addMessage(conv, m);
    for (const mark of markers) {
      if (mark.user !== me().user && mark.seq > (conv.others.get(mark.user) || 0)) conv.others.set(mark.user, mark.seq);
    }
    if (page.length < PAGE) conv.complete = true;
    const first = page.length ? page[0].seq : null;
    if (first !== null && (conv.oldest === null || first < conv.oldest)) conv.oldest = first;
    if (first === 1) conv.complete = true;
    conv.loaded = true;
  } catch (e) {
    if (e instanceof api.ApiError && (e.status === 404 || e.code === 'not_a_member')) { conv.complete = true; conv.loaded = true; }
    else toast(t('error.generic', { msg: messageOf(e) }));
  } finally {
    conv.loading = false;
  }
}

/** Loads the open conversation's history if it lacks it (it just became known). */
export async function ensureHistory() {
  const id = state.current;
  const conv = id ? state.convs.get(id) : undefined;
  if (!id || !conv || !conv.known || conv.loaded || conv.loading) return;
  await loadHistory(conv, false);
  if (state.current === id) renderMessages({ stick: true });
}

/** The message list scrolled: near the top, fetch the page before. */
export async function onMessagesScroll() {
  const id = state.current;
  const conv = id ? state.convs.get(id) : undefined;
  if (!conv || $('messages').scrollTop > 40 || conv.complete || conv.loading) return;
  await loadHistory(conv, true);
  if (state.current === id) renderMessages({ keep: true });
}

// ------------------------------------------------------------------------------ opening
/** @param {ConversationId} id */
export async function openConversation(id) {
  const conv = state.convs.get(id);
  if (!conv) return;
  state.current = id;
  document.body.classList.add('show-pane');
  $('pane-empty').hidden = true;
  $('chat').hidden = false;
  renderChatHead();
  renderMessages({ stick: true });
  renderTyping();
  renderConvs();
  $('compose-input', HTMLTextAreaElement).value = '';
  if (!conv.loaded) {
    await loadHistory(conv, false);
    if (state.current !== id) return;
    renderMessages({ stick: true });
  }
  markReadIfVisible(id);
  if (matchMedia('(min-width: 721px)').matches) $('compose-input').focus();
  else $('back-btn').focus();
}

/**
 * Opens the 1:1 chat with `user`; before its first message it exists only here.
 * @param {UserId} user
 */
export function openDirect(user) {
  const id = directId(me().user, user);
  if (!state.convs.has(id)) state.convs.set(id, newDirectConv(user));
  return openConversation(id);
}

export function closeConversation() {
  document.body.classList.remove('show-pane');
  const id = state.current;
  state.current = null;
  renderConvs();
  const row = id && document.querySelector(`[data-conv="${CSS.escape(id)}"] button`);
  if (row instanceof HTMLElement) row.focus();
}

/**
 * Moves the read marker to the end of the conversation if the user sees it.
 * @param {ConversationId} id
 */
export function markReadIfVisible(id) {
  const conv = state.convs.get(id);
  if (!conv || document.hidden || state.current !== id) return;
  const last = conv.summary.last_seq || 0;
  if (last > (conv.summary.last_read_seq || 0)) {
    conv.summary.last_read_seq = last;
    if (!send({ type: 'read', conversation: id, seq: last })) {
      api.markRead(id, { seq: last }).catch(() => {});
    }
    renderConvs();
  }
}

// ------------------------------------------------------------------------------ writing
/** When "typing" was last sent, 0 when stopped. */
let typingSentAt = 0;
/** @type {ConversationId | null} the conversation told that the user types */
let typingIn = null;
/** @type {number | undefined} */
let typingStopTimer;

export function onComposeInput() {
  autoGrow();
  const conv = state.current ? state.convs.get(state.current) : undefined;
  // A 1:1 chat without messages has no members yet to tell.
  if (!conv || !conv.known) return;
  const now = Date.now();
  if (now - typingSentAt > TYPING_REPEAT_MS || typingIn !== conv.summary.id) {
    typingSentAt = now;
    typingIn = conv.summary.id;
    send({ type: 'typing', conversation: typingIn, typing: true });
  }
  clearTimeout(typingStopTimer);
  typingStopTimer = setTimeout(stopTyping, TYPING_STOP_MS);
}

export function stopTyping() {
  clearTimeout(typingStopTimer);
  if (typingSentAt && typingIn) send({ type: 'typing', conversation: typingIn, typing: false });
  typingSentAt = 0;
  typingIn = null;
}

function autoGrow() {
  const ta = $('compose-input');
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight, 160) + 'px';
}

/**
 * Sends what the composer holds to the open conversation.
 * @param {Event} [event]
 */
export async function sendCurrent(event) {
  event?.preventDefault();
  const input = $('compose-input', HTMLTextAreaElement);
  const body = input.value.replace(/\s+$/, '');
  const conv = state.current ? state.convs.get(state.current) : undefined;
  if (!body.trim() || !conv) return;
  input.value = '';
  autoGrow();
  stopTyping();
  const clientId = 'c' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  /** @type {PendingMessage} */
  const pending = { client_id: clientId, body, sender: me().user, sent_ms: Date.now(), state: 'sending' };
  conv.pending.set(clientId, pending);
  renderMessages({ stick: true });
  await deliver(conv, pending);
}

/**
 * Sends (or resends) a message; the server stores one message per client id.
 * @param {Conv} conv
 * @param {PendingMessage} pending
 */
export async function deliver(conv, pending) {
  const s = conv.summary;
  const other = otherOf(s);
  /** @type {SendMessage} */
  const req = other && !conv.messages.size && !s.last_seq
    ? { to: other, body: pending.body, client_id: pending.client_id }
    : { conversation: s.id, body: pending.body, client_id: pending.client_id };
  pending.state = 'sending';
  try {
    const msg = await api.sendMessage(req);
    if (msg.conversation !== s.id && !state.convs.has(msg.conversation)) state.convs.set(msg.conversation, conv);
    addMessage(conv, msg);
    if (state.current === s.id) {
      renderMessages({ stick: true });
      markReadIfVisible(s.id);
      ensureHistory();
    }
    renderConvs();
  } catch (e) {
    // Busy or too fast: nothing was kept; send it again once the server says it may.
    const wait = e instanceof api.ApiError && (e.code === 'server_busy' || e.code === 'rate_limited') ? e.body?.retry_after_ms : undefined;
    if (wait && (pending.retries = (pending.retries || 0) + 1) <= MAX_RESENDS) {
      setTimeout(() => deliver(conv, pending), wait);
      return;
    }
    pending.state = 'failed';
    toast(t('error.generic', { msg: messageOf(e) }));
    if (state.current === s.id) renderMessages({ keep: true });
  }
}

// ------------------------------------------------------------------------------ groups
export function openGroupDialog() {
  $('group-error').textContent = '';
  $('group-name', HTMLInputElement).value = '';
  const box = $('group-members');
  box.replaceChildren();
  if (!state.contacts.length) box.append(el('p', { class: 'muted', text: t('group.no_contacts') }));
  for (const c of state.contacts) {
    const id = `gm-${c.user}`;
    box.append(el('div', { class: 'check' },
      el('input', { type: 'checkbox', id, value: c.user }),
      el('label', { for: id }, avatar(c.user, 'small'), ' ', c.display_name)));
  }
  $('group-dialog', HTMLDialogElement).showModal();
  $('group-name').focus();
}

/** @param {Event} event */
export async function createGroup(event) {
  event.preventDefault();
  const name = $('group-name', HTMLInputElement).value.trim();
  const members = [...$('group-members').querySelectorAll('input')].filter((i) => i.checked).map((i) => i.value);
  if (!members.length) { $('group-error').textContent = t('group.need_members'); return; }
  try {
    const summary = await api.createConversation({ name, members });
    upsertConv(summary);
    $('group-dialog', HTMLDialogElement).close();
    showTab('chats');
    openConversation(summary.id);
  } catch (e) {
    $('group-error').textContent = messageOf(e);
  }
}
