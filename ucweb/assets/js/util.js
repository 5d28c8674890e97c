// @ts-check
// DOM helpers shared by every module: find an element of index.html, make one, tell whether
// the user is typing somewhere.

/**
 * The element of index.html with this id. Throws when it is missing or is not of `type`: the
 * page and the code are shipped together, so that is a bug, not a state to handle.
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @param {{ new (): T }} [type] e.g. HTMLInputElement
 * @returns {T}
 */
export function $(id, type) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`index.html has no #${id}`);
  if (type && !(node instanceof type)) throw new Error(`#${id} is a ${node.tagName}`);
  return /** @type {T} */ (node);
}

/** @typedef {string | number | boolean | null | undefined} AttrValue */
/**
 * `class`, `text`, `dataset` (an object), `on<event>` (a listener) or any attribute; `null`,
 * `undefined` and `false` leave the attribute out, `true` sets it empty.
 * @typedef {{ [name: string]: AttrValue | ((event: Event) => unknown) | Record<string, string> }} Props
 */
/** @typedef {Node | string | null | undefined | false} Child */

/**
 * A new element with its properties and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === 'function') {
      if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    } else if (typeof value === 'object') {
      if (name === 'dataset') Object.assign(node.dataset, value);
    } else if (name === 'class') node.className = String(value);
    else if (name === 'text') node.textContent = String(value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

/** True while the keyboard is in a text field (Enter must not answer a call then). */
export function isTyping() {
  const active = document.activeElement;
  if (active instanceof HTMLTextAreaElement || active instanceof HTMLSelectElement) return true;
  return active instanceof HTMLInputElement && active.type !== 'checkbox';
}

/**
 * The message of anything thrown.
 * @param {unknown} error
 */
export function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
}
