// Switchboard web client: plain ES module, no build step, no network beyond its own origin.
// REST under /api/v1, one WebSocket per tab (each tab is its own device).

const API = '/api/v1';
const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
};

// ------------------------------------------------------------------------------ i18n
const LANGS = ['en', 'de'];
const dicts = {};
let lang = localStorage.getItem('sb.lang')
  || ((navigator.language || 'en').toLowerCase().startsWith('de') ? 'de' : 'en');

function t(key, vars = {}) {
  const text = (dicts[lang] && dicts[lang][key]) ?? (dicts.en && dicts.en[key]) ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

async function loadLang(code) {
  if (!dicts[code]) {
    const res = await fetch(`/i18n/${code}.json`);
    dicts[code] = await res.json();
  }
}

function applyI18n() {
  document.documentElement.lang = lang;
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll('[data-i18n-label]')) node.setAttribute('aria-label', t(node.dataset.i18nLabel));
  for (const node of document.querySelectorAll('[data-i18n-placeholder]')) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of document.querySelectorAll('.lang-toggle')) {
    node.textContent = t('lang.short');
    node.title = t('lang.toggle');
  }
}

async function toggleLang() {
  lang = lang === 'en' ? 'de' : 'en';
  localStorage.setItem('sb.lang', lang);
  await loadLang(lang);
  applyI18n();
  if (state.me) renderAll();
}

// ------------------------------------------------------------------------------ state
const state = {
  token: null,
  me: null,            // { user, display_name, device }
  names: new Map(),    // user id -> display name
  presence: new Map(), // user id -> PresenceView
  contacts: [],        // [Contact]
  convs: new Map(),    // id -> { summary, messages: Map(seq -> msg), pending: Map(client_id -> msg), oldest, complete, others: Map(user -> seq), loaded }
  current: null,       // open conversation id
  typing: new Map(),   // conv id -> Map(user -> expiry ms)
  tab: 'contacts',
  ws: null,
  wsOpen: false,
  backoff: 0,
  reconnectTimer: null,
  connectedOnce: false,
  journal: [],
};

function deviceId() {
  let id = sessionStorage.getItem('sb.device');
  if (!id || !/^[a-z0-9._-]{1,64}$/.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    id = 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    sessionStorage.setItem('sb.device', id);
  }
  return id;
}

function nameOf(user) {
  if (state.me && user === state.me.user) return state.me.display_name || user;
  return state.names.get(user) || user;
}

function initials(name) {
  const parts = String(name).trim().split(/[\s._-]+/).filter(Boolean);
  return ((parts[0]?.[0] || '?') + (parts[1]?.[0] || '')).toUpperCase();
}

function avatar(user, extraClass = '') {
  const name = nameOf(user);
  const hue = [...user].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
  const node = el('span', { class: `avatar hue-${hue % 12} ${extraClass}`, 'aria-hidden': 'true' }, initials(name));
  return node;
}

// ------------------------------------------------------------------------------ REST
class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error || 'http_' + status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), 20000);
  let res;
  try {
    res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: ctrl.signal });
  } catch (e) {
    throw new ApiError(0, { error: 'server_unavailable', message: t('login.unreachable') });
  } finally {
    clearTimeout(timer);
  }
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch { /* empty body */ }
  if (!res.ok) {
    if (res.status === 401 && state.token && path !== '/login') signOut(false);
    throw new ApiError(res.status, data);
  }
  return data;
}

function toast(text) {
  const node = $('toast');
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 5000);
}

// ------------------------------------------------------------------------------ sign in / out
async function signIn(event) {
  event.preventDefault();
  const user = $('login-user').value.trim().toLowerCase();
  const password = $('login-password').value;
  const error = $('login-error');
  const button = $('login-submit');
  error.textContent = '';
  button.disabled = true;
  button.textContent = t('login.busy');
  if ('Notification' in window && Notification.permission === 'default') {
    Notification.requestPermission().catch(() => {});
  }
  try {
    const res = await api('POST', '/login', { user, password, device: deviceId() });
    state.token = res.token;
    state.me = { user: res.user, display_name: res.display_name, device: deviceId() };
    sessionStorage.setItem('sb.session', JSON.stringify({ token: res.token, me: state.me }));
    $('login-password').value = '';
    await startApp();
  } catch (e) {
    if (e.code === 'invalid_credentials') error.textContent = t('login.failed');
    else if (e.code === 'too_many_attempts') error.textContent = t('login.throttled', { s: Math.ceil((e.body?.retry_after_ms || 1000) / 1000) });
    else if (e.code === 'license_exhausted') error.textContent = t('login.license');
    else if (e.status === 0 || e.status >= 500) error.textContent = t('login.unreachable');
    else error.textContent = e.message;
  } finally {
    button.disabled = false;
    button.textContent = t('login.submit');
  }
}

