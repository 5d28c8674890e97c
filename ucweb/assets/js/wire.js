// @ts-check
// The server's wire types as the web client uses them, written from the Rust definitions they
// mirror: REST bodies (shared/src/api.rs), WebSocket frames (shared/src/ws.rs), presence
// (shared/src/presence.rs) and call signalling (shared/src/call.rs). Types only: this module
// has no code, the others import the names with `import('./wire.js').Name`.
//
// Serde's `skip_serializing_if = "Option::is_none"` fields are optional here (`?`); fields
// with `#[serde(default)]` are always sent by the server and so are required.

// ------------------------------------------------------------------------------ ids
/** @typedef {string} UserId */
/** @typedef {string} DeviceId */
/** @typedef {string} ServerId */
/** @typedef {string} MediaServerId */
/**
 * `d:<a>:<b>` for 1:1 (names sorted), `g:<group>` for an admin group, `c:<uuid>` ad hoc.
 * @typedef {string} ConversationId
 */
/**
 * `<owner server>~<random>`.
 * @typedef {string} CallId
 */
/**
 * Milliseconds since the Unix epoch.
 * @typedef {number} TimestampMs
 */

// ------------------------------------------------------------------------------ errors (api.rs)
/**
 * @typedef {'bad_request' | 'invalid_credentials' | 'unauthorized' | 'too_many_attempts'
 *   | 'rate_limited' | 'forbidden' | 'not_found' | 'not_a_member' | 'wrong_server' | 'license_exhausted'
 *   | 'conflict' | 'payload_too_large' | 'malformed_frame' | 'unknown_type'
 *   | 'server_unavailable' | 'server_busy' | 'internal'} ErrorCode
 */
/**
 * Body of every error answer.
 * @typedef {Object} ApiErrorBody
 * @property {ErrorCode} error
 * @property {string} message
 * @property {ServerId} [home_server] with `wrong_server`
 * @property {string} [home_url] with `wrong_server`
 * @property {number} [retry_after_ms] with `too_many_attempts`, `rate_limited`, `server_busy`
 */

// ------------------------------------------------------------------------------ presence.rs
/** @typedef {'available' | 'away' | 'busy' | 'dnd' | 'offline'} Availability */
/** @typedef {'idle' | 'forwarded' | 'ringing' | 'in_call'} TelephonyState */
/** @typedef {'chat' | 'audio' | 'video' | 'screen_share' | 'softphone'} Capability */
/** @typedef {'none' | 'basic' | 'full'} Visibility */
/**
 * @typedef {Object} DevicePresence
 * @property {DeviceId} device
 * @property {Capability[]} capabilities
 * @property {boolean} active false while the device is in quiet mode
 * @property {boolean} idle
 */
/**
 * What one watcher sees of one user.
 * @typedef {Object} PresenceView
 * @property {UserId} user
 * @property {Visibility} visibility
 * @property {Availability} availability
 * @property {string} [note]
 * @property {TelephonyState} [telephony] only with `full` visibility
 * @property {Capability[]} capabilities
 * @property {DevicePresence[]} devices
 * @property {number} version grows with every change; 0 for "never seen"
 * @property {TimestampMs} since_ms
 */

// ------------------------------------------------------------------------------ REST (api.rs)
/**
 * `POST /login`.
 * @typedef {Object} LoginRequest
 * @property {UserId} user
 * @property {string} password
 * @property {DeviceId} [device]
 */
/**
 * @typedef {Object} LoginResponse
 * @property {string} token through ucweb: `<server id>~<token>`
 * @property {UserId} user
 * @property {DeviceId} device
 * @property {string} display_name
 * @property {ServerId} server
 * @property {boolean} admin
 */
/**
 * `GET /me`, `GET /directory`.
 * @typedef {Object} UserInfo
 * @property {UserId} id
 * @property {string} display_name
 * @property {ServerId} home_server
 * @property {boolean} admin
 * @property {boolean} online
 */
/**
 * `PUT /presence`.
 * @typedef {Object} SetPresence
 * @property {Availability} [availability]
 * @property {string} [note] "" clears it
 * @property {UserId} [user]
 */
/**
 * An entry of the contact list.
 * @typedef {Object} Contact
 * @property {UserId} user
 * @property {string} display_name
 * @property {string} group "" for none
 * @property {PresenceView} presence
 */
/**
 * `PUT /contacts/{user}`.
 * @typedef {Object} PutContact
 * @property {string} group
 */
/**
 * `POST /messages`: `to` (1:1, creates the conversation) or `conversation`.
 * @typedef {Object} SendMessage
 * @property {UserId} [to]
 * @property {ConversationId} [conversation]
 * @property {string} body
 * @property {string} [client_id]
 */
