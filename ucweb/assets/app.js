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
  call: null,          // the call of this tab (one at a time), see newCall()
  endedCall: null,     // the call just over, shown with its outcome for a few seconds
  incoming: new Map(), // call id -> { call_incoming fields, stopped: { reason, by } | null }
  forwarding: {},      // my forwarding rules: { always?, busy?, no_answer? } -> user id
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
  if (state.call) hangUp();
  state.endedCall = null;
  renderCall();
  dropIncoming();
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
  const url = `${proto}//${location.host}${API}/ws?token=${encodeURIComponent(state.token)}&device=${encodeURIComponent(state.me.device)}&caps=${CAN_CALL ? 'chat,audio,video' : 'chat'}`;
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
    socketLost();
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
  socketLost();
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
    case 'ack': settleRequest(ev); break;
    case 'error': if (!settleRequest(ev)) console.warn('server error', ev.error, ev.message); break;
    case 'forwarding_changed': onForwardingChanged(ev); break;
    default:
      if (ev.type && ev.type.startsWith('call_')) onCallEvent(ev);
      break;
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
  if (reconnect) { refreshContacts(); loadForwarding(); }
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

function presenceText(view, withTelephony = true) {
  if (!view) return t('av.offline');
  const parts = [t('av.' + view.availability)];
  if (withTelephony && view.telephony && view.telephony !== 'idle') parts.push(t('tel.' + view.telephony));
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
    const [page, markers] = await Promise.all([
      api('GET', `/conversations/${id}/messages?limit=50${before}`),
      older ? Promise.resolve([]) : api('GET', `/conversations/${id}/read`).catch(() => []),
    ]);
    for (const m of page) addMessage(conv, m, false);
    for (const mark of markers) {
      if (mark.user !== state.me.user && mark.seq > (conv.others.get(mark.user) || 0)) conv.others.set(mark.user, mark.seq);
    }
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
    learnNames(state.journal.filter((j) => j.kind === 'call').map((j) => j.party));
    renderJournal();
  } catch (e) { toast(t('error.generic', { msg: e.message })); }
}

