// @ts-check
// The WebSocket (`GET /api/v1/ws`, one per tab: each tab is its own device): frames in and
// out, a ping every 5 s (12 s of silence: the server is taken as gone), reconnecting with
// backoff (at once on `reconnect`), and commands with a `ref` that their
// `ack` or `error` settles. What the events mean is for the hooks main.js sets.

import { state, me, canCall } from './state.js';
import { API, ApiError, getMe } from './api.js';

/** @import { Ack, ClientCommand, ErrorCode, ErrorFrame, ServerEvent } from './wire.js' */

const PING_EVERY_MS = 5000;
const SILENT_LIMIT_MS = 12000;
const REQUEST_LIMIT_MS = 20000;

/**
 * @typedef {Object} SocketHooks
 * @property {(event: ServerEvent) => void} event every frame except the answers to `request`
 * @property {() => void} lost the socket is gone (closed or stopped): the server has ended
 *   this device's calls and ringing
 * @property {() => void} retrying a reconnect is scheduled
 */

/** @type {SocketHooks} */
let hooks = { event: () => {}, lost: () => {}, retrying: () => {} };

/** @param {SocketHooks} handlers */
export function setSocketHooks(handlers) {
  hooks = handlers;
}

/**
 * A command the server refused (`code` is its ErrorCode), or one that could not be sent
 * (`offline_here`) or got no answer in time (`timeout`).
 */
export class CommandError extends Error {
  /**
   * @param {ErrorCode | 'offline_here' | 'timeout'} code
   * @param {string} [message]
   */
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/** @type {Map<number, { resolve: (ack: Ack) => void, reject: (error: CommandError) => void, timer: number }>} */
const requests = new Map();
let nextRef = 1;
/** @type {number | undefined} */
let pinger;

/** Opens the socket with the session's token (closing any other first). */
export function startSocket() {
  stopSocket();
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = `token=${encodeURIComponent(state.token || '')}&device=${encodeURIComponent(me().device)}`
    + `&caps=${canCall ? 'chat,audio,video' : 'chat'}`;
  const ws = new WebSocket(`${proto}//${location.host}${API}/ws?${query}`);
  state.ws = ws;
  let lastFrame = Date.now();
  ws.onopen = () => {
    state.wsOpen = true;
    lastFrame = Date.now();
    sendDeviceState();
  };
  ws.onmessage = (frame) => {
    lastFrame = Date.now();
    /** @type {ServerEvent} */
    let event;
    try { event = JSON.parse(frame.data); } catch { return; }
    if ((event.type === 'ack' || event.type === 'error') && settle(event)) return;
    hooks.event(event);
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.wsOpen = false;
    clearInterval(pinger);
    lost();
    scheduleReconnect();
  };
  ws.onerror = () => { /* onclose follows */ };
  pinger = setInterval(() => {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - lastFrame > SILENT_LIMIT_MS) { ws.close(); return; }
    ws.send(JSON.stringify({ type: 'ping' }));
  }, PING_EVERY_MS);
}

/** Closes the socket for good (signing out): no reconnect. */
export function stopSocket() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = undefined;
  const ws = state.ws;
  state.ws = null;
  state.wsOpen = false;
  lost();
  if (ws) {
    clearInterval(pinger);
    try { ws.close(1000); } catch { /* closed */ }
  }
}

/** Closes the socket as if the network dropped it: it reconnects (for tests). */
export function dropSocket() {
  state.ws?.close();
}

/**
 * The server handed this user to another server (`reconnect`): connect again at once, with
 * the same token (the web front sends the socket to the server that serves the user now).
 */
export function reconnectNow() {
  state.backoff = 0;
  const ws = state.ws;
  if (!ws) return;
  state.ws = null;
  state.wsOpen = false;
  clearInterval(pinger);
  lost();
  try { ws.close(1000); } catch { /* closed */ }
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = undefined;
  if (state.token) startSocket();
}

/** Tries again after a growing pause (0.5 s doubling up to 15 s, ±25 %). */
export function scheduleReconnect() {
  if (!state.token) return;
  hooks.retrying();
  const delay = Math.min(15000, 500 * 2 ** state.backoff) * (0.75 + Math.random() * 0.5);
  state.backoff = Math.min(state.backoff + 1, 6);
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(async () => {
    // A revoked or expired token signs out (api.js); an unreachable server keeps trying.
    try { await getMe(); } catch (e) {
      if (!state.token) return;
      if (!(e instanceof ApiError) || e.status !== 401) { scheduleReconnect(); return; }
    }
    if (state.token) startSocket();
  }, delay);
}

/**
 * Sends a command if the socket is open; false if it is not.
 * @param {ClientCommand} command
 */
export function send(command) {
  if (state.ws && state.wsOpen) {
    state.ws.send(JSON.stringify(command));
    return true;
  }
  return false;
}

/** Tells the server whether this tab is in the foreground. */
export function sendDeviceState() {
  send({ type: 'device_state', active: !document.hidden });
}

/**
 * Sends a command with a fresh `ref`; resolves with its `ack`, rejects with a `CommandError`.
 * @param {ClientCommand} command
 * @returns {Promise<Ack>}
 */
export function request(command) {
  return new Promise((resolve, reject) => {
    const ref = nextRef++;
    if (!send({ ...command, ref })) { reject(new CommandError('offline_here')); return; }
    const timer = setTimeout(() => {
      requests.delete(ref);
      reject(new CommandError('timeout'));
    }, REQUEST_LIMIT_MS);
    requests.set(ref, { resolve, reject, timer });
  });
}

/**
 * Settles the request an `ack` or `error` answers; false if it answers none.
 * @param {Ack | ErrorFrame} event
 */
function settle(event) {
  const pending = event.ref !== undefined && requests.get(event.ref);
  if (!pending || event.ref === undefined) return false;
  requests.delete(event.ref);
  clearTimeout(pending.timer);
  if (event.type === 'ack') pending.resolve(event);
  else pending.reject(new CommandError(event.error, event.message));
  return true;
}

function lost() {
  for (const [ref, pending] of requests) {
    clearTimeout(pending.timer);
    pending.reject(new CommandError('offline_here'));
    requests.delete(ref);
  }
  hooks.lost();
}
