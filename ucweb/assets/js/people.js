// @ts-check
// People: presence (live and fetched), one's own availability and note, the contact list,
// the directory search, display names of people who are not contacts, and the journal.

import { $, messageOf } from './util.js';
import { t } from './i18n.js';
import * as api from './api.js';
import { state, me } from './state.js';
import {
  toast, renderMe, renderContacts, renderDirectory, renderConvs, renderChatHead, renderJournal,
} from './views.js';
import { renderCall, renderIncoming, renderForwarding } from './callview.js';

/** @import { PresenceView, SetPresence, UserId } from './wire.js' */

/**
 * A presence snapshot arrived; an older one than what this tab shows is dropped.
 * @param {PresenceView} view
 */
export function onPresence(view, render = true) {
  const old = state.presence.get(view.user);
  if (old && old.version > view.version && view.version !== 0) return;
  state.presence.set(view.user, view);
  if (state.me && view.user === state.me.user) renderMe();
  if (render) {
    renderContacts();
    if (state.current) renderChatHead();
    renderConvs();
  }
}

export async function refreshContacts() {
  try {
    state.contacts = await api.getContacts();
    for (const c of state.contacts) {
      state.names.set(c.user, c.display_name);
      const old = state.presence.get(c.user);
      if (!old || c.presence.version >= old.version) state.presence.set(c.user, c.presence);
    }
    renderContacts();
    renderConvs();
  } catch (e) {
    if (state.token) toast(t('error.generic', { msg: messageOf(e) }));
  }
}

export async function refreshMyPresence() {
  try {
    onPresence(await api.getPresence(me().user));
  } catch { /* the hello brings it */ }
}

/** @param {SetPresence} change */
export async function setMyPresence(change) {
  try {
    onPresence(await api.setPresence(change));
  } catch (e) {
    toast(t('error.generic', { msg: messageOf(e) }));
    renderMe();
  }
}

/** @param {UserId} user */
export async function addContact(user) {
  try {
    await api.putContact(user, { group: '' });
    await refreshContacts();
    renderDirectory();
  } catch (e) { toast(t('error.generic', { msg: messageOf(e) })); }
}

/** @param {UserId} user */
export async function removeContact(user) {
  try {
    await api.deleteContact(user);
    await refreshContacts();
    renderDirectory();
  } catch (e) { toast(t('error.generic', { msg: messageOf(e) })); }
}

/** @type {number | undefined} */
let searchTimer;
/** Numbers the searches: only the latest one's answer is shown. */
let searchSeq = 0;

/** The directory search field changed: search 200 ms after the last key. */
export function onDirectoryInput() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const q = $('dir-search', HTMLInputElement).value.trim();
    const mine = ++searchSeq;
    if (!q) { state.directory = null; renderDirectory(); return; }
    try {
      const users = await api.searchDirectory(q);
      if (mine !== searchSeq) return;
      for (const u of users) state.names.set(u.id, u.display_name);
      state.directory = users;
      renderDirectory();
    } catch (e) { toast(t('error.generic', { msg: messageOf(e) })); }
  }, 200);
}

/** Users whose names were asked for (once each, unless the lookup failed). */
const nameLookups = new Set();

/**
 * Callers, parties and forwarding targets need not be contacts: looks their names up once.
 * @param {(UserId | null | undefined)[]} users
 */
export function learnNames(users) {
  for (const user of users) {
    if (!user || !state.me || user === state.me.user || state.names.has(user) || nameLookups.has(user)) continue;
    nameLookups.add(user);
    api.searchDirectory(user).then((found) => {
      const hit = (found || []).find((u) => u.id === user);
      if (!hit) return;
      state.names.set(user, hit.display_name);
      renderCall();
      renderIncoming();
      renderJournal();
      renderForwarding();
    }).catch(() => nameLookups.delete(user));
  }
}

export async function loadJournal() {
  try {
    state.journal = await api.getJournal(100);
    learnNames(state.journal.filter((j) => j.kind === 'call').map((j) => j.party));
    renderJournal();
  } catch (e) { toast(t('error.generic', { msg: messageOf(e) })); }
}
