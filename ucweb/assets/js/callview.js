// @ts-check
// Rendering of everything about calls: the call view (status, people, video, controls), the
// cards of calls ringing here, the "add a person" list and the forwarding dialog and indicator.
// Like views.js: draws from `state`, controls call `actions()`.

import { $, el, isTyping } from './util.js';
import { t, fmtDuration } from './i18n.js';
import { svgIcon } from './icons.js';
import { actions } from './actions.js';
import { avatar, presenceText } from './views.js';
import { state, me, nameOf } from './state.js';

/**
 * @import { CallIncoming, ForwardMode, PresenceView, UserId } from './wire.js'
 * @import { Call, Ring } from './state.js'
 * @import { IconName } from './icons.js'
 */

/** @type {ForwardMode[]} */
export const FORWARD_MODES = ['always', 'busy', 'no_answer'];

// ------------------------------------------------------------------------------ ringing
/**
 * "Incoming video call", "Invitation to a conference call", ...
 * @param {CallIncoming} ring
 */
export function incomingKind(ring) {
  if (ring.conference) return t(ring.video ? 'ring.conference_video' : 'ring.conference');
  return t(ring.video ? 'ring.video' : 'ring.audio');
}

/** @param {Ring} ring */
function stoppedText(ring) {
  if (!ring.stopped) return '';
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

/** The cards of the calls ringing here, and of those that just stopped (with why). */
export function renderIncoming() {
  const box = $('incoming');
  if (!state.me) { box.replaceChildren(); return; }
  const mine = state.me.user;
  // Re-rendering must not drop the keyboard: remember which button of which call had it.
  const active = document.activeElement instanceof HTMLElement && box.contains(document.activeElement) ? document.activeElement : null;
  const focused = active && { call: active.closest('[data-call]')?.getAttribute('data-call') || '', action: active.dataset.action };
  const shown = new Set([...box.children].map((card) => card.getAttribute('data-call')));
  box.replaceChildren();
  // What still rings comes first; what stopped lingers below with its reason.
  const rings = [...state.incoming].sort(([, a], [, b]) => Number(!!a.stopped) - Number(!!b.stopped));
  for (const [id, ring] of rings) {
    const key = id.replace(/[^a-z0-9]/gi, '_');
    const others = (ring.parties || []).filter((u) => u !== mine && u !== ring.from);
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
        roundButton('reject', 'hangup', t('ring.reject'), t('ring.reject_label', { name }), () => actions().rejectCall(id)),
        roundButton('answer', 'phone', t('ring.answer'), t('ring.answer_label', { name }), () => actions().answerCall(id, false)),
        ring.video ? roundButton('answer-video', 'video', t('ring.answer_video'), t('ring.answer_video_label', { name }), () => actions().answerCall(id, true)) : null));
    }
    box.append(card);
  }
  if (focused) {
    const card = box.querySelector(`[data-call="${CSS.escape(focused.call)}"]`);
    const button = card?.querySelector(`[data-action="${focused.action}"]`) || card?.querySelector('button');
    if (button instanceof HTMLElement) button.focus();
  }
}

/**
 * A round button of a ringing card; `action` is also its class and data-action.
 * @param {string} action
 * @param {IconName} icon
 * @param {string} text
 * @param {string} label
 * @param {() => void} onclick
 */
function roundButton(action, icon, text, label, onclick) {
  return el('button', { type: 'button', class: `round-btn ${action}`, dataset: { action }, 'aria-label': label, onclick },
    el('span', { class: 'round-icon' }, svgIcon(icon)), el('span', { class: 'round-text' }, text));
}

// ------------------------------------------------------------------------------ the call view
/** @param {Call} call */
function callTitle(call) {
  const others = call.parties.filter((u) => u !== me().user);
  if (call.status === 'connected' && others.length) return others.map(nameOf).join(', ');
  return nameOf(call.peer);
}

/** @param {Call} call */
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

