// @ts-check
// The softphone (docs/calls.md). Each tab is a device with one call at a time. Media goes
// straight to the call's MediaServer over one peer connection whose offer fixes every m-line
// once: a sendrecv audio line, EXTRA_RECV_AUDIO recvonly audio lines so that conference
// parties are heard without renegotiation, and a video line for a video call. All ICE
// candidates are gathered before the offer is sent (no trickle); the MediaServer's answer
// comes back as `call_media_answer`. Also here: calls ringing at this tab, adding a person to
// a call, and call forwarding.

import { $, el, isTyping, messageOf } from './util.js';
import { t } from './i18n.js';
import * as api from './api.js';
import { send, request, CommandError } from './socket.js';
import { state, canCall, nameOf, otherOf } from './state.js';
import { toast, renderContacts } from './views.js';
import {
  FORWARD_MODES, incomingKind, renderCall, renderCallTimer, renderIncoming, renderInviteList,
  renderForwarding,
} from './callview.js';
import { learnNames, loadJournal } from './people.js';
import { playTone, stopTone } from './tones.js';

/**
 * @import { CallEvent, CallId, CallIncoming, CallResult, CallRingingStopped, ForwardMode,
 *   ForwardingChanged, UserId } from './wire.js'
 * @import { Call, EndWhy } from './state.js'
 * @import { Candidate } from './callview.js'
 */

/** Matches `shared::call::EXTRA_RECV_AUDIO`. */
const EXTRA_RECV_AUDIO = 3;
const ICE_GATHER_LIMIT_MS = 5000;
const ENDED_SHOWN_MS = 6000;
const STOPPED_SHOWN_MS = 5000;
/** @type {Set<EndWhy>} end reasons shown as a failure (unless this tab ended the call) */
const FAILED_ENDS = new Set(['media_failed', 'setup_failed', 'offline', 'busy', 'rejected', 'no_answer', 'unknown_user', 'lost', 'error']);

/** A call that failed here: no microphone, hung up while starting (`aborted`), bad media. */
class CallError extends Error {
  /**
   * @param {'no_microphone' | 'aborted' | 'media'} code
   * @param {string} [message]
   */
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/** @typedef {'place' | 'answer' | 'pickup' | 'invite' | 'forward' | 'media'} ErrorContext */

/**
 * Makes `call` this tab's call and shows it.
 * @param {Call['role']} role
 * @param {UserId} peer
 * @param {boolean} video
 * @param {CallId | null} [id]
 */
function newCall(role, peer, video, id = null) {
  /** @type {Call} */
  const call = {
    id, role, peer, video, videoLine: video, status: 'starting', pc: null, local: null,
    parties: [], ringing: new Set(), connectedAt: null, muted: false, cameraOff: false,
    remoteVideo: false, audio: [], early: [], accepted: false, note: '', conference: false,
    ended: false, outcome: null,
  };
  state.call = call;
  state.endedCall = null;
  renderCall();
  renderContacts(); // no "Pick up" while in a call
  return call;
}

function canStartCall() {
  if (!canCall) { toast(t('call.unsupported')); return false; }
  if (state.call) { toast(t('call.one_at_a_time')); return false; }
  if (!state.wsOpen) { toast(t('call.error.offline_here')); return false; }
  return true;
}

/**
 * @param {UserId} user
 * @param {boolean} video
 */
export async function placeCall(user, video) {
  if (!canStartCall()) return;
  const call = newCall('out', user, video);
  try {
    const sdp = await startMedia(call);
    call.status = 'calling';
    renderCall();
    const ack = await request({ type: 'call_place', to: user, sdp, video });
    if (state.call !== call) {
      // Hung up while the server set the call up: cancel it now that it has a name.
      if (ack.call) send({ type: 'call_hangup', call: ack.call });
      return;
    }
    adoptCallId(call, ack.call);
  } catch (e) {
    callFailed(call, e, 'place');
  }
}

/**
 * @param {CallId} id
 * @param {boolean} withVideo
 */
export async function answerCall(id, withVideo) {
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
    const sdp = await startMedia(call);
    call.status = 'connecting';
    renderCall();
    await request({ type: 'call_answer', call: id, sdp });
    call.accepted = true;
  } catch (e) {
    callFailed(call, e, 'answer');
  }
}

/** @param {CallId} id */
export async function rejectCall(id) {
  const ring = state.incoming.get(id);
  if (!ring || ring.stopped) return;
  state.incoming.delete(id);
  renderIncoming();
  try { await request({ type: 'call_reject', call: id }); } catch (e) {
    if (!(e instanceof CommandError && e.code === 'not_found')) toast(callErrorText(e, 'answer'));
  }
}