// ------------------------------------------------------------------------------ calls
// The softphone (docs/calls.md). Each tab is a device with one call at a time. Media goes
// straight to the call's MediaServer over one peer connection whose offer fixes every m-line
// once: a sendrecv audio line, EXTRA_RECV_AUDIO recvonly audio lines so that conference
// parties are heard without renegotiation, and a video line for a video call. All ICE
// candidates are gathered before the offer is sent (no trickle); the MediaServer's answer
// comes back as `call_media_answer`.
const CAN_CALL = !!(window.RTCPeerConnection && navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
const EXTRA_RECV_AUDIO = 3;
const ICE_GATHER_LIMIT_MS = 5000;
const REQUEST_LIMIT_MS = 20000;
const ENDED_SHOWN_MS = 6000;
const STOPPED_SHOWN_MS = 5000;
const FAILED_ENDS = new Set(['media_failed', 'setup_failed', 'offline', 'busy', 'rejected', 'no_answer', 'unknown_user', 'lost', 'error']);

// Commands with a `ref`, settled by the `ack` or `error` that echoes it.
const requests = new Map();
let nextRef = 1;

class CallError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

function wsRequest(command) {
  return new Promise((resolve, reject) => {
    const ref = nextRef++;
    if (!wsSend({ ...command, ref })) { reject(new CallError('offline_here')); return; }
    const timer = setTimeout(() => {
      requests.delete(ref);
      reject(new CallError('timeout'));
    }, REQUEST_LIMIT_MS);
    requests.set(ref, { resolve, reject, timer });
  });
}

function settleRequest(ev) {
  const pending = ev.ref !== undefined && requests.get(ev.ref);
  if (!pending) return false;
  requests.delete(ev.ref);
  clearTimeout(pending.timer);
  if (ev.type === 'ack') pending.resolve(ev);
  else pending.reject(new CallError(ev.error, ev.message));
  return true;
}

// The socket is gone: the server has ended this device's calls and ringing already.
function socketLost() {
  for (const [ref, pending] of requests) {
    clearTimeout(pending.timer);
    pending.reject(new CallError('offline_here'));
    requests.delete(ref);
  }
  if (state.call) endCall(state.call, { reason: 'lost' });
  dropIncoming();
}

function newCall(role, peer, video, id = null) {
  const call = {
    id,            // null until the ack (place, pickup) names it
    role,          // 'out', 'in' or 'pickup'
    peer,          // who was called, who called, or whose call was picked up
    video,         // this device sends video
    videoLine: video, // the offer has a video m-line (also when answering a video call with audio only)
    status: 'starting', // starting, calling, ringing, connecting, connected
    pc: null,
    local: null,
    parties: [],
    ringing: new Set(), // invited users whose devices ring
    connectedAt: null,
    muted: false,
    cameraOff: false,
    remoteVideo: false,
    audio: [],     // one <audio> per remote track
    early: [],     // events that came before the ack named the call
    accepted: false, // the server took this device's place, answer or pickup
    note: '',
    conference: false,
  };
  state.call = call;
  state.endedCall = null;
  renderCall();
  renderContacts(); // no "Pick up" while in a call
  return call;
}

// Callers, parties and forwarding targets need not be contacts: look their names up once.
const nameLookups = new Set();
function learnNames(users) {
  for (const user of users) {
    if (!user || !state.me || user === state.me.user || state.names.has(user) || nameLookups.has(user)) continue;
    nameLookups.add(user);
    api('GET', `/directory?q=${encodeURIComponent(user)}`).then((found) => {
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

function canStartCall() {
  if (!CAN_CALL) { toast(t('call.unsupported')); return false; }
  if (state.call) { toast(t('call.one_at_a_time')); return false; }
  if (!state.wsOpen) { toast(t('call.error.offline_here')); return false; }
  return true;
}

async function placeCall(user, video) {
  if (!canStartCall()) return;
  const call = newCall('out', user, video);
  try {
    await startMedia(call);
    call.status = 'calling';
    renderCall();
    const ack = await wsRequest({ type: 'call_place', to: user, sdp: call.pc.localDescription.sdp, video });
    if (state.call !== call) {
      // Hung up while the server set the call up: cancel it now that it has a name.
      if (ack.call) wsSend({ type: 'call_hangup', call: ack.call });
      return;
    }
    adoptCallId(call, ack.call);
  } catch (e) {
    callFailed(call, e, 'place');
  }
}

async function answerCall(id, withVideo) {
  const ring = state.incoming.get(id);
  if (!ring || ring.stopped) return;
  if (state.call) hangUp();
  state.incoming.delete(id);
  renderIncoming();
  const call = newCall('in', ring.from, withVideo, id);
  call.videoLine = ring.video || withVideo;
  call.parties = ring.parties || [];
  call.conference = ring.conference;
  try {
    await startMedia(call);
    call.status = 'connecting';
    renderCall();
    await wsRequest({ type: 'call_answer', call: id, sdp: call.pc.localDescription.sdp });
    call.accepted = true;
  } catch (e) {
    callFailed(call, e, 'answer');
  }
}

async function rejectCall(id) {
  const ring = state.incoming.get(id);
  if (!ring || ring.stopped) return;
  state.incoming.delete(id);
  renderIncoming();
  try { await wsRequest({ type: 'call_reject', call: id }); } catch (e) {
    if (e.code !== 'not_found') toast(callErrorText(e, 'answer'));
  }
}

async function pickUp(user) {
  if (!canStartCall()) return;
  const call = newCall('pickup', user, false);
  try {
    await startMedia(call);
    call.status = 'connecting';
    renderCall();
    const ack = await wsRequest({ type: 'call_pickup', user, sdp: call.pc.localDescription.sdp });
    if (state.call !== call) {
      if (ack.call) wsSend({ type: 'call_hangup', call: ack.call });
      return;
    }
    adoptCallId(call, ack.call);
  } catch (e) {
    callFailed(call, e, 'pickup');
  }
}

function hangUp() {
  const call = state.call;
  if (!call) return;
  if (call.id) wsRequest({ type: 'call_hangup', call: call.id }).catch(() => { /* it is over here anyway */ });
  endCall(call, { reason: call.status === 'connected' ? 'hung_up' : 'cancelled', local: true });
}

// Microphone (and camera), then the peer connection and its complete offer.
async function startMedia(call) {
  let local;
  try {
    local = await navigator.mediaDevices.getUserMedia({ audio: true, video: call.video ? { width: { ideal: 1280 }, height: { ideal: 720 } } : false });
  } catch (e) {
    if (!call.video) throw new CallError('no_microphone', e.message);
    // No camera: go on with audio, still able to see the others.
    local = await navigator.mediaDevices.getUserMedia({ audio: true }).catch((e2) => { throw new CallError('no_microphone', e2.message); });
    call.video = false;
    call.note = t('call.no_camera');
  }
  if (state.call !== call) { stopTracks(local); throw new CallError('aborted'); }
  call.local = local;
  for (const track of local.getAudioTracks()) track.enabled = !call.muted;
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
  call.pc = pc;
  pc.ontrack = (ev) => onRemoteTrack(call, ev);
  pc.onconnectionstatechange = () => { if (state.call === call) renderCall(); };
  pc.addTransceiver(local.getAudioTracks()[0], { direction: 'sendrecv', streams: [local] });
  for (let i = 0; i < EXTRA_RECV_AUDIO; i++) pc.addTransceiver('audio', { direction: 'recvonly' });
  if (call.videoLine) {
    const camera = local.getVideoTracks()[0];
    if (camera) pc.addTransceiver(camera, { direction: 'sendrecv', streams: [local] });
    else pc.addTransceiver('video', { direction: 'recvonly' });
  }
  renderCall();
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  if (state.call !== call) throw new CallError('aborted');
}

function iceGathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    // Loopback and LAN candidates come at once; a stalled interface must not hold the call.
    const timer = setTimeout(done, ICE_GATHER_LIMIT_MS);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

function onRemoteTrack(call, ev) {
  if (state.call !== call) return;
  const track = ev.track;
  if (track.kind === 'audio') {
    const audio = el('audio', { autoplay: true });
    audio.srcObject = new MediaStream([track]);
    $('call-audio').append(audio);
    call.audio.push(audio);
    audio.play().catch(() => { /* plays once the page may */ });
    return;
  }
  const video = $('call-remote-video');
  video.srcObject = new MediaStream([track]);
  const live = (on) => { if (state.call === call) { call.remoteVideo = on; renderCall(); } };
  track.onunmute = () => live(true);
  track.onmute = () => live(false);
  track.onended = () => live(false);
  if (!track.muted) live(true);
}

function adoptCallId(call, id) {
  if (!id || call.id) return;
  call.id = id;
  call.accepted = true;
  const early = call.early;
  call.early = [];
  for (const ev of early) if (ev.call === id) onCallEvent(ev);
}

function stopTracks(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

// The call is over for this device: release everything, show why for a moment.
function endCall(call, { reason, result = null, text = '', local = false }) {
  if (call.ended) return;
  call.ended = true;
  stopTone();
  try { call.pc?.close(); } catch { /* closed */ }
  stopTracks(call.local);
  for (const audio of call.audio) { audio.srcObject = null; audio.remove(); }
  call.audio = [];
  $('call-remote-video').srcObject = null;
  $('call-local-video').srcObject = null;
  const seconds = call.connectedAt ? Math.round((Date.now() - call.connectedAt) / 1000) : null;
  call.outcome = {
    reason,
    result,
    failed: !local && FAILED_ENDS.has(reason),
    text: text || endText(call, reason),
    duration: seconds,
  };
  if (state.call === call) state.call = null;
  state.endedCall = call;
  renderContacts();
  clearTimeout(endCall.timer);
  endCall.timer = setTimeout(() => {
    if (state.endedCall === call) { state.endedCall = null; renderCall(); }
  }, call.outcome.failed ? ENDED_SHOWN_MS * 2 : ENDED_SHOWN_MS);
  renderCall();
  if (state.tab === 'journal') setTimeout(loadJournal, 1000);
}

function endText(call, reason) {
  const name = nameOf(call.peer);
  switch (reason) {
    case 'hung_up': return t('call.ended');
    case 'cancelled': return call.role === 'out' ? t('call.ended.cancelled') : t('call.ended');
    case 'rejected': return t('call.ended.rejected', { name });
    case 'busy': return t('call.ended.busy', { name });
    case 'no_answer': return t('call.ended.no_answer', { name });
    case 'offline': return t('call.ended.offline', { name });
    case 'unknown_user': return t('call.ended.unknown_user');
    case 'media_failed': return t('call.ended.media_failed');
    case 'setup_failed': return t('call.ended.setup_failed');
    case 'lost': return t('call.ended.lost');
    default: return t('call.ended');
  }
}

function callErrorText(e, context) {
  const code = e && e.code;
  if (code === 'not_found') return t(`call.error.not_found.${context}`);
  if (code === 'conflict') return t(context === 'invite' ? 'call.error.conflict.invite' : 'call.error.conflict');
  if (code === 'forbidden' && context === 'pickup') return t('call.error.forbidden.pickup', { name: nameOf(state.call?.peer || '') });
  const known = ['license_exhausted', 'forbidden', 'server_unavailable', 'bad_request', 'no_microphone', 'offline_here', 'timeout', 'media'];
  if (known.includes(code)) return t(`call.error.${code}`, { msg: e.message });
  return t('error.generic', { msg: e?.message || String(e) });
}

function callFailed(call, e, context) {
  if (e && e.code === 'aborted') return;
  console.warn('call failed', context, e);
  if (state.call !== call) return;
  // Leave the call if the server took us in (a refused answer never joined it).
  if (call.id && call.accepted) wsSend({ type: 'call_hangup', call: call.id });
  endCall(call, { reason: 'error', text: callErrorText(e, context) });
}

function onCallEvent(ev) {
  learnNames([ev.from, ev.forwarded_from, ev.to, ev.user, ev.by, ...(ev.parties || [])]);
  if (ev.type === 'call_incoming') { onIncoming(ev); return; }
  if (ev.type === 'call_ringing_stopped') { onRingingStopped(ev); return; }
  const ring = state.incoming.get(ev.call);
  if (ring && ev.type === 'call_ended' && !ring.stopped) {
    onRingingStopped({ call: ev.call, reason: ev.reason === 'no_answer' ? 'no_answer' : ev.reason === 'cancelled' ? 'cancelled' : 'failed' });
    return;
  }
  const call = state.call;
  if (!call) return;
  if (!call.id) {
    if (ev.type === 'call_placed' && call.role === 'out' && ev.to === call.peer) adoptCallId(call, ev.call);
    else call.early.push(ev);
    return;
  }
  if (ev.call !== call.id) return;
  switch (ev.type) {
    case 'call_placed': break;
    case 'call_media_answer':
      call.pc.setRemoteDescription({ type: 'answer', sdp: ev.sdp }).catch((e) => callFailed(call, new CallError('media', e.message), 'media'));
      break;
    case 'call_ringing':
      if (ev.user === call.peer && call.status === 'calling') { call.status = 'ringing'; playTone('ringback'); }
      else if (call.status === 'connected') call.ringing.add(ev.user);
      break;
    case 'call_redirected':
      call.note = t('call.redirected', { from: nameOf(ev.from), to: nameOf(ev.to), mode: t('fw.mode.' + ev.mode) });
      call.peer = ev.to;
      break;
    case 'call_connected':
      call.parties = ev.parties || [];
      for (const user of call.parties) call.ringing.delete(user);
      if (call.status !== 'connected') {
        call.status = 'connected';
        call.connectedAt = Date.now();
        if (call.note === t('call.no_camera')) { /* keep telling */ } else call.note = '';
        stopTone();
      }
      break;
    case 'call_party_left':
      call.parties = ev.parties || call.parties.filter((u) => u !== ev.user);
      call.note = t('call.party_left', { name: nameOf(ev.user) });
      break;
    case 'call_invite_failed':
      call.ringing.delete(ev.user);
      call.note = t('call.invite_failed', { name: nameOf(ev.user), why: endText({ peer: ev.user, role: 'out' }, ev.reason) });
      break;
    case 'call_ended':
      endCall(call, { reason: ev.reason, result: ev.result });
      return;
    default: return;
  }
  renderCall();
}

// ------------------------------------------------------------------------------ incoming calls
function onIncoming(ev) {
  state.incoming.set(ev.call, { ...ev, stopped: null });
  renderIncoming();
  playTone('ring');
  notifyCall(ev);
  // Take the keyboard to the Answer button, unless the user is typing (Enter must not answer).
  if (!isTyping() && !document.querySelector('dialog[open]')) document.querySelector(`#incoming [data-call="${CSS.escape(ev.call)}"] .answer`)?.focus();
}

function isTyping() {
  const active = document.activeElement;
  return !!active && (active.tagName === 'TEXTAREA' || active.tagName === 'SELECT' || (active.tagName === 'INPUT' && active.type !== 'checkbox'));
}

function onRingingStopped(ev) {
  const ring = state.incoming.get(ev.call);
  if (!ring || ring.stopped) return;
  ring.stopped = { reason: ev.reason, by: ev.by };
  try { ring.notification?.close(); } catch { /* gone */ }
  if (![...state.incoming.values()].some((r) => !r.stopped)) stopTone();
  renderIncoming();
  setTimeout(() => {
    if (state.incoming.get(ev.call) === ring) { state.incoming.delete(ev.call); renderIncoming(); }
  }, STOPPED_SHOWN_MS);
  if (state.tab === 'journal') setTimeout(loadJournal, 1000);
}

function dropIncoming() {
  for (const ring of state.incoming.values()) { try { ring.notification?.close(); } catch { /* gone */ } }
  state.incoming.clear();
  if (!state.call) stopTone();
  renderIncoming();
}

function stoppedText(ring) {
  const { reason, by } = ring.stopped;
  switch (reason) {
    case 'answered_elsewhere': return t('ring.answered_elsewhere');
    case 'rejected': return t('ring.rejected');
    case 'picked_up': return by ? t('ring.picked_up_by', { name: nameOf(by) }) : t('ring.picked_up');
    case 'cancelled': return t('ring.missed', { name: nameOf(ring.from) });
    case 'no_answer': return t('ring.missed', { name: nameOf(ring.from) });
    case 'forwarded': return t('ring.forwarded');
    default: return t('ring.failed');
  }
}

function incomingKind(ring) {
  if (ring.conference) return t(ring.video ? 'ring.conference_video' : 'ring.conference');
  return t(ring.video ? 'ring.video' : 'ring.audio');
}

function renderIncoming() {
  const box = $('incoming');
  if (!state.me) { box.replaceChildren(); return; }
  // Re-rendering must not drop the keyboard: remember which button of which call had it.
  const active = box.contains(document.activeElement) ? document.activeElement : null;
  const focused = active && [active.closest('[data-call]')?.dataset.call, active.dataset.action];
  const shown = new Set([...box.children].map((card) => card.dataset.call));
  box.replaceChildren();
  // What still rings comes first; what stopped lingers below with its reason.
  const rings = [...state.incoming].sort(([, a], [, b]) => !!a.stopped - !!b.stopped);
  for (const [id, ring] of rings) {
    const key = id.replace(/[^a-z0-9]/gi, '_');
    const others = (ring.parties || []).filter((u) => u !== state.me.user && u !== ring.from);
    const card = el('section', {
      class: `incoming ${ring.stopped ? 'stopped' : ''} ${shown.has(id) ? '' : 'fresh'}`, role: 'alertdialog', 'aria-labelledby': `inc-title-${key}`, 'aria-describedby': `inc-desc-${key}`,
      dataset: { call: id, state: ring.stopped ? 'stopped' : 'ringing' },
    },
    el('div', { class: 'inc-head' },
      el('span', { class: 'inc-avatar' }, avatar(ring.from)),
      el('div', { class: 'inc-text' },
        el('div', { class: 'inc-kind small' }, svgIcon(ring.video ? 'video' : 'phone'), incomingKind(ring)),
        el('h2', { id: `inc-title-${key}`, class: 'inc-name' }, nameOf(ring.from)),
        el('div', { id: `inc-desc-${key}`, class: 'inc-desc small' },
          el('span', { class: 'sr-only' }, incomingKind(ring) + '. '),
          ring.forwarded_from ? el('div', { class: 'inc-hint' }, t('ring.forwarded_from', { name: nameOf(ring.forwarded_from) })) : null,
          others.length ? el('div', { class: 'inc-hint' }, t('ring.with', { names: others.map(nameOf).join(', ') })) : null))));
    if (ring.stopped) {
      card.append(el('p', { class: 'inc-stopped', role: 'status' }, stoppedText(ring)));
    } else {
      const name = nameOf(ring.from);
      card.append(el('div', { class: 'inc-actions' },
        el('button', { type: 'button', class: 'round-btn reject', dataset: { action: 'reject' }, 'aria-label': t('ring.reject_label', { name }), onclick: () => rejectCall(id) },
          el('span', { class: 'round-icon' }, svgIcon('hangup')), el('span', { class: 'round-text' }, t('ring.reject'))),
        el('button', { type: 'button', class: 'round-btn answer', dataset: { action: 'answer' }, 'aria-label': t('ring.answer_label', { name }), onclick: () => answerCall(id, false) },
          el('span', { class: 'round-icon' }, svgIcon('phone')), el('span', { class: 'round-text' }, t('ring.answer'))),
        ring.video ? el('button', { type: 'button', class: 'round-btn answer-video', dataset: { action: 'answer-video' }, 'aria-label': t('ring.answer_video_label', { name }), onclick: () => answerCall(id, true) },
          el('span', { class: 'round-icon' }, svgIcon('video')), el('span', { class: 'round-text' }, t('ring.answer_video'))) : null));
    }
    box.append(card);
  }
  if (focused) {
    const card = box.querySelector(`[data-call="${CSS.escape(focused[0] || '')}"]`);
    (card?.querySelector(`[data-action="${focused[1]}"]`) || card?.querySelector('button'))?.focus();
  }
}

function notifyCall(ev) {
  if (!document.hidden || !('Notification' in window) || Notification.permission !== 'granted') return;
  const ring = state.incoming.get(ev.call);
  try {
    const n = new Notification(t('notify.call_title', { name: nameOf(ev.from) }), {
      body: incomingKind(ev) + (ev.forwarded_from ? ' — ' + t('ring.forwarded_from', { name: nameOf(ev.forwarded_from) }) : ''),
      tag: 'call-' + ev.call,
      icon: '/icon.svg',
      requireInteraction: true,
    });
    n.onclick = () => { window.focus(); n.close(); document.querySelector(`#incoming [data-call="${CSS.escape(ev.call)}"] .answer`)?.focus(); };
    if (ring) ring.notification = n;
  } catch { /* not allowed in this context */ }
}

// ------------------------------------------------------------------------------ tones
// Ringing and ringback made with WebAudio: no sound files, nothing fetched.
const tone = { ctx: null, timer: null, kind: null };

function playTone(kind) {
  if (tone.kind === kind) return;
  stopTone();
  try {
    tone.ctx = tone.ctx || new AudioContext();
  } catch { return; }
  tone.kind = kind;
  const burst = () => {
    const ctx = tone.ctx;
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    const now = ctx.currentTime;
    // Incoming: a two-note chime; ringback: the European 425 Hz, one second on.
    const notes = kind === 'ring' ? [[659, 0, 0.35], [880, 0.4, 0.5]] : [[425, 0, 1]];
    for (const [freq, start, length] of notes) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0, now + start);
      gain.gain.linearRampToValueAtTime(kind === 'ring' ? 0.12 : 0.06, now + start + 0.03);
      gain.gain.linearRampToValueAtTime(0, now + start + length);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + start);
      osc.stop(now + start + length + 0.05);
    }
  };
  burst();
  tone.timer = setInterval(burst, kind === 'ring' ? 2500 : 4000);
}

function stopTone() {
  clearInterval(tone.timer);
  tone.timer = null;
  tone.kind = null;
}

// ------------------------------------------------------------------------------ the call view
function fmtDuration(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

function callTitle(call) {
  const others = call.parties.filter((u) => u !== state.me.user);
  if (call.status === 'connected' && others.length) return others.map(nameOf).join(', ');
  return nameOf(call.peer);
}

function callStatusText(call) {
  switch (call.status) {
    case 'starting': return t('call.status.starting');
    case 'calling': return t('call.status.calling');
    case 'ringing': return t('call.status.ringing');
    case 'connecting': return t('call.status.connecting');
    case 'connected': {
      const media = call.pc?.connectionState;
      if (media === 'failed' || media === 'disconnected') return t('call.status.media_trouble');
      if (media && media !== 'connected') return t('call.status.media_connecting');
      return call.parties.length > 2 ? t('call.status.conference', { n: call.parties.length }) : t('call.status.connected');
    }
    default: return '';
  }
}

function setCallButton(id, icon, textKey, pressed) {
  const button = $(id);
  button.querySelector('.call-btn-icon').replaceChildren(svgIcon(icon));
  button.querySelector('.call-btn-text').textContent = t(textKey);
  if (pressed !== undefined) button.setAttribute('aria-pressed', pressed ? 'true' : 'false');
  button.title = button.hasAttribute('aria-keyshortcuts') ? `${t(textKey)} (Ctrl+Shift+M)` : '';
}

function renderCall() {
  const view = $('call-view');
  const call = state.call || state.endedCall;
  const wasHidden = view.hidden;
  view.hidden = !call || !state.me;
  document.body.classList.toggle('in-call', !view.hidden);
  if (view.hidden) {
    renderCall.shown = null;
    if (!wasHidden) restoreFocusAfterCall();
    return;
  }
  const ended = !!call.outcome;
  view.dataset.status = ended ? 'ended' : call.status;
  view.classList.toggle('video', call.videoLine && !ended);
  view.classList.toggle('failed', ended && call.outcome.failed);
  $('call-title').textContent = callTitle(call);
  const people = $('call-people');
  const others = call.parties.filter((u) => u !== state.me.user);
  const shown = others.length ? others : [call.peer];
  people.replaceChildren(...shown.slice(0, 3).map((u) => avatar(u, 'call-avatar')));
  people.classList.toggle('many', shown.length > 1);
  people.classList.toggle('pulse', !ended && (call.status === 'calling' || call.status === 'ringing'));
  $('call-status').textContent = ended ? call.outcome.text : callStatusText(call);
  const ringing = [...call.ringing].map(nameOf);
  $('call-note').textContent = [ended ? '' : call.note, !ended && ringing.length ? t('call.inviting', { names: ringing.join(', ') }) : ''].filter(Boolean).join(' · ');
  renderCallTimer();
  const remote = $('call-remote-video');
  remote.hidden = ended || !call.videoLine || !call.remoteVideo;
  const localVideo = $('call-local-video');
  const camera = call.local?.getVideoTracks()[0];
  localVideo.hidden = ended || !camera || call.cameraOff;
  if (camera && localVideo.srcObject !== call.local) localVideo.srcObject = call.local;
  $('call-stage').hidden = ended || !call.videoLine;
  $('call-stage-people').replaceChildren(...(remote.hidden ? [avatar(shown[0], 'stage-avatar')] : []));
  setCallButton('call-mute', call.muted ? 'mic-off' : 'mic', call.muted ? 'call.unmute' : 'call.mute', call.muted);
  setCallButton('call-camera', call.cameraOff ? 'video' : 'video-off', call.cameraOff ? 'call.camera_on' : 'call.camera_off', call.cameraOff);
  $('call-mute').hidden = ended;
  $('call-camera').hidden = ended || !camera;
  $('call-add').hidden = ended || call.status !== 'connected';
  $('call-hangup').hidden = ended;
  $('call-close').hidden = !ended;
  $('call-hangup').querySelector('.call-btn-text').textContent = t(call.status === 'connected' ? 'call.hangup' : 'call.cancel');
  if (!ended && renderCall.shown !== call) {
    // A call that just started takes the keyboard to its controls (unless the user types).
    const active = document.activeElement;
    if (!isTyping() && !document.querySelector('dialog[open]')) {
      if (!view.contains(active)) state.callReturnFocus = active && active !== document.body ? active : null;
      $('call-hangup').focus();
    }
  } else if (ended && (document.activeElement === document.body || document.activeElement?.closest('[hidden]'))) {
    $('call-close').focus();
  }
  renderCall.shown = call;
}

function restoreFocusAfterCall() {
  const back = state.callReturnFocus;
  state.callReturnFocus = null;
  if (document.activeElement && document.activeElement !== document.body && !$('call-view').contains(document.activeElement)) return;
  if (back && back.isConnected && back.offsetParent !== null) back.focus();
}

function renderCallTimer() {
  const call = state.call || state.endedCall;
  const timer = $('call-timer');
  if (!call) { timer.textContent = ''; return; }
  if (call.outcome) timer.textContent = call.outcome.duration !== null ? fmtDuration(call.outcome.duration) : '';
  else timer.textContent = call.connectedAt ? fmtDuration(Math.floor((Date.now() - call.connectedAt) / 1000)) : '';
}

setInterval(() => { if (state.call && state.call.connectedAt) renderCallTimer(); }, 1000);

function toggleMute() {
  const call = state.call;
  if (!call || !call.local) return;
  call.muted = !call.muted;
  for (const track of call.local.getAudioTracks()) track.enabled = !call.muted;
  renderCall();
}

function toggleCamera() {
  const call = state.call;
  if (!call || !call.local) return;
  call.cameraOff = !call.cameraOff;
  for (const track of call.local.getVideoTracks()) track.enabled = !call.cameraOff;
  renderCall();
}

// ------------------------------------------------------------------------------ add a person
function openInviteDialog() {
  if (!state.call || state.call.status !== 'connected') return;
  $('invite-error').textContent = '';
  $('invite-search').value = '';
  inviteDir = [];
  renderInviteList();
  $('invite-dialog').showModal();
  $('invite-search').focus();
}

// Contacts first; typing also searches the directory, for people not in one's contacts.
let inviteDir = [];
let inviteTimer = null;
let inviteSeq = 0;
function onInviteInput() {
  renderInviteList();
  clearTimeout(inviteTimer);
  const q = $('invite-search').value.trim();
  if (!q) { inviteDir = []; return; }
  inviteTimer = setTimeout(async () => {
    const mine = ++inviteSeq;
    try {
      const users = await api('GET', `/directory?q=${encodeURIComponent(q)}`);
      if (mine !== inviteSeq) return;
      for (const u of users) state.names.set(u.id, u.display_name);
      inviteDir = users.map((u) => ({ user: u.id, display_name: u.display_name, presence: null }));
      renderInviteList();
    } catch { /* the contacts still show */ }
  }, 200);
}

function renderInviteList() {
  const call = state.call;
  const list = $('invite-list');
  list.replaceChildren();
  if (!call) return;
  const q = $('invite-search').value.trim().toLowerCase();
  const seen = new Set();
  const candidates = [...state.contacts, ...(q ? inviteDir : [])]
    .filter((c) => !seen.has(c.user) && seen.add(c.user))
    .filter((c) => !call.parties.includes(c.user) && !call.ringing.has(c.user) && c.user !== state.me.user)
    .filter((c) => !q || c.display_name.toLowerCase().includes(q) || c.user.includes(q));
  if (!candidates.length) { list.append(el('li', { class: 'empty muted', text: t('invite.none') })); return; }
  for (const c of candidates) {
    const view = state.presence.get(c.user) || c.presence;
    const av = view?.availability || 'offline';
    const status = view ? presenceText(view) : '@' + c.user;
    list.append(el('li', {},
      el('button', { type: 'button', class: 'row-main', 'aria-label': t('invite.add_label', { name: c.display_name }) + ' — ' + status, onclick: () => invite(c.user) },
        el('span', { class: 'avatar-wrap' }, avatar(c.user), view ? el('span', { class: `dot ${av}`, 'aria-hidden': 'true' }) : null),
        el('span', { class: 'row-text' }, el('span', { class: 'row-title' }, c.display_name), el('span', { class: 'row-sub' }, status)))));
  }
}

async function invite(user) {
  const call = state.call;
  if (!call || !call.id) return;
  try {
    await wsRequest({ type: 'call_invite', call: call.id, user });
    call.ringing.add(user);
    $('invite-dialog').close();
    renderCall();
  } catch (e) {
    $('invite-error').textContent = callErrorText(e, 'invite');
  }
}

// ------------------------------------------------------------------------------ forwarding
const FORWARD_MODES = ['always', 'busy', 'no_answer'];

async function loadForwarding() {
  if (!CAN_CALL || !state.me) return;
  try {
    state.forwarding = (await api('GET', `/users/${encodeURIComponent(state.me.user)}/forwarding`)) || {};
    learnNames(Object.values(state.forwarding));
    renderForwarding();
  } catch { /* shown as off; the next change event brings it */ }
}

function onForwardingChanged(ev) {
  if (!state.me || ev.user !== state.me.user) return;
  state.forwarding = ev.rules || {};
  learnNames(Object.values(state.forwarding));
  renderForwarding();
}

function renderForwarding() {
  if (!state.me) return;
  const rules = state.forwarding || {};
  const indicator = $('me-forward');
  const active = FORWARD_MODES.filter((m) => rules[m]);
  indicator.hidden = !active.length;
  if (active.length) {
    indicator.replaceChildren(svgIcon('forward'), el('span', {}, rules.always
      ? t('fw.indicator_always', { name: nameOf(rules.always) })
      : t('fw.indicator', { rules: active.map((m) => `${t('fw.short.' + m)} → ${nameOf(rules[m])}`).join(', ') })));
    indicator.setAttribute('aria-label', indicator.textContent + ' — ' + t('fw.open'));
  }
  $('forward-btn').classList.toggle('on', !!active.length);
  for (const mode of FORWARD_MODES) {
    const select = $(`fw-${mode}`);
    if (document.activeElement === select && select.dataset.busy) continue;
    const current = rules[mode] || '';
    const options = [el('option', { value: '' }, t('fw.off'))];
    const users = state.contacts.map((c) => [c.user, c.display_name]);
    if (current && !users.some(([u]) => u === current)) users.push([current, nameOf(current)]);
    users.sort((a, b) => a[1].localeCompare(b[1]));
    for (const [user, name] of users) options.push(el('option', { value: user }, name));
    select.replaceChildren(...options);
    select.value = current;
  }
}

function openForwardDialog() {
  $('forward-error').textContent = '';
  $('forward-status').textContent = '';
  renderForwarding();
  loadForwarding();
  $('forward-dialog').showModal();
  $('fw-always').focus();
}

async function onForwardChange(event) {
  const select = event.target;
  const mode = select.dataset.mode;
  const to = select.value;
  $('forward-error').textContent = '';
  $('forward-status').textContent = t('fw.saving');
  select.dataset.busy = '1';
  try {
    if (to) await wsRequest({ type: 'forward_set', mode, to });
    else await wsRequest({ type: 'forward_clear', mode });
    const rules = { ...state.forwarding };
    if (to) rules[mode] = to; else delete rules[mode];
    state.forwarding = rules;
    $('forward-status').textContent = to ? t('fw.saved', { mode: t('fw.short.' + mode), name: nameOf(to) }) : t('fw.cleared', { mode: t('fw.short.' + mode) });
  } catch (e) {
    $('forward-status').textContent = '';
    $('forward-error').textContent = e.code === 'bad_request' ? t('fw.error.self') : callErrorText(e, 'forward');
  } finally {
    delete select.dataset.busy;
    renderForwarding();
  }
}

function wireCalls() {
  $('chat-call').addEventListener('click', () => { const s = state.convs.get(state.current)?.summary; if (s) placeCall(otherOf(s), false); });
  $('chat-video').addEventListener('click', () => { const s = state.convs.get(state.current)?.summary; if (s) placeCall(otherOf(s), true); });
  $('call-mute').addEventListener('click', toggleMute);
  $('call-camera').addEventListener('click', toggleCamera);
  $('call-add').addEventListener('click', openInviteDialog);
  $('call-hangup').addEventListener('click', hangUp);
  $('call-close').addEventListener('click', () => { state.endedCall = null; renderCall(); });
  $('invite-search').addEventListener('input', onInviteInput);
  $('invite-search').addEventListener('keydown', (e) => {
    // Enter adds the first match instead of closing the dialog.
    if (e.key !== 'Enter' || e.isComposing) return;
    e.preventDefault();
    $('invite-list').querySelector('button')?.click();
  });
  $('forward-btn').addEventListener('click', openForwardDialog);
  $('me-forward').addEventListener('click', openForwardDialog);
  for (const mode of FORWARD_MODES) $(`fw-${mode}`).addEventListener('change', onForwardChange);
  document.addEventListener('keydown', (e) => {
    // Ctrl+Shift+M mutes from anywhere during a call.
    if (e.key.toLowerCase() === 'm' && e.ctrlKey && e.shiftKey && state.call) { e.preventDefault(); toggleMute(); }
  });
  window.addEventListener('pagehide', () => { if (state.call?.id) wsSend({ type: 'call_hangup', call: state.call.id }); });
}

// ------------------------------------------------------------------------------ rendering
const HANDSET = 'M5 4h3l2 5-2.5 1.5a11 11 0 0 0 5 5L14 13l5 2v3a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z';
const ICONS = {
  'call-in': 'M21 3l-7 7M14 4v6h6M5 4h3l2 5-2.5 1.5a11 11 0 0 0 5 5L14 13l5 2v3a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z',
  'call-out': 'M14 10l7-7M15 3h6v6M5 4h3l2 5-2.5 1.5a11 11 0 0 0 5 5L14 13l5 2v3a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z',
  chat: 'M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z',
  logout: 'M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4M16 17l5-5-5-5M21 12H9',
  bell: 'M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9M13.7 21a2 2 0 0 1-3.4 0',
  back: 'M19 12H5M12 19l-7-7 7-7',
  send: 'M22 2L11 13M22 2l-7 20-4-9-9-4 20-7z',
  phone: HANDSET,
  hangup: HANDSET,
  forward: 'M17 2l4 4-4 4M13 6h8' + HANDSET,
  video: 'M23 7l-7 5 7 5V7zM3 5h11a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2z',
  'video-off': 'M16 16v1a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2h2m5.7 0H14a2 2 0 0 1 2 2v3.3l1 1L23 7v10M1 1l22 22',
  mic: 'M12 1a3 3 0 0 0-3 3v8a3 3 0 0 0 6 0V4a3 3 0 0 0-3-3zM19 10v2a7 7 0 0 1-14 0v-2M12 19v4M8 23h8',
  'mic-off': 'M1 1l22 22M9 9v3a3 3 0 0 0 5.1 2.1M15 9.3V4a3 3 0 0 0-5.9-.6M17 17a7 7 0 0 1-12-5v-2m14 0v2a7 7 0 0 1-.1 1.2M12 19v4M8 23h8',
  'user-plus': 'M16 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2M8.5 3a4 4 0 1 0 0 8 4 4 0 0 0 0-8zM20 8v6M23 11h-6',
  close: 'M18 6L6 18M6 6l12 12',
};
// Turned like a handset put down: the usual "end call" sign.
const ICON_ROTATE = { hangup: 135 };
function svgIcon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'svg-icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  if (ICON_ROTATE[name]) path.setAttribute('transform', `rotate(${ICON_ROTATE[name]} 12 12)`);
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
  renderCall();
  renderIncoming();
  renderForwarding();
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
      const tel = view?.telephony && view.telephony !== 'idle' ? view.telephony : '';
      ul.append(el('li', { class: `contact ${tel ? 'tel-' + tel : ''}`, dataset: { user: c.user, availability: av, telephony: tel || 'idle' } },
        el('button', { type: 'button', class: 'row-main', 'aria-label': `${t('contacts.chat', { name: c.display_name })} — ${status}${note ? ' — ' + note : ''}`, onclick: () => openDirect(c.user) },
          el('span', { class: 'avatar-wrap' }, avatar(c.user), el('span', { class: `dot ${av}`, 'aria-hidden': 'true' })),
          el('span', { class: 'row-text' },
            el('span', { class: 'row-title' }, el('span', { class: 'title-text' }, c.display_name)),
            el('span', { class: 'row-sub' },
              el('span', { class: `av-label ${av}` }, presenceText(view, false)),
              tel ? telPill(tel) : null,
              note ? el('span', { class: 'note' }, ' — ' + note) : null))),
        // Pick up what rings at a colleague (not one's own call ringing there); else call them.
        !CAN_CALL ? null
          : tel === 'ringing' && !state.call
            ? el('button', { type: 'button', class: 'pickup-btn', 'aria-label': t('call.pickup_label', { name: c.display_name }), title: t('call.pickup_label', { name: c.display_name }), onclick: () => pickUp(c.user) }, svgIcon('call-in'), el('span', {}, t('call.pickup')))
            : el('button', { type: 'button', class: 'icon-btn call-icon contact-call', 'aria-label': t('call.audio_label', { name: c.display_name }), title: t('call.audio_label', { name: c.display_name }), onclick: () => placeCall(c.user, false) }, svgIcon('phone')),
        el('button', { type: 'button', class: 'icon-btn remove', 'aria-label': t('contacts.remove', { name: c.display_name }), title: t('contacts.remove', { name: c.display_name }), onclick: () => removeContact(c.user) }, '×')));
    }
    list.append(ul);
  }
}

function telPill(tel) {
  return el('span', { class: `tel-pill ${tel}`, 'aria-hidden': 'true' }, svgIcon(tel === 'forwarded' ? 'forward' : 'phone'), t('tel.pill.' + tel));
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
          : el('button', { type: 'button', class: 'secondary small-btn', 'aria-label': t('dir.add_label', { name: u.display_name }), onclick: () => addContact(u.id) }, t('dir.add')),
      !isMe && CAN_CALL ? el('button', { type: 'button', class: 'icon-btn call-icon', 'aria-label': t('call.audio_label', { name: u.display_name }), title: t('call.audio_label', { name: u.display_name }), onclick: () => placeCall(u.id, false) }, svgIcon('phone')) : null));
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
  const actions = $('chat-actions');
  actions.hidden = !other || !CAN_CALL;
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
    if (j.conversation) li.append(el('button', { type: 'button', class: 'row-main', 'aria-label': label, onclick: () => { const c = state.convs.get(j.conversation); if (c) openConversation(j.conversation); } }, ...content));
    else if (j.kind === 'call' && j.party !== state.me.user) li.append(el('button', { type: 'button', class: 'row-main', 'aria-label': `${label} — ${t('journal.open_chat')}`, onclick: () => openDirect(j.party) }, ...content));
    else li.append(el('div', { class: 'row-main', role: 'group', 'aria-label': label }, ...content));
    if (j.kind === 'call' && CAN_CALL && j.party !== state.me.user) {
      li.append(el('button', { type: 'button', class: 'icon-btn call-icon', 'aria-label': t('journal.call_back', { name: party }), title: t('journal.call_back', { name: party }), onclick: () => placeCall(j.party, false) }, svgIcon('phone')));
    } else if (CAN_CALL) {
      li.append(el('span', { class: 'j-spacer', 'aria-hidden': 'true' })); // keeps the times in one column
    }
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
  loadForwarding();
  updateNotifyButton();
  $('forward-btn').hidden = !CAN_CALL;
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
  wireCalls();
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
window.switchboard = {
  state,
  reconnect: () => state.ws && state.ws.close(),
  // The peer connection of the current call (tests read its getStats()).
  get pc() { return state.call?.pc || null; },
};
window.__switchboard = window.switchboard;
boot();
