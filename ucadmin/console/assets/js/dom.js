// Small DOM helpers: look up by id, build elements (text only, never HTML strings), format
// times, and a short toast.

/**
 * The element of index.html with this id; throws when it is missing (page and code ship
 * together: that is a bug). Typed loosely (`any`): the type check covers names, imports and
 * calls, not which kind of element each id is.
 * @param {string} id
 * @returns {any}
 */
export const $ = (id) => {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing`);
  return node;
};

/**
 * An element with attributes (`text` sets its text, `on*` listeners) and children.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = String(value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** "5 s ago", "3 min ago", "never". */
export function ago(ms, now = Date.now()) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Local date and time, to the second. */
export const when = (ms) => (ms ? new Date(ms).toLocaleString() : '—');

let toastTimer = 0;
/** @param {string} text */
export function toast(text) {
  const node = $('toast');
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 4000);
}

/** Hands `blob` to the browser as a download named `name`. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el('a', { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A state pill: ok (green), down (red), off (grey). */
export const pill = (kind, text) => el('span', { class: `state ${kind}`, text });

export const ROLE_NAMES = { full: 'Full admin', users: 'User admin', read_only: 'Read-only' };