async function signOut(callServer = true) {
  const token = state.token;
  stopSocket();
  if (callServer && token) {
    try { await api('POST', '/logout'); } catch { /* ignore */ }
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
  $('banner').hidden = true;
  document.title = t('app.name');
  $('login-user').focus();
}

// ------------------------------------------------------------------------------ WebSocket
function startSocket() {
  stopSocket();
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${proto}//${location.host}${API}/ws?token=${encodeURIComponent(state.token)}&device=${encodeURIComponent(state.me.device)}&caps=chat`;
  const ws = new WebSocket(url);
  state.ws = ws;
  let lastFrame = Date.now();
  ws.onopen = () => {
    state.wsOpen = true;
    lastFrame = Date.now();
    sendDeviceState();
  };
  ws.onmessage = (ev) => {
    lastFrame = Date.now();
    let event;
    try { event = JSON.parse(ev.data); } catch { return; }
    handleEvent(event);
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.wsOpen = false;
    clearInterval(ws.pinger);
    scheduleReconnect();
  };
  ws.onerror = () => { /* onclose follows */ };
  ws.pinger = setInterval(() => {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - lastFrame > 60000) { ws.close(); return; }
    ws.send(JSON.stringify({ type: 'ping' }));
  }, 25000);
}

function stopSocket() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  const ws = state.ws;
  state.ws = null;
  state.wsOpen = false;
  if (ws) {
    clearInterval(ws.pinger);
    try { ws.close(1000); } catch { /* ignore */ }
  }
}

function scheduleReconnect() {
  if (!state.token) return;
  showBanner(t('banner.reconnecting'));
  const delay = Math.min(15000, 500 * 2 ** state.backoff) * (0.75 + Math.random() * 0.5);
  state.backoff = Math.min(state.backoff + 1, 6);
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(async () => {
    // A revoked or expired token makes api() sign out; the server unreachable keeps trying.
    try { await api('GET', '/me'); } catch (e) {
      if (!state.token) return;
      if (e.status !== 401) { scheduleReconnect(); return; }
    }
    if (state.token) startSocket();
  }, delay);
}

function wsSend(obj) {
  if (state.ws && state.wsOpen) {
    state.ws.send(JSON.stringify(obj));
    return true;
  }
  return false;
}

function sendDeviceState() {
  wsSend({ type: 'device_state', active: !document.hidden });
}

function showBanner(text) {
  const b = $('banner');
  b.textContent = text;
  b.hidden = false;
}

function handleEvent(ev) {
  switch (ev.type) {
    case 'hello': onHello(ev); break;
    case 'presence': onPresence(ev.presence); break;
    case 'message': onMessage(ev.message, ev.alert, ev.replay); break;
    case 'read': onRead(ev.conversation, ev.user, ev.seq); break;
    case 'typing': onTyping(ev.conversation, ev.user, ev.typing); break;
    case 'conversation': upsertConv(ev.conversation); renderConvs(); if (state.current === ev.conversation.id) renderChatHead(); break;
    case 'goodbye': if (state.ws) state.ws.close(); break;
    case 'error': console.warn('server error', ev.error, ev.message); break;
    default: break;
  }
}

function onHello(ev) {
  const reconnect = state.connectedOnce;
  state.connectedOnce = true;
  state.backoff = 0;
  $('banner').hidden = true;
  for (const p of ev.presence || []) onPresence(p, false);
  // Ask for everything after what this tab already holds, so nothing is lost during a drop.
  const since = {};
  for (const summary of ev.conversations || []) {
    const known = state.convs.get(summary.id);
    if (known && known.loaded) since[summary.id] = maxSeq(known);
    upsertConv(summary);
  }
  if (reconnect) {
    for (const [id, conv] of state.convs) if (conv.loaded && !(id in since)) since[id] = maxSeq(conv);
  }
  if (Object.keys(since).length) wsSend({ type: 'sync', since });
  renderAll();
  if (reconnect) refreshContacts();
  if (state.current) markReadIfVisible(state.current);
}

function maxSeq(conv) {
  let max = 0;
  for (const seq of conv.messages.keys()) if (seq > max) max = seq;
  return max;
}

