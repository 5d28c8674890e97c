// @ts-check
// Rendering of the side bar (me, contacts, directory, chats, journal, tabs) and the open
// conversation, from `state`. Each render function redraws its part completely; none changes
// the model or talks to the server (controls call `actions()`). The call view and the ringing
// cards are in callview.js.

import { $, el } from './util.js';
import { t, fmtTime, dayLabel } from './i18n.js';
import { svgIcon } from './icons.js';
import { actions } from './actions.js';
import {
  state, me, canCall, nameOf, availabilityOf, otherOf, convName, unreadOf, sortedConvs,
} from './state.js';

/**
 * @import { ChatMessage, PresenceView, TelephonyState, UserId } from './wire.js'
 * @import { Conv, PendingMessage, Tab } from './state.js'
 */

/** @param {string} name */
function initials(name) {
  const parts = String(name).trim().split(/[\s._-]+/).filter(Boolean);
  return ((parts[0]?.[0] || '?') + (parts[1]?.[0] || '')).toUpperCase();
}

/**
 * A round avatar with the user's initials, coloured by the user id.
 * @param {UserId} user
 * @param {string} [extraClass]
 */
export function avatar(user, extraClass = '') {
  const hue = [...user].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
  return el('span', { class: `avatar hue-${hue % 12} ${extraClass}`, 'aria-hidden': 'true' }, initials(nameOf(user)));
}

/** @type {number | undefined} */
let toastTimer;

/**
 * A message at the bottom for five seconds.
 * @param {string} text
 */
export function toast(text) {
  const node = $('toast');
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 5000);
}

/**
 * The connection banner at the top ("connecting", "reconnecting"); null hides it.
 * @param {string | null} text
 */
export function showBanner(text) {
  const banner = $('banner');
  if (text === null) { banner.hidden = true; return; }
  banner.textContent = text;
  banner.hidden = false;
}

/**
 * "Busy · In a call".
 * @param {PresenceView | null | undefined} view
 */
export function presenceText(view, withTelephony = true) {
  if (!view) return t('av.offline');
  const parts = [t('av.' + view.availability)];
  if (withTelephony && view.telephony && view.telephony !== 'idle') parts.push(t('tel.' + view.telephony));
  return parts.join(' · ');
}

// ------------------------------------------------------------------------------ side bar
export function renderMe() {
  if (!state.me) return;
  const view = state.presence.get(state.me.user);
  $('me-name').textContent = state.me.display_name || state.me.user;
  $('me-id').textContent = '@' + state.me.user;
  // Administrators manage the cluster in the console (it signs in on its own).
  $('admin-link').hidden = !state.me.admin;
  $('me-avatar').replaceWith(Object.assign(avatar(state.me.user), { id: 'me-avatar' }));
  const av = view?.availability || 'available';
  $('me-dot').className = `dot ${av}`;
  const select = $('status-select', HTMLSelectElement);
  if (document.activeElement !== select) select.value = av;
  const note = $('note-input', HTMLInputElement);
  if (document.activeElement !== note) note.value = view?.note || '';
}

/** @type {Record<import('./wire.js').Availability, number>} */
const RANK = { available: 0, busy: 1, dnd: 2, away: 3, offline: 4 };