/**
 * Takes the call ringing at a colleague.
 * @param {UserId} user
 */
export async function pickUp(user) {
  if (!canStartCall()) return;
  const call = newCall('pickup', user, false);
  try {
    const sdp = await startMedia(call);
    call.status = 'connecting';
    renderCall();
    const ack = await request({ type: 'call_pickup', user, sdp });
    if (state.call !== call) {
      if (ack.call) send({ type: 'call_hangup', call: ack.call });
      return;
    }
    adoptCallId(call, ack.call);
  } catch (e) {
    callFailed(call, e, 'pickup');
  }
}

export function hangUp() {
  const call = state.call;
  if (!call) return;
  if (call.id) request({ type: 'call_hangup', call: call.id }).catch(() => { /* it is over here anyway */ });
  endCall(call, { reason: call.status === 'connected' ? 'hung_up' : 'cancelled', local: true });
}

// ------------------------------------------------------------------------------ media
/**
 * Microphone (and camera), then the peer connection and its complete offer.
 * @param {Call} call
 * @returns {Promise<string>} the offer's SDP
 */
async function startMedia(call) {
  let local;
  try {
    local = await navigator.mediaDevices.getUserMedia({ audio: true, video: call.video ? { width: { ideal: 1280 }, height: { ideal: 720 } } : false });
  } catch (e) {
    if (!call.video) throw new CallError('no_microphone', messageOf(e));
    // No camera: go on with audio, still able to see the others.
    local = await navigator.mediaDevices.getUserMedia({ audio: true }).catch((e2) => { throw new CallError('no_microphone', messageOf(e2)); });
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
  const sdp = pc.localDescription?.sdp;
  if (!sdp) throw new CallError('media', 'no local description');
  return sdp;
}

/**
 * Resolves when ICE gathering is complete, or after ICE_GATHER_LIMIT_MS.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<void>}
 */
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

/**
 * @param {Call} call
 * @param {RTCTrackEvent} ev
 */
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
  const video = $('call-remote-video', HTMLVideoElement);
  video.srcObject = new MediaStream([track]);
  /** @param {boolean} on */
  const live = (on) => { if (state.call === call) { call.remoteVideo = on; renderCall(); } };
  track.onunmute = () => live(true);
  track.onmute = () => live(false);
  track.onended = () => live(false);
  if (!track.muted) live(true);
}

/**
 * The server named the call: events that came before are handled now.
 * @param {Call} call
 * @param {CallId | undefined} id
 */
function adoptCallId(call, id) {
  if (!id || call.id) return;
  call.id = id;
  call.accepted = true;
  const early = call.early;
  call.early = [];
  for (const ev of early) if (ev.call === id) onCallEvent(ev);
}