/**
 * A stored chat message.
 * @typedef {Object} ChatMessage
 * @property {ConversationId} conversation
 * @property {number} seq 1, 2, 3, ... without gaps
 * @property {string} id
 * @property {UserId} sender
 * @property {string} body
 * @property {TimestampMs} sent_ms
 * @property {string} [client_id]
 */
/** @typedef {'direct' | 'group'} ConversationKind */
/**
 * A conversation as the caller sees it.
 * @typedef {Object} ConversationSummary
 * @property {ConversationId} id
 * @property {ConversationKind} kind
 * @property {string} name
 * @property {UserId[]} members
 * @property {number} last_seq
 * @property {number} last_read_seq the caller's read marker
 * @property {number} unread
 * @property {ChatMessage} [last_message]
 */
/**
 * `POST /conversations`.
 * @typedef {Object} CreateConversation
 * @property {string} name
 * @property {UserId[]} members
 */
/**
 * `POST /conversations/{id}/read`.
 * @typedef {Object} MarkRead
 * @property {number} [seq]
 */
/**
 * @typedef {Object} ReadMarker
 * @property {ConversationId} conversation
 * @property {UserId} user
 * @property {number} seq
 */
/** @typedef {'chat' | 'call'} JournalKind */
/** @typedef {'incoming' | 'outgoing'} Direction */
/** @typedef {'answered' | 'missed' | 'rejected' | 'busy' | 'forwarded' | 'picked_up' | 'failed'} CallResult */
/**
 * One line of the journal.
 * @typedef {Object} JournalEntry
 * @property {string} id
 * @property {UserId} user
 * @property {JournalKind} kind
 * @property {Direction} direction
 * @property {string} party the other party (a group chat: the conversation's name)
 * @property {ConversationId} [conversation]
 * @property {TimestampMs} started_ms
 * @property {TimestampMs} [answered_ms]
 * @property {TimestampMs} [ended_ms]
 * @property {CallResult} [result]
 * @property {number} messages chat entries: the messages covered
 * @property {string} [summary] calls: the call id
 */

// ------------------------------------------------------------------------------ calls (call.rs)
/** @typedef {'always' | 'busy' | 'no_answer'} ForwardMode */
/**
 * At most one target per mode.
 * @typedef {Object} ForwardingRules
 * @property {UserId} [always]
 * @property {UserId} [busy]
 * @property {UserId} [no_answer]
 */
/**
 * Why a device stopped ringing.
 * @typedef {'answered_elsewhere' | 'rejected' | 'picked_up' | 'cancelled' | 'no_answer'
 *   | 'forwarded' | 'failed'} StopReason
 */
/**
 * Why a call (or one invitation into it) ended.
 * @typedef {'hung_up' | 'cancelled' | 'rejected' | 'busy' | 'no_answer' | 'offline'
 *   | 'unknown_user' | 'media_failed' | 'setup_failed'} EndReason
 */
/** @typedef {{ type: 'call_place', to: UserId, sdp: string, video: boolean }} CallPlace */
/** @typedef {{ type: 'call_answer', call: CallId, sdp: string }} CallAnswer */
/** @typedef {{ type: 'call_reject', call: CallId }} CallReject */
/** @typedef {{ type: 'call_hangup', call: CallId }} CallHangup */
/** @typedef {{ type: 'call_pickup', user: UserId, call?: CallId, sdp: string }} CallPickup */
/** @typedef {{ type: 'call_invite', call: CallId, user: UserId }} CallInvite */
/** @typedef {{ type: 'forward_set', mode: ForwardMode, to: UserId, user?: UserId }} ForwardSet */
/** @typedef {{ type: 'forward_clear', mode?: ForwardMode, user?: UserId }} ForwardClear */
/**
 * @typedef {CallPlace | CallAnswer | CallReject | CallHangup | CallPickup | CallInvite
 *   | ForwardSet | ForwardClear} CallCommand
 */

/** @typedef {{ type: 'call_placed', call: CallId, to: UserId, media: MediaServerId }} CallPlaced */
/**
 * A call rings at this device.
 * @typedef {Object} CallIncoming
 * @property {'call_incoming'} type
 * @property {CallId} call
 * @property {UserId} from the caller, or the inviter of a conference
 * @property {UserId} [forwarded_from]
 * @property {boolean} conference
 * @property {UserId[]} parties
 * @property {boolean} video
 */
