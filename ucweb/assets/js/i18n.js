// @ts-check
// English and German: the texts live in /i18n/<lang>.json; index.html names them with
// data-i18n (text), data-i18n-label (aria-label) and data-i18n-placeholder. English fills in
// for a key German lacks; a key missing in both shows as itself.

/** @typedef {'en' | 'de'} Lang */

/** @type {Partial<Record<Lang, Record<string, string>>>} */
const dicts = {};

/** @type {Lang} */
let lang = initialLanguage();

/** @returns {Lang} the one chosen before, else the browser's if it is German, else English */
function initialLanguage() {
  const saved = localStorage.getItem('sb.lang');
  if (saved === 'en' || saved === 'de') return saved;
  return (navigator.language || 'en').toLowerCase().startsWith('de') ? 'de' : 'en';
}

/** The language shown now. */
export function language() {
  return lang;
}

/**
 * The text of `key` with `{name}` placeholders filled from `vars`.
 * @param {string} key
 * @param {Record<string, string | number>} [vars]
 */
export function t(key, vars = {}) {
  const text = dicts[lang]?.[key] ?? dicts.en?.[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/**
 * Fetches a language's texts once.
 * @param {Lang} code
 */
async function load(code) {
  if (dicts[code]) return;
  const res = await fetch(`/i18n/${code}.json`);
  dicts[code] = /** @type {Record<string, string>} */ (await res.json());
}

/** Loads English and the chosen language: call once before the first `t`. */
export async function loadLanguages() {
  await load('en');
  if (lang !== 'en') await load(lang);
}

/** Switches between English and German and remembers the choice; the caller re-renders. */
export async function toggleLanguage() {
  lang = lang === 'en' ? 'de' : 'en';
  localStorage.setItem('sb.lang', lang);
  await load(lang);
  applyI18n();
}

/** Puts the texts of the current language into index.html's static parts. */
export function applyI18n() {
  document.documentElement.lang = lang;
  for (const node of document.querySelectorAll('[data-i18n]')) {
    if (node instanceof HTMLElement) node.textContent = t(node.dataset.i18n || '');
  }
  for (const node of document.querySelectorAll('[data-i18n-label]')) {
    if (node instanceof HTMLElement) node.setAttribute('aria-label', t(node.dataset.i18nLabel || ''));
  }
  for (const node of document.querySelectorAll('[data-i18n-placeholder]')) {
    if (node instanceof HTMLInputElement || node instanceof HTMLTextAreaElement) {
      node.placeholder = t(node.dataset.i18nPlaceholder || '');
    }
  }
  for (const node of document.querySelectorAll('.lang-toggle')) {
    if (!(node instanceof HTMLElement)) continue;
    node.textContent = t('lang.short');
    node.title = t('lang.toggle');
  }
}

function locale() {
  return lang === 'de' ? 'de-DE' : 'en-GB';
}

/**
 * A message or journal time: the time today, "yesterday 10:20", else day, month and time.
 * @param {number} ms
 */
export function fmtTime(ms) {
  const d = new Date(ms);
  const now = new Date();
  const time = d.toLocaleTimeString(locale(), { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return time;
  const y = new Date(now); y.setDate(now.getDate() - 1);
  if (d.toDateString() === y.toDateString()) return `${t('yesterday')} ${time}`;
  return d.toLocaleDateString(locale(), { day: 'numeric', month: 'short' }) + ' ' + time;
}

/**
 * The day separator of the message list.
 * @param {number} ms
 */
export function dayLabel(ms) {
  const d = new Date(ms);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return t('today');
  const y = new Date(now); y.setDate(now.getDate() - 1);
  if (d.toDateString() === y.toDateString()) return t('yesterday');
  return d.toLocaleDateString(locale(), { weekday: 'short', day: 'numeric', month: 'long' });
}

/**
 * A call's duration: `m:ss` or `h:mm:ss`.
 * @param {number} seconds
 */
export function fmtDuration(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}
