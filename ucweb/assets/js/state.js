// @ts-check
// The client-side model: one `state` object that the other modules read and change, and the
// rules for conversations and messages that do not touch the DOM or the network.
// Tests read it as `window.switchboard.state` (token, backoff, call).

/**
 * @import { Availability, CallEvent, CallId, CallIncoming, CallResult, ChatMessage, Contact,
 *   ConversationId, ConversationSummary, DeviceId, EndReason, ForwardingRules, JournalEntry,
 *   PresenceView, StopReason, UserId, UserInfo } from './wire.js'
 */

/**
 * The signed-in user and this tab's device.
 * @typedef {Object} Me
 * @property {UserId} user
 * @property {string} display_name
 * @property {DeviceId} device
 * @property {boolean} [admin] an administrator: the side bar links to the admin console
 */

/**
 * A message of this tab not stored yet (it has no `seq`).
 * @typedef {Object} PendingMessage
 * @property {string} client_id
 * @property {string} body
 * @property {UserId} sender
 * @property {number} sent_ms
 * @property {'sending' | 'failed'} state
 * @property {number} [retries] sends refused as busy or too fast so far
 */

/**
 * A conversation as this tab holds it.
 * @typedef {Object} Conv
 * @property {ConversationSummary} summary
 * @property {Map<number, ChatMessage>} messages by seq: the dedupe key with the conversation
 * @property {Map<string, PendingMessage>} pending by client id, until the stored one comes back
 * @property {number | null} oldest the first seq of the contiguous tail shown; null before
 *   the history loaded
 * @property {boolean} complete nothing older to fetch
 * @property {Map<UserId, number>} others the other members' read markers
 * @property {boolean} loaded the latest page of the history is here
 * @property {boolean} loading a history request is under way
 * @property {boolean} known the server has this conversation. False only for a 1:1 opened
 *   before its first message: there is no history or read marker to ask for (those routes
 *   answer 404), so it starts loaded and complete. The first stored message or summary from
 *   the server makes it known (and not loaded, if it holds messages this tab lacks).
 */

/**
 * How a call ended, as its view shows it.
 * @typedef {Object} CallOutcome
 * @property {EndWhy} reason
 * @property {CallResult | null} result
 * @property {boolean} failed shown as a failure
 * @property {string} text
 * @property {number | null} duration seconds connected, if it was
 */
/**
 * The server's end reasons and this tab's own: `lost` (the socket went), `error` (a command
 * or the media failed here).
 * @typedef {EndReason | 'lost' | 'error'} EndWhy
 */

/**
 * The call of this tab (one at a time).
 * @typedef {Object} Call
 * @property {CallId | null} id null until the ack (place, pickup) names it
 * @property {'out' | 'in' | 'pickup'} role
 * @property {UserId} peer who was called, who called, or whose call was picked up
 * @property {boolean} video this device sends video
 * @property {boolean} videoLine the offer has a video m-line (also when answering a video
 *   call with audio only)
 * @property {'starting' | 'calling' | 'ringing' | 'connecting' | 'connected'} status
 * @property {RTCPeerConnection | null} pc
 * @property {MediaStream | null} local microphone (and camera)
 * @property {UserId[]} parties connected now
 * @property {Set<UserId>} ringing invited users whose devices ring
 * @property {number | null} connectedAt
 * @property {boolean} muted
 * @property {boolean} cameraOff
 * @property {boolean} remoteVideo a remote video track has frames
 * @property {HTMLAudioElement[]} audio one per remote audio track
 * @property {CallEvent[]} early events that came before the ack named
 *   the call
 * @property {boolean} accepted the server took this device's place, answer or pickup
 * @property {string} note a line under the status (no camera, forwarded, someone left)
 * @property {boolean} conference
 * @property {boolean} ended
 * @property {CallOutcome | null} outcome set when it ends
 */