/**
 * @param {string} id
 * @param {IconName} icon
 * @param {string} textKey
 * @param {boolean} pressed
 */
function setCallButton(id, icon, textKey, pressed) {
  const button = $(id);
  button.querySelector('.call-btn-icon')?.replaceChildren(svgIcon(icon));
  const text = button.querySelector('.call-btn-text');
  if (text) text.textContent = t(textKey);
  button.setAttribute('aria-pressed', pressed ? 'true' : 'false');
  button.title = button.hasAttribute('aria-keyshortcuts') ? `${t(textKey)} (Ctrl+Shift+M)` : '';
}

/** @type {Call | null} the call the view showed last time */
let shownCall = null;
/** @type {HTMLElement | null} where the keyboard was before a call took it */
let returnFocus = null;

/** The call view: the current call, or the one just over with its outcome; hidden without. */
export function renderCall() {
  const view = $('call-view');
  const call = state.call || state.endedCall;
  const wasHidden = view.hidden;
  view.hidden = !call || !state.me;
  document.body.classList.toggle('in-call', !view.hidden);
  if (!call || view.hidden) {
    shownCall = null;
    if (!wasHidden) restoreFocusAfterCall();
    return;
  }
  const outcome = call.outcome;
  view.dataset.status = outcome ? 'ended' : call.status;
  view.classList.toggle('video', call.videoLine && !outcome);
  view.classList.toggle('failed', !!outcome?.failed);
  $('call-title').textContent = callTitle(call);
  const people = $('call-people');
  const others = call.parties.filter((u) => u !== me().user);
  const shown = others.length ? others : [call.peer];
  people.replaceChildren(...shown.slice(0, 3).map((u) => avatar(u, 'call-avatar')));
  people.classList.toggle('many', shown.length > 1);
  people.classList.toggle('pulse', !outcome && (call.status === 'calling' || call.status === 'ringing'));
  $('call-status').textContent = outcome ? outcome.text : callStatusText(call);
  const ringing = [...call.ringing].map(nameOf);
  $('call-note').textContent = [outcome ? '' : call.note, !outcome && ringing.length ? t('call.inviting', { names: ringing.join(', ') }) : ''].filter(Boolean).join(' · ');
  renderCallTimer();
  const remote = $('call-remote-video', HTMLVideoElement);
  remote.hidden = !!outcome || !call.videoLine || !call.remoteVideo;
  const localVideo = $('call-local-video', HTMLVideoElement);
  const camera = call.local?.getVideoTracks()[0];
  localVideo.hidden = !!outcome || !camera || call.cameraOff;
  if (camera && localVideo.srcObject !== call.local) localVideo.srcObject = call.local;
  $('call-stage').hidden = !!outcome || !call.videoLine;
  $('call-stage-people').replaceChildren(...(remote.hidden ? [avatar(shown[0], 'stage-avatar')] : []));
  setCallButton('call-mute', call.muted ? 'mic-off' : 'mic', call.muted ? 'call.unmute' : 'call.mute', call.muted);
  setCallButton('call-camera', call.cameraOff ? 'video' : 'video-off', call.cameraOff ? 'call.camera_on' : 'call.camera_off', call.cameraOff);
  $('call-mute').hidden = !!outcome;
  $('call-camera').hidden = !!outcome || !camera;
  $('call-add').hidden = !!outcome || call.status !== 'connected';
  $('call-hangup').hidden = !!outcome;
  $('call-close').hidden = !outcome;
  const hangupText = $('call-hangup').querySelector('.call-btn-text');
  if (hangupText) hangupText.textContent = t(call.status === 'connected' ? 'call.hangup' : 'call.cancel');
  const active = document.activeElement;
  if (!outcome && shownCall !== call) {
    // A call that just started takes the keyboard to its controls (unless the user types).
    if (!isTyping() && !document.querySelector('dialog[open]')) {
      if (!view.contains(active)) returnFocus = active instanceof HTMLElement && active !== document.body ? active : null;
      $('call-hangup').focus();
    }
  } else if (outcome && (active === document.body || active?.closest('[hidden]'))) {
    $('call-close').focus();
  }
  shownCall = call;
}