/** @typedef {{ type: 'call_ringing', call: CallId, user: UserId }} CallRinging */
/** @typedef {{ type: 'call_ringing_stopped', call: CallId, reason: StopReason, by?: UserId }} CallRingingStopped */
/** @typedef {{ type: 'call_redirected', call: CallId, from: UserId, to: UserId, mode: ForwardMode }} CallRedirected */
/** @typedef {{ type: 'call_media_answer', call: CallId, media: MediaServerId, sdp: string }} CallMediaAnswer */
/** @typedef {{ type: 'call_connected', call: CallId, parties: UserId[] }} CallConnected */
/** @typedef {{ type: 'call_party_left', call: CallId, user: UserId, parties: UserId[] }} CallPartyLeft */
/** @typedef {{ type: 'call_invite_failed', call: CallId, user: UserId, reason: EndReason }} CallInviteFailed */
/** @typedef {{ type: 'call_ended', call: CallId, reason: EndReason, result: CallResult }} CallEnded */
/**
 * Events about one call (every `call_*` event; they all name their call).
 * @typedef {CallPlaced | CallIncoming | CallRinging | CallRingingStopped | CallRedirected
 *   | CallMediaAnswer | CallConnected | CallPartyLeft | CallInviteFailed | CallEnded} CallEvent
 */
/** @typedef {{ type: 'forwarding_changed', user: UserId, rules: ForwardingRules }} ForwardingChanged */

// ------------------------------------------------------------------------------ WebSocket (ws.rs)
/** @typedef {{ type: 'ping' }} Ping */
/** @typedef {{ type: 'presence_set', availability?: Availability, note?: string, user?: UserId }} PresenceSet */
/** @typedef {{ type: 'device_state', active?: boolean, idle?: boolean }} DeviceState */
/** @typedef {{ type: 'send', to?: UserId, conversation?: ConversationId, body: string, client_id?: string }} Send */
/** @typedef {{ type: 'read', conversation: ConversationId, seq: number }} Read */
/** @typedef {{ type: 'typing', conversation: ConversationId, typing: boolean }} Typing */
/** @typedef {{ type: 'sync', since: Record<ConversationId, number> }} Sync */
/**
 * A command from this device. Any command may carry `ref`, echoed by its `ack` or `error`.
 * @typedef {(Ping | PresenceSet | DeviceState | Send | Read | Typing | Sync | CallCommand)
 *   & { ref?: number }} ClientCommand
 */

/**
 * First frame after connecting.
 * @typedef {Object} Hello
 * @property {'hello'} type
 * @property {UserId} user
 * @property {DeviceId} device
 * @property {ServerId} server
 * @property {ConversationSummary[]} conversations
 * @property {PresenceView[]} presence of everyone the user watches
 * @property {{ id: ServerId, url: string }[]} [servers] every live server of the cluster
 */
/**
 * A command succeeded.
 * @typedef {Object} Ack
 * @property {'ack'} type
 * @property {number} [ref]
 * @property {ChatMessage} [message] `send`: the stored message
 * @property {CallId} [call] `call_place`, `call_pickup`: the call
 */
/**
 * A command failed; the connection stays open.
 * @typedef {Object} ErrorFrame
 * @property {'error'} type
 * @property {number} [ref]
 * @property {ErrorCode} error
 * @property {string} message
 */
/** @typedef {{ type: 'pong' }} Pong */
/** @typedef {{ type: 'presence', presence: PresenceView }} PresenceEvent */
/**
 * A chat message; `alert` asks this device to notify, `replay` marks one sent again after a
 * reconnect.
 * @typedef {{ type: 'message', message: ChatMessage, alert: boolean, replay: boolean }} MessageArrived
 */
/** @typedef {{ type: 'read', conversation: ConversationId, user: UserId, seq: number }} ReadEvent */
/** @typedef {{ type: 'typing', conversation: ConversationId, user: UserId, typing: boolean }} TypingEvent */
/** @typedef {{ type: 'conversation', conversation: ConversationSummary }} ConversationEvent */
/**
 * Where each conversation stands; sent when the server may have missed deliveries. Sync the
 * ones past what this tab holds.
 * @typedef {{ type: 'conversation_heads', conversations: ConversationSummary[] }} ConversationHeads
 */
/** @typedef {{ type: 'goodbye', reason: string }} Goodbye */
/**
 * Another server serves this user from now on: connect again at once with the same token.
 * @typedef {{ type: 'reconnect', server: string, url: string, reason: string }} Reconnect
 */
/**
 * An event pushed to this device.
 * @typedef {Hello | Ack | ErrorFrame | Pong | PresenceEvent | MessageArrived | ReadEvent
 *   | TypingEvent | ConversationEvent | ConversationHeads | Goodbye | Reconnect | CallEvent
 *   | ForwardingChanged} ServerEvent
 */

export {};