export function renderContacts() {
  const list = $('contact-list');
  if (!state.me) return;
  list.replaceChildren();
  if (!state.contacts.length) {
    list.append(el('p', { class: 'empty muted', text: t('contacts.empty') }));
    return;
  }
  /** @type {Map<string, import('./wire.js').Contact[]>} */
  const groups = new Map();
  for (const c of state.contacts) {
    const members = groups.get(c.group || '') || [];
    members.push(c);
    groups.set(c.group || '', members);
  }
  const names = [...groups.keys()].sort((a, b) => Number(a === '') - Number(b === '') || a.localeCompare(b));
  for (const g of names) {
    const members = (groups.get(g) || []).sort((a, b) =>
      RANK[availabilityOf(a.user)] - RANK[availabilityOf(b.user)] || a.display_name.localeCompare(b.display_name));
    const online = members.filter((c) => availabilityOf(c.user) !== 'offline').length;
    const headId = `cg-${g || 'none'}`.replace(/[^a-z0-9_-]/gi, '_');
    list.append(el('h3', { class: 'group-head', id: headId }, g || t('contacts.nogroup'), el('span', { class: 'muted' }, ` ${online}/${members.length}`)));
    const ul = el('ul', { class: 'contact-group', 'aria-labelledby': headId });
    for (const c of members) {
      const view = state.presence.get(c.user) || c.presence;
      const av = view?.availability || 'offline';
      const note = view?.note || '';
      const status = presenceText(view);
      const tel = view?.telephony && view.telephony !== 'idle' ? view.telephony : null;
      ul.append(el('li', { class: `contact ${tel ? 'tel-' + tel : ''}`, dataset: { user: c.user, availability: av, telephony: tel || 'idle' } },
        el('button', { type: 'button', class: 'row-main', 'aria-label': `${t('contacts.chat', { name: c.display_name })} — ${status}${note ? ' — ' + note : ''}`, onclick: () => actions().openDirect(c.user) },
          el('span', { class: 'avatar-wrap' }, avatar(c.user), el('span', { class: `dot ${av}`, 'aria-hidden': 'true' })),
          el('span', { class: 'row-text' },
            el('span', { class: 'row-title' }, el('span', { class: 'title-text' }, c.display_name)),
            el('span', { class: 'row-sub' },
              el('span', { class: `av-label ${av}` }, presenceText(view, false)),
              tel ? telPill(tel) : null,
              note ? el('span', { class: 'note' }, ' — ' + note) : null))),
        // Pick up what rings at a colleague (not one's own call ringing there); else call them.
        !canCall ? null
          : tel === 'ringing' && !state.call
            ? el('button', { type: 'button', class: 'pickup-btn', 'aria-label': t('call.pickup_label', { name: c.display_name }), title: t('call.pickup_label', { name: c.display_name }), onclick: () => actions().pickUp(c.user) }, svgIcon('call-in'), el('span', {}, t('call.pickup')))
            : el('button', { type: 'button', class: 'icon-btn call-icon contact-call', 'aria-label': t('call.audio_label', { name: c.display_name }), title: t('call.audio_label', { name: c.display_name }), onclick: () => actions().placeCall(c.user, false) }, svgIcon('phone')),
        el('button', { type: 'button', class: 'icon-btn remove', 'aria-label': t('contacts.remove', { name: c.display_name }), title: t('contacts.remove', { name: c.display_name }), onclick: () => actions().removeContact(c.user) }, '×')));
    }
    list.append(ul);
  }
}

/** @param {TelephonyState} tel */
function telPill(tel) {
  return el('span', { class: `tel-pill ${tel}`, 'aria-hidden': 'true' }, svgIcon(tel === 'forwarded' ? 'forward' : 'phone'), t('tel.pill.' + tel));
}

export function renderDirectory() {
  const box = $('dir-results');
  box.replaceChildren();
  const hits = state.directory;
  if (!hits || !state.me) return;
  if (!hits.length) { box.append(el('p', { class: 'muted empty', text: t('dir.none') })); return; }
  const ul = el('ul', { class: 'list', 'aria-label': t('dir.results') });
  for (const u of hits) {
    const isMe = u.id === state.me.user;
    const isContact = state.contacts.some((c) => c.user === u.id);
    ul.append(el('li', { class: 'dir-row', dataset: { user: u.id } },
      el('span', { class: 'avatar-wrap' }, avatar(u.id), el('span', { class: `dot ${state.presence.get(u.id)?.availability || (u.online ? 'available' : 'offline')}`, 'aria-hidden': 'true' })),
      el('span', { class: 'row-text' }, el('span', { class: 'row-title' }, u.display_name), el('span', { class: 'row-sub muted' }, '@' + u.id)),
      isMe ? el('span', { class: 'muted small', text: t('dir.you') })
        : isContact ? el('span', { class: 'muted small', text: t('dir.is_contact') })
          : el('button', { type: 'button', class: 'secondary small-btn', 'aria-label': t('dir.add_label', { name: u.display_name }), onclick: () => actions().addContact(u.id) }, t('dir.add')),
      !isMe && canCall ? el('button', { type: 'button', class: 'icon-btn call-icon', 'aria-label': t('call.audio_label', { name: u.display_name }), title: t('call.audio_label', { name: u.display_name }), onclick: () => actions().placeCall(u.id, false) }, svgIcon('phone')) : null));
  }
  box.append(ul);
}