// ------------------------------------------------------------------------------ presence & contacts
function onPresence(view, render = true) {
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

function availabilityOf(user) {
  return state.presence.get(user)?.availability || 'offline';
}

function presenceText(view) {
  if (!view) return t('av.offline');
  const parts = [t('av.' + view.availability)];
  if (view.telephony && view.telephony !== 'idle') parts.push(t('tel.' + view.telephony));
  return parts.join(' · ');
}

async function refreshContacts() {
  try {
    state.contacts = await api('GET', '/contacts');
    for (const c of state.contacts) {
      state.names.set(c.user, c.display_name);
      const old = state.presence.get(c.user);
      if (!old || c.presence.version >= old.version) state.presence.set(c.user, c.presence);
    }
    renderContacts();
    renderConvs();
  } catch (e) {
    if (state.token) toast(t('error.generic', { msg: e.message }));
  }
}

async function refreshMyPresence() {
  try {
    const view = await api('GET', `/presence/${encodeURIComponent(state.me.user)}`);
    onPresence(view);
  } catch { /* ignore */ }
}

async function setMyPresence(change) {
  try {
    const view = await api('PUT', '/presence', change);
    onPresence(view);
  } catch (e) {
    toast(t('error.generic', { msg: e.message }));
    renderMe();
  }
}

async function addContact(user, group = '') {
  try {
    await api('PUT', `/contacts/${encodeURIComponent(user)}`, { group });
    await refreshContacts();
    renderDirectory();
  } catch (e) { toast(t('error.generic', { msg: e.message })); }
}

async function removeContact(user) {
  try {
    await api('DELETE', `/contacts/${encodeURIComponent(user)}`);
    await refreshContacts();
    renderDirectory();
  } catch (e) { toast(t('error.generic', { msg: e.message })); }
}

let dirResults = null;
let dirTimer = null;
let dirSeq = 0;
function onDirInput() {
  clearTimeout(dirTimer);
  dirTimer = setTimeout(async () => {
    const q = $('dir-search').value.trim();
    const mine = ++dirSeq;
    if (!q) { dirResults = null; renderDirectory(); return; }
    try {
      const users = await api('GET', `/directory?q=${encodeURIComponent(q)}`);
      if (mine !== dirSeq) return;
      for (const u of users) state.names.set(u.id, u.display_name);
      dirResults = users;
      renderDirectory();
    } catch (e) { toast(t('error.generic', { msg: e.message })); }
  }, 200);
}

// ------------------------------------------------------------------------------ conversations
function directId(a, b) {
  return a <= b ? `d:${a}:${b}` : `d:${b}:${a}`;
}

function otherOf(summary) {
  if (summary.kind !== 'direct') return null;
  const m = summary.id.match(/^d:([^:]+):([^:]+)$/);
  if (!m) return summary.members.find((u) => u !== state.me.user) || null;
  return m[1] === state.me.user ? m[2] : m[1];
}

function convName(summary) {
  if (summary.kind === 'direct') return nameOf(otherOf(summary));
  return summary.name || summary.members.map(nameOf).join(', ');
}

function newConv(summary) {
  return { summary, messages: new Map(), pending: new Map(), oldest: null, complete: false, others: new Map(), loaded: false, loading: false };
}

function upsertConv(summary) {
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
  if (summary.last_message) addMessage(conv, summary.last_message, false);
  return conv;
}

function unreadOf(conv) {
  return Math.max(0, (conv.summary.last_seq || 0) - (conv.summary.last_read_seq || 0));
}

function addMessage(conv, msg, countUnread = true) {
  if (conv.messages.has(msg.seq)) return false; // dedupe by conversation + seq
  conv.messages.set(msg.seq, msg);
  if (msg.client_id) conv.pending.delete(msg.client_id);
  const s = conv.summary;
  if (msg.seq > (s.last_seq || 0)) s.last_seq = msg.seq;
  if (!s.last_message || msg.seq >= s.last_message.seq) s.last_message = msg;
  // One's own message is read by definition.
  if (state.me && msg.sender === state.me.user && s.last_read_seq === msg.seq - 1) s.last_read_seq = msg.seq;
  if (conv.oldest === null && !countUnread) { /* summary preview only */ }
  return true;
}

function onMessage(msg, alert, replay) {
  let conv = state.convs.get(msg.conversation);
  if (!conv) {
    // A conversation this tab has not seen yet: make a provisional one and fetch the real one.
    const direct = msg.conversation.startsWith('d:');
    const members = direct ? msg.conversation.slice(2).split(':') : [msg.sender, state.me.user];
    conv = newConv({ id: msg.conversation, kind: direct ? 'direct' : 'group', name: '', members, last_seq: 0, last_read_seq: 0, unread: 0 });
    state.convs.set(msg.conversation, conv);
    refreshConversations();
  }
  const fresh = addMessage(conv, msg);
  if (!fresh) return;
  if (state.current === msg.conversation) {
    renderMessages({ stick: true });
    markReadIfVisible(msg.conversation);
  }
  renderConvs();
  if (alert && !replay && document.hidden && msg.sender !== state.me.user) notify(conv, msg);
  // A message from someone ends their typing indicator.
  clearTyping(msg.conversation, msg.sender);
}

async function refreshConversations() {
  try {
    const list = await api('GET', '/conversations');
    for (const s of list) upsertConv(s);
    renderConvs();
  } catch { /* the next event retries */ }
}

function onRead(convId, user, seq) {
  const conv = state.convs.get(convId);
  if (!conv) return;
  if (user === state.me.user) {
    if (seq > conv.summary.last_read_seq) conv.summary.last_read_seq = seq;
    renderConvs();
  } else {
    if (seq > (conv.others.get(user) || 0)) conv.others.set(user, seq);
    if (state.current === convId) renderMessages({ keep: true });
  }
}

function onTyping(convId, user, typing) {
  if (user === state.me.user) return;
  let map = state.typing.get(convId);
  if (!map) { map = new Map(); state.typing.set(convId, map); }
  if (typing) map.set(user, Date.now() + 8000);
  else map.delete(user);
  renderTyping();
}

function clearTyping(convId, user) {
  const map = state.typing.get(convId);
  if (map && map.delete(user)) renderTyping();
}

setInterval(() => {
  const now = Date.now();
  let changed = false;
  for (const map of state.typing.values()) for (const [u, exp] of map) if (exp < now) { map.delete(u); changed = true; }
  if (changed) renderTyping();
}, 1000);

function notify(conv, msg) {
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

async function loadHistory(conv, older) {
  if (conv.loading || (older && conv.complete)) return;
  conv.loading = true;
  renderOlder();
  const id = encodeURIComponent(conv.summary.id);
  const before = older && conv.oldest ? `&before=${conv.oldest}` : '';
  try {
    const page = await api('GET', `/conversations/${id}/messages?limit=50${before}`);
    for (const m of page) addMessage(conv, m, false);
    if (page.length < 50) conv.complete = true;
    const first = page.length ? page[0].seq : null;
    if (first !== null && (conv.oldest === null || first < conv.oldest)) conv.oldest = first;
    if (first === 1) conv.complete = true;
    conv.loaded = true;
  } catch (e) {
    if (e.status === 404 || e.code === 'not_a_member' || e.code === 'not_found') { conv.complete = true; conv.loaded = true; }
    else toast(t('error.generic', { msg: e.message }));
  } finally {
    conv.loading = false;
  }
}

async function openConversation(id, summaryIfNew) {
  let conv = state.convs.get(id);
  if (!conv) {
    conv = newConv(summaryIfNew);
    state.convs.set(id, conv);
  }
  state.current = id;
  document.body.classList.add('show-pane');
  $('pane-empty').hidden = true;
  $('chat').hidden = false;
  renderChatHead();
  renderMessages({ stick: true });
  renderTyping();
  renderConvs();
  $('compose-input').value = '';
  if (!conv.loaded) {
    await loadHistory(conv, false);
    if (state.current !== id) return;
    renderMessages({ stick: true });
  }
  markReadIfVisible(id);
  if (matchMedia('(min-width: 721px)').matches) $('compose-input').focus();
  else $('back-btn').focus();
}

function openDirect(user) {
  const id = directId(state.me.user, user);
  return openConversation(id, {
    id, kind: 'direct', name: nameOf(user), members: [state.me.user, user].sort(), last_seq: 0, last_read_seq: 0, unread: 0,
  });
}

function closeConversation() {
  document.body.classList.remove('show-pane');
  const id = state.current;
  state.current = null;
  renderConvs();
  const row = id && document.querySelector(`[data-conv="${CSS.escape(id)}"] button`);
  if (row) row.focus();
}

function markReadIfVisible(id) {
  const conv = state.convs.get(id);
  if (!conv || document.hidden || state.current !== id) return;
  const last = conv.summary.last_seq || 0;
  if (last > (conv.summary.last_read_seq || 0)) {
    conv.summary.last_read_seq = last;
    if (!wsSend({ type: 'read', conversation: id, seq: last })) {
      api('POST', `/conversations/${encodeURIComponent(id)}/read`, { seq: last }).catch(() => {});
    }
    renderConvs();
  }
}

let typingSentAt = 0;
let typingStopTimer = null;
function onComposeInput() {
  autoGrow();
  if (!state.current) return;
  const now = Date.now();
  if (now - typingSentAt > 3000) {
    typingSentAt = now;
    wsSend({ type: 'typing', conversation: state.current, typing: true });
  }
  clearTimeout(typingStopTimer);
  typingStopTimer = setTimeout(stopTyping, 4000);
}

function stopTyping() {
  clearTimeout(typingStopTimer);
  if (typingSentAt && state.current) wsSend({ type: 'typing', conversation: state.current, typing: false });
  typingSentAt = 0;
}

function autoGrow() {
  const ta = $('compose-input');
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight, 160) + 'px';
}

async function sendCurrent(event) {
  event?.preventDefault();
  const input = $('compose-input');
  const body = input.value.replace(/\s+$/, '');
  if (!body.trim() || !state.current) return;
  input.value = '';
  autoGrow();
  stopTyping();
  const conv = state.convs.get(state.current);
  const clientId = 'c' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  const pending = { client_id: clientId, body, sender: state.me.user, sent_ms: Date.now(), state: 'sending' };
  conv.pending.set(clientId, pending);
  renderMessages({ stick: true });
  await deliver(conv, pending);
}

async function deliver(conv, pending) {
  const s = conv.summary;
  const req = s.kind === 'direct' && !conv.messages.size && !s.last_seq
    ? { to: otherOf(s), body: pending.body, client_id: pending.client_id }
    : { conversation: s.id, body: pending.body, client_id: pending.client_id };
  pending.state = 'sending';
  try {
    const msg = await api('POST', '/messages', req);
    if (msg.conversation !== s.id && !state.convs.has(msg.conversation)) state.convs.set(msg.conversation, conv);
    addMessage(conv, msg);
    conv.loaded = true;
    if (state.current === s.id) { renderMessages({ stick: true }); markReadIfVisible(s.id); }
    renderConvs();
  } catch (e) {
    pending.state = 'failed';
    toast(t('error.generic', { msg: e.message }));
    if (state.current === s.id) renderMessages({ keep: true });
  }
}

async function createGroup(event) {
  event.preventDefault();
  const name = $('group-name').value.trim();
  const members = [...document.querySelectorAll('#group-members input:checked')].map((i) => i.value);
  if (!members.length) { $('group-error').textContent = t('group.need_members'); return; }
  try {
    const summary = await api('POST', '/conversations', { name, members });
    upsertConv(summary);
    $('group-dialog').close();
    setTab('chats');
    openConversation(summary.id);
  } catch (e) {
    $('group-error').textContent = e.message;
  }
}

function openGroupDialog() {
  $('group-error').textContent = '';
  $('group-name').value = '';
  const box = $('group-members');
  box.replaceChildren();
  if (!state.contacts.length) box.append(el('p', { class: 'muted', text: t('group.no_contacts') }));
  for (const c of state.contacts) {
    const id = `gm-${c.user}`;
    box.append(el('div', { class: 'check' },
      el('input', { type: 'checkbox', id, value: c.user }),
      el('label', { for: id }, avatar(c.user, 'small'), ' ', c.display_name)));
  }
  $('group-dialog').showModal();
  $('group-name').focus();
}

async function loadJournal() {
  try {
    state.journal = await api('GET', '/journal?limit=100');
    renderJournal();
  } catch (e) { toast(t('error.generic', { msg: e.message })); }
}

// ------------------------------------------------------------------------------ rendering
const ICONS = {
  'call-in': 'M21 3l-7 7M14 4v6h6M5 4h3l2 5-2.5 1.5a11 11 0 0 0 5 5L14 13l5 2v3a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z',
  'call-out': 'M14 10l7-7M15 3h6v6M5 4h3l2 5-2.5 1.5a11 11 0 0 0 5 5L14 13l5 2v3a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z',
  chat: 'M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z',
  logout: 'M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4M16 17l5-5-5-5M21 12H9',
  bell: 'M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9M13.7 21a2 2 0 0 1-3.4 0',
  back: 'M19 12H5M12 19l-7-7 7-7',
  send: 'M22 2L11 13M22 2l-7 20-4-9-9-4 20-7z',
};
function svgIcon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'svg-icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

function fmtTime(ms) {
  const d = new Date(ms);
  const now = new Date();
  const locale = lang === 'de' ? 'de-DE' : 'en-GB';
  const time = d.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return time;
  const y = new Date(now); y.setDate(now.getDate() - 1);
  if (d.toDateString() === y.toDateString()) return `${t('yesterday')} ${time}`;
  return d.toLocaleDateString(locale, { day: 'numeric', month: 'short' }) + ' ' + time;
}

function renderAll() {
  renderMe();
  renderContacts();
  renderDirectory();
  renderConvs();
  renderJournal();
  if (state.current) { renderChatHead(); renderMessages({ keep: true }); renderTyping(); }
}

function renderMe() {
  if (!state.me) return;
  const view = state.presence.get(state.me.user);
  $('me-name').textContent = state.me.display_name || state.me.user;
  $('me-id').textContent = '@' + state.me.user;
  $('me-avatar').replaceWith(Object.assign(avatar(state.me.user), { id: 'me-avatar' }));
  const av = view?.availability || 'available';
  $('me-dot').className = `dot ${av}`;
  const select = $('status-select');
  if (document.activeElement !== select) select.value = av;
  const note = $('note-input');
  if (document.activeElement !== note) note.value = view?.note || '';
}

function renderContacts() {
  const list = $('contact-list');
  if (!state.me) return;
  list.replaceChildren();
  if (!state.contacts.length) {
    list.append(el('p', { class: 'empty muted', text: t('contacts.empty') }));
    return;
  }
  const groups = new Map();
  for (const c of state.contacts) {
    const g = c.group || '';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(c);
  }
  const rank = { available: 0, busy: 1, dnd: 2, away: 3, offline: 4 };
  const names = [...groups.keys()].sort((a, b) => (a === '') - (b === '') || a.localeCompare(b));
  for (const g of names) {
    const members = groups.get(g).sort((a, b) =>
      rank[availabilityOf(a.user)] - rank[availabilityOf(b.user)] || a.display_name.localeCompare(b.display_name));
    const online = members.filter((c) => availabilityOf(c.user) !== 'offline').length;
    const headId = `cg-${g || 'none'}`.replace(/[^a-z0-9_-]/gi, '_');
    list.append(el('h3', { class: 'group-head', id: headId }, g || t('contacts.nogroup'), el('span', { class: 'muted' }, ` ${online}/${members.length}`)));
    const ul = el('ul', { class: 'contact-group', 'aria-labelledby': headId });
    for (const c of members) {
      const view = state.presence.get(c.user) || c.presence;
      const av = view?.availability || 'offline';
      const note = view?.note || '';
      const status = presenceText(view);
      ul.append(el('li', { class: 'contact', dataset: { user: c.user, availability: av } },
        el('button', { type: 'button', class: 'row-main', 'aria-label': `${t('contacts.chat', { name: c.display_name })} — ${status}${note ? ' — ' + note : ''}`, onclick: () => openDirect(c.user) },
          el('span', { class: 'avatar-wrap' }, avatar(c.user), el('span', { class: `dot ${av}`, 'aria-hidden': 'true' })),
          el('span', { class: 'row-text' },
            el('span', { class: 'row-title' }, c.display_name),
            el('span', { class: 'row-sub' },
              el('span', { class: `av-label ${av}` }, status),
              note ? el('span', { class: 'note' }, ' — ' + note) : null))),
        el('button', { type: 'button', class: 'icon-btn remove', 'aria-label': t('contacts.remove', { name: c.display_name }), title: t('contacts.remove', { name: c.display_name }), onclick: () => removeContact(c.user) }, '×')));
    }
    list.append(ul);
  }
}

function renderDirectory() {
  const box = $('dir-results');
  box.replaceChildren();
  if (!dirResults || !state.me) return;
  if (!dirResults.length) { box.append(el('p', { class: 'muted empty', text: t('dir.none') })); return; }
  const ul = el('ul', { class: 'list', 'aria-label': t('dir.results') });
  for (const u of dirResults) {
    const isMe = u.id === state.me.user;
    const isContact = state.contacts.some((c) => c.user === u.id);
    ul.append(el('li', { class: 'dir-row', dataset: { user: u.id } },
      el('span', { class: 'avatar-wrap' }, avatar(u.id), el('span', { class: `dot ${state.presence.get(u.id)?.availability || (u.online ? 'available' : 'offline')}`, 'aria-hidden': 'true' })),
      el('span', { class: 'row-text' }, el('span', { class: 'row-title' }, u.display_name), el('span', { class: 'row-sub muted' }, '@' + u.id)),
      isMe ? el('span', { class: 'muted small', text: t('dir.you') })
        : isContact ? el('span', { class: 'muted small', text: t('dir.is_contact') })
          : el('button', { type: 'button', class: 'secondary small-btn', 'aria-label': t('dir.add_label', { name: u.display_name }), onclick: () => addContact(u.id) }, t('dir.add'))));
  }
  box.append(ul);
}

function sortedConvs() {
  return [...state.convs.values()]
    .filter((c) => c.summary.last_seq > 0 || c.messages.size || c.summary.kind === 'group' || c.summary.id === state.current)
    .sort((a, b) => (b.summary.last_message?.sent_ms || 0) - (a.summary.last_message?.sent_ms || 0));
}

function renderConvs() {
  if (!state.me) return;
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
    const preview = last ? (last.sender === state.me.user ? t('chats.you') : (s.kind === 'group' ? nameOf(last.sender) + ': ' : '')) + last.body : '';
    const name = convName(s);
    list.append(el('li', { class: `conv ${state.current === s.id ? 'active' : ''} ${unread ? 'has-unread' : ''}`, dataset: { conv: s.id } },
      el('button', { type: 'button', class: 'row-main', 'aria-current': state.current === s.id ? 'true' : null, 'aria-label': `${name}${unread ? ', ' + t('chats.unread', { n: unread }) : ''}`, onclick: () => openConversation(s.id) },
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

function renderChatHead() {
  const conv = state.convs.get(state.current);
  if (!conv) return;
  const s = conv.summary;
  const other = otherOf(s);
  $('chat-name').textContent = convName(s);
  const av = other ? avatar(other) : el('span', { class: 'avatar group' }, '#');
  av.id = 'chat-avatar';
  av.setAttribute('aria-hidden', 'true');
  $('chat-avatar').replaceWith(av);
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

function renderOlder() {
  const conv = state.convs.get(state.current);
  const node = $('older');
  if (!conv) return;
  node.textContent = conv.loading ? t('messages.loading') : conv.complete ? t('messages.start') : t('messages.older');
}

function renderMessages({ stick = false, keep = false } = {}) {
  const conv = state.convs.get(state.current);
  if (!conv) return;
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const list = $('message-list');
  list.replaceChildren();
  const msgs = [...conv.messages.values()].sort((a, b) => a.seq - b.seq);
  // Only show a contiguous tail (the summary preview alone is shown once history loads).
  const shown = conv.oldest === null ? (conv.loaded ? msgs : []) : msgs.filter((m) => m.seq >= conv.oldest);
  const readers = [...conv.others.entries()];
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

function dayLabel(ms) {
  const d = new Date(ms);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return t('today');
  const y = new Date(now); y.setDate(now.getDate() - 1);
  if (d.toDateString() === y.toDateString()) return t('yesterday');
  return d.toLocaleDateString(lang === 'de' ? 'de-DE' : 'en-GB', { weekday: 'short', day: 'numeric', month: 'long' });
}

function messageNode(m, prev, readers, conv) {
  const mine = m.sender === state.me.user;
  const grouped = prev && prev.sender === m.sender && m.sent_ms - prev.sent_ms < 5 * 60000;
  const li = el('li', { class: `msg ${mine ? 'mine' : 'theirs'} ${grouped ? 'grouped' : ''} ${m.state || ''}`, dataset: { seq: m.seq ?? '', sender: m.sender } });
  if (!mine && !grouped && conv.summary.kind === 'group') li.append(el('div', { class: 'sender' }, nameOf(m.sender)));
  const bubble = el('div', { class: 'bubble' });
  bubble.append(el('span', { class: 'body' }, m.body));
  const meta = el('span', { class: 'meta' }, fmtTime(m.sent_ms).replace(/^.* (\d\d:\d\d)$/, '$1'));
  if (mine) {
    if (m.state === 'sending') meta.append(el('span', { class: 'tick', title: t('messages.sending'), 'aria-label': t('messages.sending') }, ' ⏱'));
    else if (m.state === 'failed') {
      meta.append(el('button', { type: 'button', class: 'link retry', 'aria-label': t('messages.failed'), onclick: () => deliver(conv, m) }, ' ⚠ ' + t('messages.failed')));
    } else {
      const by = readers.filter(([u, seq]) => u !== state.me.user && seq >= m.seq).map(([u]) => nameOf(u));
      const read = by.length > 0;
      const label = read ? t('messages.read_by', { names: by.join(', ') }) : t('messages.sent');
      meta.append(el('span', { class: `tick ${read ? 'read' : ''}`, title: label, role: 'img', 'aria-label': label }, read ? ' ✓✓' : ' ✓'));
    }
  }
  bubble.append(meta);
  li.append(bubble);
  return li;
}

function renderTyping() {
  const node = $('typing');
  const map = state.current && state.typing.get(state.current);
  const names = map ? [...map.keys()].map(nameOf) : [];
  node.textContent = names.length === 0 ? '' : names.length === 1 ? t('typing.one', { name: names[0] }) : t('typing.many', { names: names.join(', ') });
}

function renderJournal() {
  const list = $('journal-list');
  if (!state.me) return;
  list.replaceChildren();
  if (!state.journal.length) { list.append(el('li', { class: 'empty muted', text: t('journal.empty') })); return; }
  for (const j of state.journal) {
    const missed = j.kind === 'call' && j.result === 'missed';
    const icon = svgIcon(j.kind === 'call' ? (j.direction === 'incoming' ? 'call-in' : 'call-out') : 'chat');
    const what = j.kind === 'call'
      ? (missed ? t('journal.missed') : t(j.direction === 'incoming' ? 'journal.call_in' : 'journal.call_out')) + (j.result && !missed ? ' · ' + t('journal.result.' + j.result) : '')
      : t(j.messages === 1 ? 'journal.message_one' : 'journal.messages', { n: j.messages }) + (j.summary ? ' — ' + j.summary : '');
    let duration = '';
    if (j.kind === 'call' && j.answered_ms && j.ended_ms) {
      const s = Math.round((j.ended_ms - j.answered_ms) / 1000);
      duration = ` · ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
    }
    const party = j.conversation && j.conversation.startsWith('d:') ? nameOf(j.party) : j.party;
    const content = [
      el('span', { class: 'j-icon', 'aria-hidden': 'true' }, icon),
      el('span', { class: 'row-text' },
        el('span', { class: 'row-title' }, el('span', { class: 'title-text' }, party), el('span', { class: 'time muted small' }, fmtTime(j.started_ms))),
        el('span', { class: 'row-sub' }, el('span', { class: 'preview' }, what + duration))),
    ];
    const li = el('li', { class: `journal j-${j.kind} ${missed ? 'missed' : ''}` });
    if (j.conversation) li.append(el('button', { type: 'button', class: 'row-main', onclick: () => { const c = state.convs.get(j.conversation); if (c) openConversation(j.conversation); } }, ...content));
    else li.append(el('div', { class: 'row-main' }, ...content));
    list.append(li);
  }
}

function setTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll('[role=tab]')) {
    const on = b.dataset.tab === tab;
    b.setAttribute('aria-selected', on ? 'true' : 'false');
    b.tabIndex = on ? 0 : -1;
  }
  for (const name of ['contacts', 'chats', 'journal']) $(`panel-${name}`).hidden = name !== tab;
  if (tab === 'journal') loadJournal();
}

// ------------------------------------------------------------------------------ start
async function startApp() {
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  renderMe();
  setTab(state.tab);
  showBanner(t('banner.connecting'));
  startSocket();
  refreshContacts();
  refreshMyPresence();
  refreshConversations();
  updateNotifyButton();
}

function updateNotifyButton() {
  $('notify-btn').hidden = !('Notification' in window) || Notification.permission !== 'default';
}

function wire() {
  for (const node of document.querySelectorAll('[data-icon]')) node.replaceChildren(svgIcon(node.dataset.icon));
  $('login-form').addEventListener('submit', signIn);
  $('logout-btn').addEventListener('click', () => signOut(true));
  for (const b of document.querySelectorAll('.lang-toggle')) b.addEventListener('click', toggleLang);
  $('notify-btn').addEventListener('click', async () => {
    try { await Notification.requestPermission(); } catch { /* ignore */ }
    updateNotifyButton();
  });
  $('status-select').addEventListener('change', (e) => setMyPresence({ availability: e.target.value }));
  $('note-input').addEventListener('change', (e) => setMyPresence({ note: e.target.value.trim() }));
  $('note-input').addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); e.target.blur(); } });
  $('dir-search').addEventListener('input', onDirInput);
  $('dir-search').addEventListener('search', onDirInput);
  $('dir-search').addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.target.value = ''; onDirInput(); } });
  const tabs = [...document.querySelectorAll('[role=tab]')];
  for (const b of tabs) {
    b.addEventListener('click', () => setTab(b.dataset.tab));
    b.addEventListener('keydown', (e) => {
      const i = tabs.indexOf(b);
      const next = e.key === 'ArrowRight' ? tabs[(i + 1) % tabs.length] : e.key === 'ArrowLeft' ? tabs[(i + tabs.length - 1) % tabs.length] : null;
      if (next) { e.preventDefault(); setTab(next.dataset.tab); next.focus(); }
    });
  }
  $('new-group-btn').addEventListener('click', openGroupDialog);
  $('group-form').addEventListener('submit', createGroup);
  $('group-cancel').addEventListener('click', () => $('group-dialog').close());
  $('journal-refresh').addEventListener('click', loadJournal);
  $('back-btn').addEventListener('click', closeConversation);
  $('composer').addEventListener('submit', sendCurrent);
  const input = $('compose-input');
  input.addEventListener('input', onComposeInput);
  input.addEventListener('blur', stopTyping);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendCurrent(); }
    if (e.key === 'Escape' && document.body.classList.contains('show-pane')) closeConversation();
  });
  $('messages').addEventListener('scroll', async () => {
    const box = $('messages');
    const conv = state.convs.get(state.current);
    if (!conv || box.scrollTop > 40 || conv.complete || conv.loading) return;
    const id = state.current;
    await loadHistory(conv, true);
    if (state.current === id) renderMessages({ keep: true });
  });
  document.addEventListener('visibilitychange', () => {
    sendDeviceState();
    if (!document.hidden && state.current) markReadIfVisible(state.current);
    renderConvs();
  });
  window.addEventListener('online', () => { if (state.token && !state.ws) { state.backoff = 0; scheduleReconnect(); } });
}

async function boot() {
  await loadLang('en');
  if (lang !== 'en') await loadLang(lang);
  applyI18n();
  wire();
  const saved = sessionStorage.getItem('sb.session');
  if (saved) {
    try {
      const s = JSON.parse(saved);
      state.token = s.token;
      state.me = s.me;
      await startApp();
      return;
    } catch { sessionStorage.removeItem('sb.session'); }
  }
  $('login-view').hidden = false;
  $('login-user').focus();
}

// For tests and debugging: a read-only peek at the connection state.
window.switchboard = { state, reconnect: () => state.ws && state.ws.close() };
boot();
