// @ts-check
// The REST API (`/api/v1`, docs/api.md): one function per route the client uses, each typed
// with the bodies of shared/src/api.rs. Every failure is an `ApiError`.

import { state } from './state.js';
import { t } from './i18n.js';

/**
 * @import { ApiErrorBody, ChatMessage, Contact, ConversationId, ConversationSummary,
 *   CreateConversation, ErrorCode, ForwardingRules, JournalEntry, LoginRequest, LoginResponse,
 *   MarkRead, PresenceView, PutContact, ReadMarker, SendMessage, SetPresence, UserId, UserInfo
 * } from './wire.js'
 */

export const API = '/api/v1';
const REQUEST_LIMIT_MS = 20000;

/** A request that failed: `status` 0 when the server could not be reached. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {ApiErrorBody | null} body
   */
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    /** @type {ErrorCode | `http_${number}`} */
    this.code = body?.error || `http_${status}`;
    this.body = body;
  }
}

/** @type {() => void} */
let onUnauthorized = () => {};

/**
 * What to do when the server no longer takes the token (401 on anything but the login).
 * @param {() => void} handler
 */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/**
 * One request. The answer is trusted to be what the route documents: each caller below names
 * that type (`T` follows from it).
 * @template T
 * @param {'GET' | 'POST' | 'PUT' | 'DELETE'} method
 * @param {string} path under /api/v1
 * @param {unknown} [body] sent as JSON
 * @returns {Promise<T>}
 */
async function request(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), REQUEST_LIMIT_MS);
  let res;
  try {
    res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: ctrl.signal });
  } catch {
    throw new ApiError(0, { error: 'server_unavailable', message: t('login.unreachable') });
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch { /* empty body */ }
  }
  if (!res.ok) {
    if (res.status === 401 && state.token && path !== '/login') onUnauthorized();
    throw new ApiError(res.status, data);
  }
  return data;
}

/** @param {string} part */
const enc = (part) => encodeURIComponent(part);

/**
 * @param {LoginRequest} login
 * @returns {Promise<LoginResponse>}
 */
export const login = (login) => request('POST', '/login', login);

/** @returns {Promise<null>} */
export const logout = () => request('POST', '/logout');

/** @returns {Promise<UserInfo>} */
export const getMe = () => request('GET', '/me');

/**
 * @param {UserId} user
 * @returns {Promise<PresenceView>}
 */
export const getPresence = (user) => request('GET', `/presence/${enc(user)}`);

/**
 * @param {SetPresence} change
 * @returns {Promise<PresenceView>}
 */
export const setPresence = (change) => request('PUT', '/presence', change);

/** @returns {Promise<Contact[]>} */
export const getContacts = () => request('GET', '/contacts');

/**
 * @param {UserId} user
 * @param {PutContact} contact
 * @returns {Promise<Contact>}
 */
export const putContact = (user, contact) => request('PUT', `/contacts/${enc(user)}`, contact);

/**
 * @param {UserId} user
 * @returns {Promise<null>}
 */
export const deleteContact = (user) => request('DELETE', `/contacts/${enc(user)}`);

/**
 * At most 50 users matching `query`.
 * @param {string} query
 * @returns {Promise<UserInfo[]>}
 */
export const searchDirectory = (query) => request('GET', `/directory?q=${enc(query)}`);

/** @returns {Promise<ConversationSummary[]>} */
export const getConversations = () => request('GET', '/conversations');

/**
 * An ad-hoc group, the caller included.
 * @param {CreateConversation} create
 * @returns {Promise<ConversationSummary>}
 */
export const createConversation = (create) => request('POST', '/conversations', create);

/**
 * @param {SendMessage} message
 * @returns {Promise<ChatMessage>}
 */
export const sendMessage = (message) => request('POST', '/messages', message);

/**
 * A page of history, ascending by seq: the latest, or the one before `before`.
 * @param {ConversationId} conversation
 * @param {number} limit
 * @param {number | null} before
 * @returns {Promise<ChatMessage[]>}
 */
export const getMessages = (conversation, limit, before) =>
  request('GET', `/conversations/${enc(conversation)}/messages?limit=${limit}${before ? `&before=${before}` : ''}`);

/**
 * Every member's read marker.
 * @param {ConversationId} conversation
 * @returns {Promise<ReadMarker[]>}
 */
export const getReadMarkers = (conversation) => request('GET', `/conversations/${enc(conversation)}/read`);

/**
 * @param {ConversationId} conversation
 * @param {MarkRead} mark
 * @returns {Promise<ReadMarker>}
 */
export const markRead = (conversation, mark) => request('POST', `/conversations/${enc(conversation)}/read`, mark);

/**
 * Newest first.
 * @param {number} limit
 * @returns {Promise<JournalEntry[]>}
 */
export const getJournal = (limit) => request('GET', `/journal?limit=${limit}`);

/**
 * @param {UserId} user
 * @returns {Promise<ForwardingRules>}
 */
export const getForwarding = (user) => request('GET', `/users/${enc(user)}/forwarding`);
