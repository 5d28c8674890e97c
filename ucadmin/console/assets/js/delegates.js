// The user dialog's delegates: who acts for the user (sets their presence, answers and
// forwards their calls, sees all of their presence). Each add or removal is made at once,
// apart from the dialog's Save, and audited; read-only administrators see the list only.
import { call } from './api.js';
import { $, el, toast } from './dom.js';

const enc = encodeURIComponent;
/** The user whose delegates are shown, and whether this administrator may change them. */
let shown = { user: '', mayChange: false };

function draw(delegates) {
  const list = $('u-delegate-list');
  list.replaceChildren(...delegates.map((id) => el('li', { 'data-delegate': id },
    el('span', { class: 'grow', text: id }),
    shown.mayChange ? el('button', {
      type: 'button', class: 'secondary small-btn', text: 'Remove',
      'aria-label': `Remove delegate ${id} of ${shown.user}`,
      onclick: () => change('DELETE', id),
    }) : null)));
  if (!delegates.length) list.replaceChildren(el('li', { class: 'muted', text: 'Nobody acts for this user.' }));
}

async function change(method, delegate) {
  try {
    const { data } = await call(method, `/admin/users/${enc(shown.user)}/delegates/${enc(delegate)}`);
    draw(data);
    $('u-delegate-new').value = '';
  } catch (error) {
    toast(error.message);
  }
}

/**
 * Shows the delegates of `user` (none: a user being created, the section is hidden).
 * @param {string | null} user
 * @param {boolean} mayChange
 */
export async function showDelegates(user, mayChange) {
  $('u-delegates').hidden = !user;
  if (!user) return;
  shown = { user, mayChange };
  $('u-delegate-add-row').hidden = !mayChange;
  $('u-delegate-list').replaceChildren();
  try {
    draw((await call('GET', `/admin/users/${enc(user)}/delegates`)).data);
  } catch (error) {
    toast(error.message);
  }
}

export function wireDelegates() {
  const add = () => {
    const delegate = $('u-delegate-new').value.trim();
    if (delegate) change('PUT', delegate);
  };
  $('u-delegate-add').addEventListener('click', add);
  // Enter adds the delegate rather than saving the whole user.
  $('u-delegate-new').addEventListener('keydown', (event) => {
    if (event.key === 'Enter') { event.preventDefault(); add(); }
  });
}