/**
 * A call ringing at this tab, and why it stopped (shown for a few seconds).
 * @typedef {CallIncoming & {
 *   stopped: { reason: StopReason, by?: UserId } | null,
 *   notification?: Notification,
 * }} Ring
 */

/** @typedef {'contacts' | 'chats' | 'journal'} Tab */

/** Whether this browser can make calls (WebRTC and a microphone API). */
export const canCall = typeof RTCPeerConnection === 'function'
  && typeof navigator.mediaDevices?.getUserMedia === 'function';

export const state = {
  /** @type {string | null} */
  token: null,
  /** @type {Me | null} */
  me: null,
  /** @type {Map<UserId, string>} display names */
  names: new Map(),
  /** @type {Map<UserId, PresenceView>} */
  presence: new Map(),
  /** @type {Contact[]} */
  contacts: [],
  /** @type {UserInfo[] | null} the directory search's hits, if searching */
  directory: null,
  /** @type {Map<ConversationId, Conv>} */
  convs: new Map(),
  /** @type {ConversationId | null} the open conversation */
  current: null,
  /** @type {Map<ConversationId, Map<UserId, number>>} who types, until when (ms) */
  typing: new Map(),
  /** @type {Tab} */
  tab: 'contacts',
  /** @type {WebSocket | null} */
  ws: null,
  wsOpen: false,
  /** Reconnect attempts since the last `hello`: the next delay is 0.5 s × 2^backoff. */
  backoff: 0,
  /** @type {number | undefined} */
  reconnectTimer: undefined,
  /** A `hello` came since signing in: the next one is a reconnect. */
  connectedOnce: false,
  /** @type {JournalEntry[]} */
  journal: [],
  /** @type {Call | null} */
  call: null,
  /** @type {Call | null} the call just over, shown with its outcome for a few seconds */
  endedCall: null,
  /** @type {Map<CallId, Ring>} */
  incoming: new Map(),
  /** @type {ForwardingRules} my forwarding rules */
  forwarding: {},
};

/** The signed-in user; only called where one is. */
export function me() {
  if (!state.me) throw new Error('nobody is signed in');
  return state.me;
}

/** This tab's device id, kept for the tab's life (each tab is its own device). */
export function deviceId() {
  let id = sessionStorage.getItem('sb.device');
  if (!id || !/^[a-z0-9._-]{1,64}$/.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    id = 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    sessionStorage.setItem('sb.device', id);
  }
  return id;
}

/** @param {UserId} user */
export function nameOf(user) {
  if (state.me && user === state.me.user) return state.me.display_name || user;
  return state.names.get(user) || user;
}

/**
 * @param {UserId} user
 * @returns {Availability}
 */
export function availabilityOf(user) {
  return state.presence.get(user)?.availability || 'offline';
}

// ------------------------------------------------------------------------------ conversations
/**
 * The id of the 1:1 conversation of two users (`ConversationId::direct`).
 * @param {UserId} a
 * @param {UserId} b
 */
export function directId(a, b) {
  return a <= b ? `d:${a}:${b}` : `d:${b}:${a}`;
}

/**
 * The other member of a 1:1 conversation; null for a group.
 * @param {ConversationSummary} summary
 * @returns {UserId | null}
 */
export function otherOf(summary) {
  if (summary.kind !== 'direct') return null;
  const m = summary.id.match(/^d:([^:]+):([^:]+)$/);
  if (!m) return summary.members.find((u) => u !== me().user) || null;
  return m[1] === me().user ? m[2] : m[1];
}

/** @param {ConversationSummary} summary */
export function convName(summary) {
  const other = otherOf(summary);
  if (other) return nameOf(other);
  return summary.name || summary.members.map(nameOf).join(', ');
}

/**
 * A conversation the server has, its history not loaded yet.
 * @param {ConversationSummary} summary
 * @returns {Conv}
 */
export function newConv(summary) {
  return {
    summary, messages: new Map(), pending: new Map(), oldest: null, complete: false,
    others: new Map(), loaded: false, loading: false, known: true,
  };
}