/** @param {MediaStream | null} stream */
function stopTracks(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

/** @type {number | undefined} */
let endedTimer;

/**
 * The call is over for this device: release everything, show why for a moment.
 * @param {Call} call
 * @param {{ reason: EndWhy, result?: CallResult | null, text?: string, local?: boolean }} how
 *   `local`: this tab ended it (never shown as a failure)
 */
function endCall(call, { reason, result = null, text = '', local = false }) {
  if (call.ended) return;
  call.ended = true;
  stopTone();
  try { call.pc?.close(); } catch { /* closed */ }
  stopTracks(call.local);
  for (const audio of call.audio) { audio.srcObject = null; audio.remove(); }
  call.audio = [];
  $('call-remote-video', HTMLVideoElement).srcObject = null;
  $('call-local-video', HTMLVideoElement).srcObject = null;
  const outcome = {
    reason,
    result,
    failed: !local && FAILED_ENDS.has(reason),
    text: text || endText(call, reason),
    duration: call.connectedAt ? Math.round((Date.now() - call.connectedAt) / 1000) : null,
  };
  call.outcome = outcome;
  if (state.call === call) state.call = null;
  state.endedCall = call;
  renderContacts();
  clearTimeout(endedTimer);
  endedTimer = setTimeout(() => {
    if (state.endedCall === call) { state.endedCall = null; renderCall(); }
  }, outcome.failed ? ENDED_SHOWN_MS * 2 : ENDED_SHOWN_MS);
  renderCall();
  if (state.tab === 'journal') setTimeout(loadJournal, 1000);
}

/**
 * @param {Pick<Call, 'peer' | 'role'>} call
 * @param {EndWhy} reason
 */
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

/**
 * What to tell the user about a failed call command or call.
 * @param {unknown} e
 * @param {ErrorContext} context
 */
function callErrorText(e, context) {
  const code = e instanceof CommandError || e instanceof CallError ? e.code : null;
  if (code === 'not_found') return t(`call.error.not_found.${context}`);
  if (code === 'conflict') return t(context === 'invite' ? 'call.error.conflict.invite' : 'call.error.conflict');
  if (code === 'forbidden' && context === 'pickup') return t('call.error.forbidden.pickup', { name: nameOf(state.call?.peer || '') });
  const known = ['license_exhausted', 'forbidden', 'server_unavailable', 'bad_request', 'no_microphone', 'offline_here', 'timeout', 'media'];
  if (code && known.includes(code)) return t(`call.error.${code}`, { msg: messageOf(e) });
  return t('error.generic', { msg: messageOf(e) });
}

/**
 * @param {Call} call
 * @param {unknown} e
 * @param {ErrorContext} context
 */
function callFailed(call, e, context) {
  if (e instanceof CallError && e.code === 'aborted') return;
  console.warn('call failed', context, e);
  if (state.call !== call) return;
  // Leave the call if the server took us in (a refused answer never joined it).
  if (call.id && call.accepted) send({ type: 'call_hangup', call: call.id });
  endCall(call, { reason: 'error', text: callErrorText(e, context) });
}

/**
 * The users an event names (for their display names).
 * @param {CallEvent} ev
 * @returns {(UserId | undefined)[]}
 */
function usersIn(ev) {
  switch (ev.type) {
    case 'call_placed': return [ev.to];
    case 'call_incoming': return [ev.from, ev.forwarded_from, ...ev.parties];
    case 'call_ringing': return [ev.user];
    case 'call_ringing_stopped': return [ev.by];
    case 'call_redirected': return [ev.from, ev.to];
    case 'call_connected': return ev.parties;
    case 'call_party_left': return [ev.user, ...ev.parties];
    case 'call_invite_failed': return [ev.user];
    default: return [];
  }
}

/** @param {CallEvent} ev */
export function onCallEvent(ev) {
  learnNames(usersIn(ev));
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
      call.pc?.setRemoteDescription({ type: 'answer', sdp: ev.sdp }).catch((e) => callFailed(call, new CallError('media', messageOf(e)), 'media'));
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
        if (call.note !== t('call.no_camera')) call.note = ''; // else keep telling
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

/** The socket is gone: the server has ended this device's calls and ringing already. */
export function socketLost() {
  if (state.call) endCall(state.call, { reason: 'lost' });
  dropIncoming();
}

// ------------------------------------------------------------------------------ incoming calls
/** @param {CallIncoming} ev */
function onIncoming(ev) {
  state.incoming.set(ev.call, { ...ev, stopped: null });
  renderIncoming();
  playTone('ring');
  notifyCall(ev);
  // Take the keyboard to the Answer button, unless the user is typing (Enter must not answer).
  if (!isTyping() && !document.querySelector('dialog[open]')) {
    const answer = document.querySelector(`#incoming [data-call="${CSS.escape(ev.call)}"] .answer`);
    if (answer instanceof HTMLElement) answer.focus();
  }
}

/** @param {Pick<CallRingingStopped, 'call' | 'reason' | 'by'>} ev */
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

export function dropIncoming() {
  for (const ring of state.incoming.values()) { try { ring.notification?.close(); } catch { /* gone */ } }
  state.incoming.clear();
  if (!state.call) stopTone();
  renderIncoming();
}

/**
 * A desktop notification for a call that rings while the tab is hidden.
 * @param {CallIncoming} ev
 */
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
    n.onclick = () => {
      window.focus();
      n.close();
      const answer = document.querySelector(`#incoming [data-call="${CSS.escape(ev.call)}"] .answer`);
      if (answer instanceof HTMLElement) answer.focus();
    };
    if (ring) ring.notification = n;
  } catch { /* not allowed in this context */ }
}

// ------------------------------------------------------------------------------ controls
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
/** @type {Candidate[]} directory hits of the invite dialog's search */
let inviteHits = [];
/** @type {number | undefined} */
let inviteTimer;
let inviteSeq = 0;

function openInviteDialog() {
  if (!state.call || state.call.status !== 'connected') return;
  $('invite-error').textContent = '';
  $('invite-search', HTMLInputElement).value = '';
  inviteHits = [];
  renderInviteList(inviteHits);
  $('invite-dialog', HTMLDialogElement).showModal();
  $('invite-search').focus();
}

