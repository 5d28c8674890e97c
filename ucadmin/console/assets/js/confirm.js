// One confirmation dialog for actions that change live state (server actions, a kick): it
// names what will happen, and resolves to true only when the administrator confirms.
import { $ } from './dom.js';

/**
 * @param {string} title
 * @param {string} text what will happen, in words
 * @param {string} okLabel the confirming button's label (the action's name)
 * @returns {Promise<boolean>}
 */
export function confirmAction(title, text, okLabel) {
  const dialog = /** @type {HTMLDialogElement} */ ($('confirm-dialog'));
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}
