// The admin live channel (`/api/v1/admin/events`, a WebSocket): what other administrators
// change anywhere in the cluster, and servers found dead, as it happens. The page redraws
// the view shown when a change concerns it and says who changed what; it pings every 25 s
// (proxies close quiet sockets) and reconnects with a growing pause when the channel drops.
import { session } from './api.js';
import { $ } from './dom.js';

const PING_MS = 25000;
const MAX_PAUSE_MS = 30000;
/** The close code of a session that ended: sign in again. */
const SIGNED_OUT = 4001;

let socket = null;
let pingTimer = 0;
let retryTimer = 0;
let pause = 1000;
let handlers = null;

function showState(on, text) {
  const node = $('live-state');
  node.classList.toggle('on', on);
  node.textContent = text;
}

function connect() {
  if (!session.current || !handlers) return;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${scheme}://${location.host}/api/v1/admin/events?token=${encodeURIComponent(session.current.token)}`;
  const current = new WebSocket(url);
  socket = current;
  current.onopen = () => {
    pause = 1000;
    clearInterval(pingTimer);
    pingTimer = setInterval(() => {
      if (current.readyState === WebSocket.OPEN) current.send('{"type":"ping"}');
    }, PING_MS);
  };
  current.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    if (event.type === 'hello') showState(true, 'Live');
    else if (event.type !== 'pong') handlers.onEvent(event);
  };
  current.onclose = (closed) => {
    clearInterval(pingTimer);
    if (socket !== current) return;
    socket = null;
    if (closed.code === SIGNED_OUT) {
      showState(false, 'Offline');
      handlers.onSignedOut();
      return;
    }
    showState(false, 'Reconnecting…');
    retryTimer = setTimeout(connect, pause);
    pause = Math.min(pause * 2, MAX_PAUSE_MS);
  };
}

/**
 * Opens the channel for the signed-in administrator.
 * @param {{ onEvent: (event: any) => void, onSignedOut: () => void }} callbacks
 */
export function startLive(callbacks) {
  stopLive();
  handlers = callbacks;
  showState(false, 'Connecting…');
  connect();
}

export function stopLive() {
  handlers = null;
  clearTimeout(retryTimer);
  clearInterval(pingTimer);
  const open = socket;
  socket = null;
  if (open) open.close();
  showState(false, 'Offline');
}