// Contacts first; typing also searches the directory, for people not in one's contacts.
function onInviteInput() {
  renderInviteList(inviteHits);
  clearTimeout(inviteTimer);
  const q = $('invite-search', HTMLInputElement).value.trim();
  if (!q) { inviteHits = []; return; }
  inviteTimer = setTimeout(async () => {
    const mine = ++inviteSeq;
    try {
      const users = await api.searchDirectory(q);
      if (mine !== inviteSeq) return;
      for (const u of users) state.names.set(u.id, u.display_name);
      inviteHits = users.map((u) => ({ user: u.id, display_name: u.display_name, presence: null }));
      renderInviteList(inviteHits);
    } catch { /* the contacts still show */ }
  }, 200);
}

/**
 * Rings `user` into the current call.
 * @param {UserId} user
 */
export async function invite(user) {
  const call = state.call;
  if (!call || !call.id) return;
  try {
    await request({ type: 'call_invite', call: call.id, user });
    call.ringing.add(user);
    $('invite-dialog', HTMLDialogElement).close();
    renderCall();
  } catch (e) {
    $('invite-error').textContent = callErrorText(e, 'invite');
  }
}

// ------------------------------------------------------------------------------ forwarding
export async function loadForwarding() {
  if (!canCall || !state.me) return;
  try {
    state.forwarding = (await api.getForwarding(state.me.user)) || {};
    learnNames(Object.values(state.forwarding));
    renderForwarding();
  } catch { /* shown as off; the next change event brings it */ }
}

/** @param {ForwardingChanged} ev */
export function onForwardingChanged(ev) {
  if (!state.me || ev.user !== state.me.user) return;
  state.forwarding = ev.rules || {};
  learnNames(Object.values(state.forwarding));
  renderForwarding();
}

function openForwardDialog() {
  $('forward-error').textContent = '';
  $('forward-status').textContent = '';
  renderForwarding();
  loadForwarding();
  $('forward-dialog', HTMLDialogElement).showModal();
  $('fw-always').focus();
}

/**
 * One of the dialog's selects changed: set or clear that rule.
 * @param {HTMLSelectElement} select
 * @param {ForwardMode} mode
 */
async function onForwardChange(select, mode) {
  const to = select.value;
  $('forward-error').textContent = '';
  $('forward-status').textContent = t('fw.saving');
  select.dataset.busy = '1';
  try {
    if (to) await request({ type: 'forward_set', mode, to });
    else await request({ type: 'forward_clear', mode });
    const rules = { ...state.forwarding };
    if (to) rules[mode] = to; else delete rules[mode];
    state.forwarding = rules;
    $('forward-status').textContent = to ? t('fw.saved', { mode: t('fw.short.' + mode), name: nameOf(to) }) : t('fw.cleared', { mode: t('fw.short.' + mode) });
  } catch (e) {
    $('forward-status').textContent = '';
    $('forward-error').textContent = e instanceof CommandError && e.code === 'bad_request' ? t('fw.error.self') : callErrorText(e, 'forward');
  } finally {
    delete select.dataset.busy;
    renderForwarding();
  }
}

// ------------------------------------------------------------------------------ wiring
/** The 1:1 partner of the open conversation, if any. */
function currentPartner() {
  const conv = state.current ? state.convs.get(state.current) : undefined;
  return conv ? otherOf(conv.summary) : null;
}

/** Connects the call controls of index.html; once, at start. */
export function wireCalls() {
  $('chat-call').addEventListener('click', () => { const user = currentPartner(); if (user) placeCall(user, false); });
  $('chat-video').addEventListener('click', () => { const user = currentPartner(); if (user) placeCall(user, true); });
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
  for (const mode of FORWARD_MODES) {
    const select = $(`fw-${mode}`, HTMLSelectElement);
    select.addEventListener('change', () => onForwardChange(select, mode));
  }
  document.addEventListener('keydown', (e) => {
    // Ctrl+Shift+M mutes from anywhere during a call.
    if (e.key.toLowerCase() === 'm' && e.ctrlKey && e.shiftKey && state.call) { e.preventDefault(); toggleMute(); }
  });
  window.addEventListener('pagehide', () => { if (state.call?.id) send({ type: 'call_hangup', call: state.call.id }); });
  setInterval(() => { if (state.call && state.call.connectedAt) renderCallTimer(); }, 1000);
}

/** The peer connection of the current call (tests read its getStats()). */
export function currentPeerConnection() {
  return state.call?.pc || null;
}