function restoreFocusAfterCall() {
  const back = returnFocus;
  returnFocus = null;
  const active = document.activeElement;
  if (active && active !== document.body && !$('call-view').contains(active)) return;
  if (back && back.isConnected && back.offsetParent !== null) back.focus();
}

/** The duration of the call (ticking) or of the one just over. */
export function renderCallTimer() {
  const call = state.call || state.endedCall;
  const timer = $('call-timer');
  if (!call) { timer.textContent = ''; return; }
  if (call.outcome) timer.textContent = call.outcome.duration !== null ? fmtDuration(call.outcome.duration) : '';
  else timer.textContent = call.connectedAt ? fmtDuration(Math.floor((Date.now() - call.connectedAt) / 1000)) : '';
}

// ------------------------------------------------------------------------------ add a person
/**
 * Someone the invite dialog offers.
 * @typedef {{ user: UserId, display_name: string, presence: PresenceView | null }} Candidate
 */

/**
 * Who can be added to the call: the contacts matching the search, then directory hits.
 * @param {Candidate[]} directoryHits
 */
export function renderInviteList(directoryHits) {
  const call = state.call;
  const list = $('invite-list');
  list.replaceChildren();
  if (!call) return;
  const q = $('invite-search', HTMLInputElement).value.trim().toLowerCase();
  const seen = new Set();
  /** @type {Candidate[]} */
  const all = [...state.contacts, ...(q ? directoryHits : [])];
  const candidates = all
    .filter((c) => !seen.has(c.user) && seen.add(c.user))
    .filter((c) => !call.parties.includes(c.user) && !call.ringing.has(c.user) && c.user !== me().user)
    .filter((c) => !q || c.display_name.toLowerCase().includes(q) || c.user.includes(q));
  if (!candidates.length) { list.append(el('li', { class: 'empty muted', text: t('invite.none') })); return; }
  for (const c of candidates) {
    const view = state.presence.get(c.user) || c.presence;
    const av = view?.availability || 'offline';
    const status = view ? presenceText(view) : '@' + c.user;
    list.append(el('li', {},
      el('button', { type: 'button', class: 'row-main', 'aria-label': t('invite.add_label', { name: c.display_name }) + ' — ' + status, onclick: () => actions().invite(c.user) },
        el('span', { class: 'avatar-wrap' }, avatar(c.user), view ? el('span', { class: `dot ${av}`, 'aria-hidden': 'true' }) : null),
        el('span', { class: 'row-text' }, el('span', { class: 'row-title' }, c.display_name), el('span', { class: 'row-sub' }, status)))));
  }
}

// ------------------------------------------------------------------------------ forwarding
/** The indicator under one's name and the dialog's three selects. */
export function renderForwarding() {
  if (!state.me) return;
  const rules = state.forwarding || {};
  const indicator = $('me-forward');
  const active = FORWARD_MODES.filter((m) => rules[m]);
  indicator.hidden = !active.length;
  if (active.length) {
    indicator.replaceChildren(svgIcon('forward'), el('span', {}, rules.always
      ? t('fw.indicator_always', { name: nameOf(rules.always) })
      : t('fw.indicator', { rules: active.map((m) => `${t('fw.short.' + m)} → ${nameOf(rules[m] || '')}`).join(', ') })));
    indicator.setAttribute('aria-label', indicator.textContent + ' — ' + t('fw.open'));
  }
  $('forward-btn').classList.toggle('on', !!active.length);
  for (const mode of FORWARD_MODES) {
    const select = $(`fw-${mode}`, HTMLSelectElement);
    // Not under the user's hands while a change of it is being saved.
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