/** The Chats tab, the unread badge on it and the unread count in the window title. */
export function renderConvs() {
  if (!state.me) return;
  const mine = state.me.user;
  const list = $('conv-list');
  list.replaceChildren();
  let total = 0;
  const convs = sortedConvs();
  if (!convs.length) list.append(el('li', { class: 'empty muted', text: t('chats.empty') }));
  for (const conv of convs) {
    const s = conv.summary;
    const unread = state.current === s.id && !document.hidden ? 0 : unreadOf(conv);
    total += unread;
    const other = otherOf(s);
    const last = s.last_message;
    const preview = last ? (last.sender === mine ? t('chats.you') : (s.kind === 'group' ? nameOf(last.sender) + ': ' : '')) + last.body : '';
    const name = convName(s);
    list.append(el('li', { class: `conv ${state.current === s.id ? 'active' : ''} ${unread ? 'has-unread' : ''}`, dataset: { conv: s.id } },
      el('button', { type: 'button', class: 'row-main', 'aria-current': state.current === s.id ? 'true' : null, 'aria-label': `${name}${unread ? ', ' + t('chats.unread', { n: unread }) : ''}`, onclick: () => actions().openConversation(s.id) },
        el('span', { class: 'avatar-wrap' },
          other ? avatar(other) : el('span', { class: 'avatar group', 'aria-hidden': 'true' }, '#'),
          other ? el('span', { class: `dot ${availabilityOf(other)}`, 'aria-hidden': 'true' }) : null),
        el('span', { class: 'row-text' },
          el('span', { class: 'row-title' }, el('span', { class: 'title-text' }, name), el('span', { class: 'time muted small' }, last ? fmtTime(last.sent_ms) : '')),
          el('span', { class: 'row-sub' }, el('span', { class: 'preview' }, preview), unread ? el('span', { class: 'badge', 'aria-hidden': 'true' }, String(unread)) : null)))));
  }
  const badge = $('tab-unread');
  badge.hidden = !total;
  badge.textContent = String(total);
  document.title = total ? `(${total}) ${t('app.name')}` : t('app.name');
}

