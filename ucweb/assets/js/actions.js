// @ts-check
// What the rendered controls do. The views only draw from `state`; main.js binds these to the
// chat, calls and people modules once at start. So no view imports a module that renders, and
// the modules form layers without cycles: util/i18n/state → api/socket → views → the rest.

/**
 * @import { CallId, UserId, ConversationId } from './wire.js'
 * @import { Conv, PendingMessage } from './state.js'
 */

/**
 * @typedef {Object} Actions
 * @property {(user: UserId) => void} openDirect open the 1:1 chat with someone
 * @property {(id: ConversationId) => void} openConversation
 * @property {(conv: Conv, message: PendingMessage) => void} resend a message that failed
 * @property {(user: UserId) => void} addContact
 * @property {(user: UserId) => void} removeContact
 * @property {(user: UserId, video: boolean) => void} placeCall
 * @property {(user: UserId) => void} pickUp take the call ringing at a colleague
 * @property {(call: CallId, withVideo: boolean) => void} answerCall
 * @property {(call: CallId) => void} rejectCall
 * @property {(user: UserId) => void} invite ring someone into the current call
 */

/** @type {Actions | null} */
let bound = null;

/** @param {Actions} table */
export function bindActions(table) {
  bound = table;
}

/** The actions; main.js binds them before anything renders. */
export function actions() {
  if (!bound) throw new Error('the view actions are not bound yet');
  return bound;
}