/**
 * A 1:1 conversation the server may not have yet (see `Conv.known`).
 * @param {UserId} user
 * @returns {Conv}
 */
export function newDirectConv(user) {
  const mine = me().user;
  const conv = newConv({
    id: directId(mine, user), kind: 'direct', name: nameOf(user), members: [mine, user].sort(),
    last_seq: 0, last_read_seq: 0, unread: 0,
  });
  conv.known = false;
  conv.loaded = true;
  conv.complete = true;
  return conv;
}

/**
 * The server has this conversation, up to `lastSeq`.
 * @param {Conv} conv
 * @param {number} lastSeq
 */
function learnExists(conv, lastSeq) {
  if (conv.known) return;
  conv.known = true;
  // Sequence numbers start at 1 without gaps: anything this tab lacks is in the history.
  if (lastSeq > conv.messages.size) {
    conv.loaded = false;
    conv.complete = false;
  }
}

/**
 * Adds or updates a conversation from a summary of the server.
 * @param {ConversationSummary} summary
 */
export function upsertConv(summary) {
  let conv = state.convs.get(summary.id);
  if (!conv) {
    conv = newConv(summary);
    state.convs.set(summary.id, conv);
  } else {
    const prev = conv.summary;
    conv.summary = { ...summary };
    // Never go back: a live event may be newer than a summary fetched earlier.
    conv.summary.last_seq = Math.max(prev.last_seq || 0, summary.last_seq || 0);
    conv.summary.last_read_seq = Math.max(prev.last_read_seq || 0, summary.last_read_seq || 0);
    if (prev.last_message && (!summary.last_message || prev.last_message.seq > summary.last_message.seq)) conv.summary.last_message = prev.last_message;
  }
  if (summary.last_message) addMessage(conv, summary.last_message);
  learnExists(conv, conv.summary.last_seq);
  return conv;
}

/** @param {Conv} conv */
export function unreadOf(conv) {
  return Math.max(0, (conv.summary.last_seq || 0) - (conv.summary.last_read_seq || 0));
}

/** @param {Conv} conv */
export function maxSeq(conv) {
  let max = 0;
  for (const seq of conv.messages.keys()) if (seq > max) max = seq;
  return max;
}

/**
 * Adds a stored message; false if the conversation holds it already.
 * @param {Conv} conv
 * @param {ChatMessage} msg
 */
export function addMessage(conv, msg) {
  if (!msg.seq) {
    // Provisional (accepted while the server's database was away): shown as waiting until
    // the stored one, with the same client id, arrives.
    const key = msg.client_id || msg.id;
    if (conv.pending.has(key)) return false;
    conv.pending.set(key, { client_id: key, body: msg.body, sender: msg.sender, sent_ms: msg.sent_ms, state: 'sending' });
    return true;
  }
  if (conv.messages.has(msg.seq)) return false; // dedupe by conversation + seq
  conv.messages.set(msg.seq, msg);
  if (msg.client_id) conv.pending.delete(msg.client_id);
  const s = conv.summary;
  if (msg.seq > (s.last_seq || 0)) s.last_seq = msg.seq;
  if (!s.last_message || msg.seq >= s.last_message.seq) s.last_message = msg;
  // One's own message is read by definition.
  if (state.me && msg.sender === state.me.user && s.last_read_seq === msg.seq - 1) s.last_read_seq = msg.seq;
  learnExists(conv, s.last_seq);
  return true;
}

/** The conversations of the Chats tab, latest first. */
export function sortedConvs() {
  return [...state.convs.values()]
    .filter((c) => c.summary.last_seq > 0 || c.messages.size || c.summary.kind === 'group' || c.summary.id === state.current)
    .sort((a, b) => (b.summary.last_message?.sent_ms || 0) - (a.summary.last_message?.sent_ms || 0));
}