export function renderJournal() {
  const list = $('journal-list');
  if (!state.me) return;
  const mine = state.me.user;
  list.replaceChildren();
  if (!state.journal.length) { list.append(el('li', { class: 'empty muted', text: t('journal.empty') })); return; }
  for (const j of state.journal) {
    // Missed is what the callee missed; the caller's side of it reads "no answer".
    const missed = j.kind === 'call' && j.result === 'missed' && j.direction === 'incoming';
    const icon = svgIcon(j.kind === 'call' ? (j.direction === 'incoming' ? 'call-in' : 'call-out') : 'chat');
    const what = j.kind === 'call'
      ? (missed ? t('journal.missed') : t(j.direction === 'incoming' ? 'journal.call_in' : 'journal.call_out')) + (j.result && !missed && j.result !== 'answered' ? ' · ' + t(j.result === 'missed' ? 'journal.result.no_answer' : 'journal.result.' + j.result) : '')
      : t(j.messages === 1 ? 'journal.message_one' : 'journal.messages', { n: j.messages }) + (j.summary ? ' — ' + j.summary : '');
    let duration = '';
    if (j.kind === 'call' && j.answered_ms && j.ended_ms) {
      const s = Math.round((j.ended_ms - j.answered_ms) / 1000);
      duration = ` · ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
    }
    const party = j.kind === 'call' || (j.conversation && j.conversation.startsWith('d:')) ? nameOf(j.party) : j.party;
    const content = [
      el('span', { class: 'j-icon', 'aria-hidden': 'true' }, icon),
      el('span', { class: 'row-text' },
        el('span', { class: 'row-title' }, el('span', { class: 'title-text' }, party), el('span', { class: 'time muted small' }, fmtTime(j.started_ms))),
        el('span', { class: 'row-sub' }, el('span', { class: 'preview' }, what + duration))),
    ];
    const li = el('li', { class: `journal j-${j.kind} ${missed ? 'missed' : ''}`, dataset: { kind: j.kind, result: j.result || '' } });
    const label = `${party}, ${what}${duration}, ${fmtTime(j.started_ms)}`;
    const conversation = j.conversation;
    if (conversation) li.append(el('button', { type: 'button', class: 'row-main', 'aria-label': label, onclick: () => { if (state.convs.has(conversation)) actions().openConversation(conversation); } }, ...content));
    else if (j.kind === 'call' && j.party !== mine) li.append(el('button', { type: 'button', class: 'row-main', 'aria-label': `${label} — ${t('journal.open_chat')}`, onclick: () => actions().openDirect(j.party) }, ...content));
    else li.append(el('div', { class: 'row-main', role: 'group', 'aria-label': label }, ...content));
    if (j.kind === 'call' && canCall && j.party !== mine) {
      li.append(el('button', { type: 'button', class: 'icon-btn call-icon', 'aria-label': t('journal.call_back', { name: party }), title: t('journal.call_back', { name: party }), onclick: () => actions().placeCall(j.party, false) }, svgIcon('phone')));
    } else if (canCall) {
      li.append(el('span', { class: 'j-spacer', 'aria-hidden': 'true' })); // keeps the times in one column
    }
    list.append(li);
  }
}

/**
 * Shows one tab of the side bar.
 * @param {Tab} tab
 */
export function showTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll('[role=tab]')) {
    if (!(b instanceof HTMLElement)) continue;
    const on = b.dataset.tab === tab;
    b.setAttribute('aria-selected', on ? 'true' : 'false');
    b.tabIndex = on ? 0 : -1;
  }
  for (const name of ['contacts', 'chats', 'journal']) $(`panel-${name}`).hidden = name !== tab;
}

// ------------------------------------------------------------------------------ the open conversation
export function renderChatHead() {
  const conv = state.current ? state.convs.get(state.current) : undefined;
  if (!conv) return;
  const s = conv.summary;
  const other = otherOf(s);
  $('chat-name').textContent = convName(s);
  const av = other ? avatar(other) : el('span', { class: 'avatar group' }, '#');
  av.id = 'chat-avatar';
  av.setAttribute('aria-hidden', 'true');
  $('chat-avatar').replaceWith(av);
  $('chat-actions').hidden = !other || !canCall;
  if (other) {
    const name = nameOf(other);
    for (const [id, key] of [['chat-call', 'call.audio_label'], ['chat-video', 'call.video_label']]) {
      $(id).setAttribute('aria-label', t(key, { name }));
      $(id).title = t(key, { name });
    }
  }
  const sub = $('chat-sub');
  sub.replaceChildren();
  if (other) {
    const view = state.presence.get(other);
    const a = view?.availability || 'offline';
    sub.append(el('span', { class: `dot ${a}`, 'aria-hidden': 'true' }), ' ', presenceText(view), view?.note ? ' — ' + view.note : '');
  } else {
    sub.append(t('members', { n: s.members.length }) + ': ' + s.members.map(nameOf).join(', '));
  }
}

/** The line above the messages: loading, start of the conversation, or scroll for more. */
export function renderOlder() {
  const conv = state.current ? state.convs.get(state.current) : undefined;
  if (!conv) return;
  $('older').textContent = conv.loading ? t('messages.loading') : conv.complete ? t('messages.start') : t('messages.older');
}

/**
 * The messages of the open conversation. `stick` scrolls to the end; `keep` keeps the
 * position (older messages came in above); else it follows the end if it was there.
 * @param {{ stick?: boolean, keep?: boolean }} [how]
 */
export function renderMessages({ stick = false, keep = false } = {}) {
  const conv = state.current ? state.convs.get(state.current) : undefined;
  if (!conv) return;
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const list = $('message-list');
  list.replaceChildren();
  const msgs = [...conv.messages.values()].sort((a, b) => a.seq - b.seq);
  // Only show a contiguous tail (the summary preview alone is shown once history loads).
  const oldest = conv.oldest;
  const shown = oldest === null ? (conv.loaded ? msgs : []) : msgs.filter((m) => m.seq >= oldest);
  const readers = [...conv.others.entries()];
  /** @type {ChatMessage | PendingMessage | null} */
  let prev = null;
  let lastDay = '';
  for (const m of shown) {
    const day = new Date(m.sent_ms).toDateString();
    if (day !== lastDay) {
      lastDay = day;
      list.append(el('li', { class: 'day-sep', 'aria-hidden': 'true' }, el('span', {}, dayLabel(m.sent_ms))));
      prev = null;
    }
    list.append(messageNode(m, prev, readers, conv));
    prev = m;
  }
  for (const p of conv.pending.values()) {
    list.append(messageNode(p, prev, [], conv));
    prev = p;
  }
  renderOlder();
  if (stick || (atBottom && !keep)) box.scrollTop = box.scrollHeight;
  else if (keep) box.scrollTop = atBottom ? box.scrollHeight : box.scrollHeight - fromBottom;
}

/**
 * One message with its sender (groups), time and, for one's own, the ticks.
 * @param {ChatMessage | PendingMessage} m
 * @param {ChatMessage | PendingMessage | null} prev
 * @param {[UserId, number][]} readers the other members' read markers
 * @param {Conv} conv
 */
function messageNode(m, prev, readers, conv) {
  const mine = m.sender === me().user;
  const pending = 'state' in m ? m : null;
  const seq = 'seq' in m ? m.seq : null;
  const grouped = prev && prev.sender === m.sender && m.sent_ms - prev.sent_ms < 5 * 60000;
  const li = el('li', { class: `msg ${mine ? 'mine' : 'theirs'} ${grouped ? 'grouped' : ''} ${pending ? pending.state : ''}`, dataset: { seq: seq === null ? '' : String(seq), sender: m.sender } });
  if (!mine && !grouped && conv.summary.kind === 'group') li.append(el('div', { class: 'sender' }, nameOf(m.sender)));
  const bubble = el('div', { class: 'bubble' });
  bubble.append(el('span', { class: 'body' }, m.body));
  const meta = el('span', { class: 'meta' }, fmtTime(m.sent_ms).replace(/^.* (\d\d:\d\d)$/, '$1'));
  if (mine) {
    if (pending?.state === 'sending') meta.append(el('span', { class: 'tick', title: t('messages.sending'), 'aria-label': t('messages.sending') }, ' ⏱'));
    else if (pending) {
      meta.append(el('button', { type: 'button', class: 'link retry', 'aria-label': t('messages.failed'), onclick: () => actions().resend(conv, pending) }, ' ⚠ ' + t('messages.failed')));
    } else if (seq !== null) {
      const by = readers.filter(([u, read]) => u !== me().user && read >= seq).map(([u]) => nameOf(u));
      const read = by.length > 0;
      const label = read ? t('messages.read_by', { names: by.join(', ') }) : t('messages.sent');
      meta.append(el('span', { class: `tick ${read ? 'read' : ''}`, title: label, role: 'img', 'aria-label': label }, read ? ' ✓✓' : ' ✓'));
    }
  }
  bubble.append(meta);
  li.append(bubble);
  return li;
}

export function renderTyping() {
  const map = state.current ? state.typing.get(state.current) : undefined;
  const names = map ? [...map.keys()].map(nameOf) : [];
  $('typing').textContent = names.length === 0 ? '' : names.length === 1 ? t('typing.one', { name: names[0] }) : t('typing.many', { names: names.join(', ') });
}
