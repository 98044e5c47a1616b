// The unlocked app: conversations and chat, contacts, settings. `closeApp` clears every list,
// text and field the page holds, so nothing of the vault stays in the page after a lock.
import * as backend from './backend.js';
import { $, el, errorText, showError, showOnly, time, day, shortTime } from './util.js';
import { dial, wireCalls, closeCall, onCallEvent } from './call.js';

const VIEWS = ['view-chats', 'view-contacts', 'view-settings'];
const NAV = { 'view-chats': 'nav-chats', 'view-contacts': 'nav-contacts', 'view-settings': 'nav-settings' };
const MARKS = {
  pending: ['\u25F7', 'waiting to be sent'],
  sent: ['\u2713', 'sent to the relay'],
  delivered: ['\u2713\u2713', 'delivered'],
  read: ['\u2713\u2713', 'read'],
  failed: ['!', 'not delivered'],
};
const PAGE = 50;

let wired = false;
let open = null; // account id of the open conversation (kept across a lock, to come back to it)
let openName = '';
let oldestRow = null; // history paging
let loadingOlder = false;
let safetyFor = null;

function mark(status, failure) {
  const m = MARKS[status];
  if (!m) return null;
  const label = failure ? `${m[1]}: ${failure}` : m[1];
  return el('span', { class: `mark mark-${status}`, role: 'img', 'aria-label': label, title: label }, m[0]);
}

const CLOCK_FLAG = 'The sender\u2019s clock was wrong: shown at the time it arrived.';

// Message actions (docs/message-actions.md): reply, react, edit, delete — on hover or focus,
// from the context menu, and from the keyboard (R reply, E edit, + react, Delete on a focused
// message; in an empty composer, Up edits your last message; Escape cancels).
const EDIT_WINDOW_MS = 24 * 3600 * 1000;
const QUICK_REACTIONS = ['\u{1F44D}', '\u2764\uFE0F', '\u{1F602}', '\u{1F62E}', '\u{1F622}', '\u{1F64F}'];
let composeMode = null; // { kind: 'reply' | 'edit', id }

function editable(m) {
  return m.outgoing && m.kind === 'text' && Date.now() - m.sent < EDIT_WINDOW_MS;
}

function actionBar(m) {
  return el('div', { class: 'actions', role: 'toolbar', 'aria-label': 'Message actions' },
    el('button', { type: 'button', class: 'act-reply', onclick: () => startReply(m) }, 'Reply'),
    el('button', { type: 'button', class: 'act-react', 'aria-haspopup': 'true', onclick: (e) => togglePicker(e.target.closest('.msg'), m) }, 'React'),
    editable(m) ? el('button', { type: 'button', class: 'act-edit', onclick: () => startEdit(m) }, 'Edit') : null,
    el('button', { type: 'button', class: 'act-delete', 'aria-haspopup': 'true', onclick: (e) => toggleDeleteMenu(e.target.closest('.msg'), m) }, 'Delete'));
}

function closeMenus() {
  for (const menu of document.querySelectorAll('.msg .menu')) menu.remove();
}

function togglePicker(node, m) {
  const wasOpen = node.querySelector('.menu.picker');
  closeMenus();
  if (wasOpen) return;
  const mine = (m.reactions || []).find((r) => r.mine);
  const menu = el('div', { class: 'menu picker', role: 'menu', 'aria-label': 'React' },
    QUICK_REACTIONS.map((emoji) => {
      const chosen = mine && mine.emoji === emoji;
      return el('button', { type: 'button', role: 'menuitem', class: chosen ? 'chosen' : '', 'aria-label': chosen ? `Remove ${emoji}` : `React ${emoji}`, onclick: () => reactWith(m, chosen ? null : emoji) }, emoji);
    }));
  node.append(menu);
  menu.querySelector('button').focus();
}

function toggleDeleteMenu(node, m) {
  const wasOpen = node.querySelector('.menu.delete');
  closeMenus();
  if (wasOpen) return;
  const menu = el('div', { class: 'menu delete', role: 'menu', 'aria-label': 'Delete' },
    el('button', { type: 'button', role: 'menuitem', class: 'del-me', onclick: () => deleteMsg(m, false) }, 'Delete for me'),
    editable(m) ? el('button', { type: 'button', role: 'menuitem', class: 'del-everyone', onclick: () => deleteMsg(m, true) }, 'Delete for everyone') : null);
  node.append(menu);
  menu.querySelector('button').focus();
}

async function reactWith(m, emoji) {
  closeMenus();
  try { await backend.react(m.id, emoji); } catch (err) { showError('chat-error', err); }
}

async function deleteMsg(m, everyone) {
  closeMenus();
  try {
    await backend.deleteMessage(m.id, everyone);
    if (!everyone) {
      document.querySelector(`.msg[data-id="${m.id}"]`)?.remove();
      shownBodies.delete(m.id);
    }
  } catch (err) { showError('chat-error', err); }
}

function setComposeMode(mode, text) {
  composeMode = mode;
  $('#compose-state').hidden = !mode;
  $('#compose-state-text').textContent = text || '';
  if (!mode) $('#compose').value = '';
  $('#compose').focus();
}

function startReply(m) {
  const preview = m.body.length > 60 ? `${m.body.slice(0, 60)}\u2026` : m.body;
  setComposeMode({ kind: 'reply', id: m.id }, `Replying to: ${preview}`);
}

function startEdit(m) {
  setComposeMode({ kind: 'edit', id: m.id }, 'Editing your message');
  $('#compose').value = m.body;
}

/** What the actions need of a message shown in the log. */
function viewOf(node) {
  return {
    id: node.dataset.id,
    kind: node.dataset.kind,
    outgoing: node.dataset.outgoing === 'yes',
    sent: Number(node.dataset.sent),
    body: node.dataset.body || '',
    reactions: [...node.querySelectorAll('.reaction')].map((r) => ({ mine: r.classList.contains('mine'), emoji: r.textContent })),
  };
}

function onLogKey(e) {
  if (e.key === 'Escape') { closeMenus(); return; }
  const node = e.target.closest && e.target.closest('.msg');
  if (!node || e.target !== node || node.dataset.kind !== 'text') return;
  const m = viewOf(node);
  if (e.key === 'r' || e.key === 'R') { e.preventDefault(); startReply(m); }
  else if ((e.key === 'e' || e.key === 'E') && editable(m)) { e.preventDefault(); startEdit(m); }
  else if (e.key === '+') { e.preventDefault(); togglePicker(node, m); }
  else if (e.key === 'Delete') { e.preventDefault(); toggleDeleteMenu(node, m); }
}

function onLogContextMenu(e) {
  const node = e.target.closest && e.target.closest('.msg');
  if (!node || node.dataset.kind !== 'text') return;
  e.preventDefault();
  node.querySelector('.actions button')?.focus();
}

/** A timer in words: docs/disappearing.md's choices. */
const TIMER_WORDS = {
  0: 'off', 30: '30 seconds', 300: '5 minutes', 3600: '1 hour', 28800: '8 hours',
  86400: '1 day', 604800: '1 week', 2419200: '4 weeks',
};
function timerWords(seconds) {
  return TIMER_WORDS[seconds] || `${seconds} seconds`;
}

function timerNotice(seconds, mine) {
  const who = mine ? 'You' : 'They';
  return seconds
    ? `${who} set disappearing messages to ${timerWords(seconds)}.`
    : `${who} turned disappearing messages off.`;
}

/** Texts of the messages shown so far, by id: a reply shows the start of what it quotes. */
const shownBodies = new Map();

function messageNode(m) {
  const notices = {
    unsupported: 'Unsupported message: it was sent from a newer version of Tessera.',
    undecryptable: 'A message could not be decrypted.',
    account_deleted: 'This contact deleted their account. Nothing more can be sent to them.',
    deleted: 'Message deleted.',
  };
  const body = m.kind === 'timer'
    ? el('p', { class: 'body timer' }, timerNotice(Number(m.body), m.outgoing))
    : m.kind === 'attachment'
      ? el('div', { class: 'body attachment' },
        el('p', { class: 'file', role: 'group', 'aria-label': 'File' }, `📎 ${m.attachment ? `${m.attachment.name}, ${fileSize(m.attachment.size)}` : 'a file'}`,
          m.attachment && m.attachment.state === 'failed' ? el('span', { class: 'failed' }, ' (damaged: not kept)') : null),
        m.body ? el('p', { class: 'caption' }, m.body) : null)
    : notices[m.kind]
      ? el('p', { class: `body ${m.kind}` }, notices[m.kind])
      : el('p', { class: 'body' }, m.body);
  if (m.kind === 'text') shownBodies.set(m.id, m.body);
  else shownBodies.delete(m.id);
  // A reply names what it quotes; the link jumps to it when it is loaded (docs/message-actions.md).
  const quotedText = m.replyTo && shownBodies.get(m.replyTo);
  const quoted = m.replyTo
    ? el('button', {
      type: 'button', class: 'reply-ref', 'aria-label': 'Show the message this replies to',
      onclick: () => {
        const target = document.querySelector(`.msg[data-id="${m.replyTo}"]`);
        if (target) { target.scrollIntoView({ block: 'center' }); target.focus?.(); }
      },
    }, quotedText ? `↩ ${quotedText.length > 60 ? `${quotedText.slice(0, 60)}…` : quotedText}` : '↩ Reply')
    : null;
  const reactions = (m.reactions || []).length
    ? el('div', { class: 'reactions', 'aria-label': 'Reactions' },
      m.reactions.map((r) => el('span', { class: r.mine ? 'reaction mine' : 'reaction', title: r.mine ? 'Your reaction' : 'Their reaction' }, r.emoji)))
    : null;
  return el('div', { class: `msg ${m.outgoing ? 'out' : 'in'}`, tabindex: '0', dataset: { id: m.id, row: m.row, sent: m.sent, day: new Date(m.sent).toDateString(), kind: m.kind, outgoing: m.outgoing ? 'yes' : 'no', body: m.kind === 'text' ? m.body : '' } },
    quoted,
    body,
    m.preview && m.kind === 'text' ? previewCard(m.preview) : null,
    reactions,
    m.kind === 'text' ? actionBar(m) : null,
    el('span', { class: 'meta' }, el('time', { datetime: new Date(m.sent).toISOString() }, time(m.sent)),
      m.timeFlag ? el('span', { class: 'clock-flag', role: 'img', 'aria-label': CLOCK_FLAG, title: CLOCK_FLAG }, '⏱') : null,
      m.edited && m.kind === 'text' ? el('span', { class: 'edited' }, 'edited') : null,
      m.expiresIn ? el('span', { class: 'disappears', role: 'img', 'aria-label': `Disappears after ${timerWords(m.expiresIn)}`, title: `Disappears after ${timerWords(m.expiresIn)}` }, '⏳') : null,
      m.outgoing ? mark(m.status, m.failure) : null));
}

/** Inserts day separators between messages of different days. */
function withDays(nodes, previousDay) {
  const out = [];
  let d = previousDay;
  for (const n of nodes) {
    if (n.dataset.day !== d) {
      d = n.dataset.day;
      out.push(el('div', { class: 'day', role: 'separator', dataset: { day: d } }, day(Date.parse(d))));
    }
    out.push(n);
  }
  return out;
}

async function refreshConversations() {
  const list = await backend.conversations();
  const ul = $('#conv-list');
  conversationsById = new Map(list.map((c) => [c.contact.id, c]));
  const showArchived = $('#show-archived').checked;
  ul.replaceChildren(...list.filter((c) => (c.contact.state === 'accepted' || c.last) && (showArchived || !c.archived)).map((c) => {
    const name = c.noteToSelf ? NOTE_TO_SELF : c.contact.name;
    return el('li', {},
      el('button', { type: 'button', class: `conv${c.contact.id === open ? ' active' : ''}${c.noteToSelf ? ' notes' : ''}`, dataset: { contact: c.contact.id, name, pinned: c.pinned ? 'yes' : 'no', archived: c.archived ? 'yes' : 'no' },
        onclick: () => openConversation(c.contact.id, name) },
        el('span', { class: 'name' }, name),
        c.pinned ? el('span', { class: 'flag pinned', role: 'img', 'aria-label': 'Pinned', title: 'Pinned' }, '\u{1F4CC}') : null,
        c.mutedUntil > Date.now() ? el('span', { class: 'flag muted', role: 'img', 'aria-label': 'Muted', title: 'Muted' }, '\u{1F515}') : null,
        c.archived ? el('span', { class: 'flag archived' }, 'archived') : null,
        c.draft && c.contact.id !== open ? el('span', { class: 'flag draft' }, 'draft') : null,
        c.last ? el('span', { class: 'when' }, shortTime(c.last.sent)) : null,
        el('span', { class: 'last' }, c.last ? lastLine(c.last) : 'No messages yet'),
        c.unread ? el('span', { class: 'badge unread', 'aria-label': `${c.unread} unread` }, String(c.unread))
          : c.markedUnread ? el('span', { class: 'badge unread marked', 'aria-label': 'Marked unread' }, '\u2022') : null));
  }));
  $('#conv-empty').hidden = ul.children.length > 0;
}

// Typing indicators (docs/conversations.md §Typing): "on" at most every 4 s while typing,
// "off" 5 s after the last key or when the message is sent; shown for at most 6 s.
let typingSentAt = 0;
let typingTo = null;
let typingStop;
let typingShown;

function typingInput() {
  if (!open || open === ownId || (composeMode && composeMode.kind === 'edit')) return;
  const now = Date.now();
  if (typingTo !== open || now - typingSentAt > 4000) {
    typingTo = open;
    typingSentAt = now;
    backend.sendTyping(open, true).catch(() => {});
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(stopTyping, 5000);
}

function stopTyping() {
  clearTimeout(typingStop);
  if (typingTo) backend.sendTyping(typingTo, false).catch(() => {});
  typingTo = null;
  typingSentAt = 0;
}

function showTyping(contact, on) {
  clearTimeout(typingShown);
  const show = on && contact === open;
  $('#typing').hidden = !show;
  if (show) typingShown = setTimeout(() => { $('#typing').hidden = true; }, 6000);
}

/** A file's size for people (the app's locale decides the digits). */
function fileSize(bytes) {
  const units = ['bytes', 'kB', 'MB', 'GB'];
  let n = bytes;
  let u = 0;
  while (n >= 1000 && u < units.length - 1) { n /= 1000; u += 1; }
  return `${u ? n.toLocaleString(undefined, { maximumFractionDigits: 1 }) : n} ${units[u]}`;
}

/** The conversation list's line for its newest message. */
function lastLine(m) {
  if (m.kind === 'deleted') return 'Message deleted.';
  if (m.kind === 'timer') return timerNotice(Number(m.body), m.outgoing);
  if (m.kind === 'attachment') return `${m.outgoing ? 'You: ' : ''}📎 ${m.body || 'File'}`;
  const notices = { unsupported: 'Unsupported message', undecryptable: 'A message could not be decrypted', account_deleted: 'Account deleted' };
  if (m.kind !== 'text') return notices[m.kind] || '';
  return `${m.outgoing ? 'You: ' : ''}${m.body}`;
}

/** The conversations as last read (their settings, for the conversation menu). */
let conversationsById = new Map();

/** Our own account id: it names the note to self (docs/conversations.md). */
let ownId = null;
const NOTE_TO_SELF = 'Note to self';

/** Keeps what is written in the composer as the conversation's draft (docs/conversations.md). */
function saveDraft() {
  if (!open || (composeMode && composeMode.kind === 'edit')) return;
  const text = $('#compose').value;
  const before = conversationsById.get(open);
  if ((before && before.draft || '') === text) return;
  backend.updateConversation(open, { draft: text }).catch(() => {});
  if (before) before.draft = text || null;
}

function showConversationMenu(c) {
  $('#conv-pin').textContent = c && c.pinned ? 'Unpin' : 'Pin';
  $('#conv-archive').textContent = c && c.archived ? 'Unarchive' : 'Archive';
  $('#conv-mute').value = '';
  $('#conv-mute').options[0].textContent = c && c.mutedUntil > Date.now() ? 'Unmute' : 'Notifications on';
  $('#conv-block').textContent = c && c.contact.blocked ? 'Unblock' : 'Block';
}

async function changeConversation(change) {
  if (!open) return;
  try {
    await backend.updateConversation(open, change);
    await refreshConversations();
    showConversationMenu(conversationsById.get(open));
  } catch (err) { showError('chat-error', err); }
}

async function openConversation(contact, name) {
  saveDraft();
  if (typingTo) stopTyping();
  $('#typing').hidden = true;
  open = contact;
  openName = name;
  showView('view-chats');
  $('#chat-title').textContent = name;
  composeMode = null;
  previewSeq += 1;
  previewDismissed = null;
  showComposePreview(null);
  $('#compose-state').hidden = true;
  $('#composer').hidden = false;
  $('#call-buttons').hidden = false;
  // The note to self has nobody to call or block.
  const note = contact === ownId;
  $('#call-audio').hidden = note;
  $('#call-video').hidden = note;
  $('#conv-block').hidden = note;
  showError('chat-error', null);
  const msgs = await backend.history(contact, null, PAGE);
  oldestRow = msgs.length ? msgs[0].row : null;
  const log = $('#chat-log');
  log.replaceChildren(...withDays(msgs.map(messageNode)));
  log.dataset.complete = msgs.length < PAGE ? 'yes' : 'no';
  log.scrollTop = log.scrollHeight;
  await backend.markRead(contact).catch(() => {});
  $('#timer').value = String(await backend.timer(contact).catch(() => 0));
  await refreshConversations();
  const c = conversationsById.get(contact);
  $('#compose').value = (c && c.draft) || '';
  showConversationMenu(c);
  $('#compose').focus();
}

/** Infinite scroll: near the top, load the page before the oldest shown. */
async function loadOlder() {
  const log = $('#chat-log');
  if (!open || loadingOlder || log.dataset.complete === 'yes' || log.scrollTop > 40) return;
  loadingOlder = true;
  try {
    const msgs = await backend.history(open, oldestRow, PAGE);
    if (msgs.length < PAGE) log.dataset.complete = 'yes';
    if (!msgs.length) return;
    oldestRow = msgs[0].row;
    const before = log.scrollHeight;
    const nodes = withDays(msgs.map(messageNode));
    const first = log.querySelector('.day');
    if (first && nodes.length && first.dataset.day === new Date(msgs[msgs.length - 1].sent).toDateString()) first.remove();
    log.prepend(...nodes);
    log.scrollTop = log.scrollHeight - before;
  } finally {
    loadingOlder = false;
  }
}

async function appendNew() {
  if (!open) return;
  const log = $('#chat-log');
  const shown = new Set([...log.querySelectorAll('.msg')].map((n) => n.dataset.id));
  const msgs = (await backend.history(open, null, PAGE)).filter((m) => !shown.has(m.id));
  if (!msgs.length) return;
  const lastDay = [...log.querySelectorAll('.msg')].pop();
  log.append(...withDays(msgs.map(messageNode), lastDay && lastDay.dataset.day));
  log.scrollTop = log.scrollHeight;
  await backend.markRead(open).catch(() => {});
}

// A message of the open conversation, shown from the view its event carried (no history read).
// The conversation is ordered by sender time: one that belongs before the newest shown (a late
// arrival) reloads the page of history instead.
function showArrived(m) {
  const log = $('#chat-log');
  if (log.querySelector(`.msg[data-id="${m.id}"]`)) return;
  const last = [...log.querySelectorAll('.msg')].pop();
  if (last && Number(last.dataset.sent) > m.sent) {
    appendNew();
    return;
  }
  log.append(...withDays([messageNode(m)], last && last.dataset.day));
  log.scrollTop = log.scrollHeight;
  backend.markRead(open).catch(() => {});
}

// Link previews (docs/link-previews.md): made in the composer, through Tor, when the setting
// is on and the text has an https link; the person can send without it.
let linkPreviewsOn = false;
let composePreview = null;
let previewDismissed = null;
let previewSeq = 0;
let previewTimer;

/** The card a link preview shows (in a message and in the composer). */
function previewCard(p) {
  return el('div', { class: 'link-preview', role: 'group', 'aria-label': 'Link preview' },
    p.site ? el('span', { class: 'site' }, p.site) : null,
    el('span', { class: 'title' }, p.title),
    p.description ? el('span', { class: 'description' }, p.description) : null,
    el('span', { class: 'url' }, p.url));
}

function showComposePreview(p, note) {
  composePreview = p;
  const card = $('#compose-preview-card');
  card.replaceChildren(p ? previewCard(p) : note ? el('span', { class: 'note' }, note) : '');
  $('#compose-preview').hidden = !p && !note;
  $('#compose-preview-remove').hidden = !p;
}

async function updatePreview() {
  const text = $('#compose').value;
  if (!linkPreviewsOn || !open || (composeMode && composeMode.kind === 'edit') || !text.includes('https://')) {
    previewSeq += 1;
    showComposePreview(null);
    return;
  }
  if (composePreview && text.includes(composePreview.url)) return;
  const seq = ++previewSeq;
  showComposePreview(null, 'Fetching a link preview through Tor…');
  try {
    const p = await backend.linkPreview(text);
    if (seq !== previewSeq) return;
    showComposePreview(p && p.url !== previewDismissed ? p : null);
  } catch (err) {
    if (seq === previewSeq) showComposePreview(null, errorText(err));
  }
}

async function send(ev) {
  ev.preventDefault();
  const box = $('#compose');
  const body = box.value;
  if (!open || !body.trim()) return;
  showError('chat-error', null);
  $('#send').disabled = true;
  try {
    if (composeMode && composeMode.kind === 'edit') {
      await backend.editMessage(composeMode.id, body);
    } else {
      const preview = composePreview && body.includes(composePreview.url) ? composePreview : null;
      await backend.sendMessage(open, body, composeMode && composeMode.kind === 'reply' ? composeMode.id : null, preview);
    }
    setComposeMode(null);
    previewSeq += 1;
    previewDismissed = null;
    showComposePreview(null);
    if (typingTo) { clearTimeout(typingStop); typingTo = null; typingSentAt = 0; }
    box.value = '';
    await appendNew();
    await refreshConversations();
  } catch (err) {
    showError('chat-error', err);
  } finally {
    $('#send').disabled = false;
    box.focus();
  }
}

async function runSearch() {
  const q = $('#search').value.trim();
  const ul = $('#search-results');
  if (!q) {
    ul.hidden = true;
    ul.replaceChildren();
    return;
  }
  const hits = await backend.search(q);
  const names = Object.fromEntries((await backend.contacts()).map((c) => [c.id, c.name]));
  if (ownId) names[ownId] = NOTE_TO_SELF;
  ul.replaceChildren(...hits.map((m) => el('li', {},
    el('button', { type: 'button', class: 'hit', dataset: { id: m.id, contact: m.contact }, onclick: () => openConversation(m.contact, names[m.contact] || '') },
      el('span', { class: 'name' }, names[m.contact] || ''), el('span', { class: 'when' }, shortTime(m.sent)), el('span', { class: 'last' }, m.body)))));
  if (!hits.length) ul.append(el('li', { class: 'help' }, 'Nothing found.'));
  ul.hidden = false;
}

async function refreshContacts() {
  const list = await backend.contacts();
  // The request box: a name and a short preview only, until accepted; a name that imitates a
  // contact's is flagged.
  const incoming = await backend.requests();
  $('#requests').replaceChildren(...incoming.map(({ contact: c, messages, preview, imitates }) => el('li', { dataset: { contact: c.id } },
    el('span', { class: 'name' }, c.name), ' wants to talk with you. ',
    imitates ? el('p', { class: 'lookalike', role: 'alert' }, `Careful: this name looks like your contact ${imitates}, but it is someone else.`) : null,
    preview ? el('p', { class: 'request-preview' }, `${messages > 1 ? `${messages} messages, the first: ` : ''}“${preview}”`) : null,
    el('button', { type: 'button', class: 'accept primary', onclick: () => answer(c.id, true) }, `Accept ${c.name}`),
    el('button', { type: 'button', class: 'reject', onclick: () => answer(c.id, false) }, `Reject ${c.name}`))));
  $('#requests-empty').hidden = incoming.length > 0;
  const badge = $('#requests-badge');
  badge.textContent = String(incoming.length);
  badge.hidden = incoming.length === 0;
  const STATE = { requested: 'request sent', incoming: 'wants to talk', accepted: 'contact', rejected: 'rejected', deleted: 'account deleted' };
  $('#contact-list').replaceChildren(...list.map((c) => el('li', { dataset: { contact: c.id, state: c.state } },
    el('span', { class: 'name' }, c.name), el('span', { class: 'state' }, STATE[c.state]),
    c.state === 'accepted' ? el('button', { type: 'button', class: 'open', onclick: () => openConversation(c.id, c.name) }, `Message ${c.name}`) : null,
    el('button', { type: 'button', class: 'safety-open', onclick: () => showSafety(c.id, c.name) }, `Safety number for ${c.name}`),
    el('button', { type: 'button', class: 'block', onclick: () => blockContact(c.id, !c.blocked) }, c.blocked ? `Unblock ${c.name}` : `Block ${c.name}`),
    el('button', { type: 'button', class: 'remove danger', onclick: () => removeContact(c.id, c.name) }, `Remove ${c.name}`),
    c.blocked ? el('span', { class: 'state blocked' }, 'blocked') : null)));
}

async function blockContact(id, blocked) {
  await backend.setBlocked(id, blocked).catch((err) => showError('chat-error', err));
  await refreshContacts();
  await refreshConversations();
}

async function removeContact(id, name) {
  const li = document.querySelector(`#contact-list li[data-contact="${id}"]`);
  // A second press confirms: removing deletes the conversation here.
  if (li && !li.dataset.confirm) {
    li.dataset.confirm = 'yes';
    li.querySelector('.remove').textContent = `Press again to remove ${name} and your messages`;
    return;
  }
  await backend.removeContact(id).catch((err) => showError('chat-error', err));
  if (open === id) { open = null; $('#chat-log').replaceChildren(); $('#composer').hidden = true; }
  await refreshContacts();
  await refreshConversations();
}

async function answer(id, accept) {
  await backend.answerRequest(id, accept);
  await refreshContacts();
  await refreshConversations();
}

async function showSafety(id, name) {
  safetyFor = id;
  const s = await backend.safetyNumber(id);
  $('#safety-title').textContent = `Safety number with ${name}`;
  $('#safety-digits').textContent = s.digits.match(/.{1,5}/g).join(' ');
  $('#safety-qr').src = s.qr;
  $('#safety-state').textContent = s.changed ? `${name}'s identity changed. Compare again before trusting it.` : s.verified ? 'Verified.' : 'Not verified yet.';
  $('#mark-verified').hidden = s.verified && !s.changed;
  $('#safety').hidden = false;
  $('#safety-digits').focus();
}

async function addContact(ev) {
  ev.preventDefault();
  showError('add-error', null);
  $('#add-done').hidden = true;
  try {
    const c = await backend.addContact($('#add-code').value, $('#add-name').value || null);
    $('#add-code').value = '';
    $('#add-name').value = '';
    $('#add-done').textContent = c.state === 'accepted' ? `${c.name} is now a contact.` : `Request sent to ${c.name}.`;
    $('#add-done').hidden = false;
    await refreshContacts();
    await refreshConversations();
  } catch (err) {
    showError('add-error', err);
  }
}

async function refreshMe() {
  const m = await backend.me();
  ownId = m.accountId;
  $('#me-name').textContent = m.name;
  $('#my-invite').value = m.invite;
  $('#invite-qr').src = m.inviteQr;
  $('#set-relay').textContent = m.relayHost;
  $('#set-pin').textContent = m.pin;
  $('#set-transport').textContent = m.transport === 'tor' ? 'Tor' : 'Direct (the relay sees your IP address)';
  $('#about-account').textContent = `Account ${m.accountId}`;
  if (m.connected) netEvent({ type: 'connected' });
  const i = await backend.appInfo();
  $('#about-version').textContent = `${i.name} ${i.version}${i.commit ? ` (build ${i.commit})` : ''}, ${i.target}, ${i.profile}`;
}

async function refreshSettings() {
  const s = await backend.settings();
  $('#set-lock-removal').checked = s.lockOnCardRemoval;
  $('#set-idle').value = s.idleLockMinutes;
  $('#set-focus').checked = s.lockOnFocusLoss;
  $('#set-notify').checked = s.notificationContent;
  $('#set-read-receipts').checked = s.readReceipts;
  $('#set-typing').checked = s.typingIndicators;
  $('#set-link-previews').checked = s.linkPreviews;
  linkPreviewsOn = s.linkPreviews;
  $('#set-update-checks').checked = s.updateChecks;
  $('#update-check').disabled = !s.updateChecks;
  $('#set-theme').value = s.theme;
  $('#set-transport-next').value = s.transport;
  $('#set-zoom').value = s.zoom;
  $('#set-call-policy').value = s.callIcePolicy;
  $('#set-calls-tor').checked = s.callsOutsideTor;
  $('#set-panic-shortcut').value = s.panicShortcut || '';
  $('#duress-state').textContent = s.duressPassword ? 'A duress password is set.' : 'No duress password is set.';
  $('#duress-clear').hidden = !s.duressPassword;
  if (s.backupFolder) $('#backup-folder').value = s.backupFolder;
  $('#backup-scheduled').checked = Boolean(s.backupFolder);
  if (s.zoom !== '1') await backend.setSetting('zoom', s.zoom).catch(() => {});
  window.dispatchEvent(new CustomEvent('tessera-theme', { detail: s.theme }));
}

async function setSetting(name, value) {
  showError('settings-error', null);
  try {
    await backend.setSetting(name, value);
    if (name === 'theme') window.dispatchEvent(new CustomEvent('tessera-theme', { detail: value }));
  } catch (err) {
    showError('settings-error', err);
    await refreshSettings();
  }
}

// Updates (docs/updates.md): check through Tor, show what is new, install on request.
async function checkUpdate() {
  showError('update-error', null);
  $('#update-offer').hidden = true;
  $('#update-progress').hidden = true;
  $('#update-check').disabled = true;
  $('#update-status').textContent = 'Checking through Tor…';
  try {
    const offer = await backend.checkUpdate();
    if (!offer) {
      $('#update-status').textContent = 'This is the newest version.';
      return;
    }
    $('#update-status').textContent = `Tessera ${offer.version} is available (this is ${offer.current}).`;
    $('#update-title').textContent = `Tessera ${offer.version}`;
    $('#update-date').textContent = offer.date ? `Published ${day(Date.parse(offer.date))}` : '';
    $('#update-notes').textContent = offer.notes || '';
    $('#update-install').disabled = false;
    $('#update-offer').hidden = false;
  } catch (err) {
    $('#update-status').textContent = '';
    showError('update-error', err);
  } finally {
    $('#update-check').disabled = !$('#set-update-checks').checked;
  }
}

async function installUpdate() {
  showError('update-error', null);
  $('#update-install').disabled = true;
  $('#update-check').disabled = true;
  const bar = $('#update-progress');
  bar.hidden = false;
  bar.removeAttribute('value');
  $('#update-status').textContent = 'Downloading through Tor…';
  try {
    const version = await backend.installUpdate(({ received, total }) => {
      if (total) { bar.max = total; bar.value = received; }
      const mib = (n) => (n / 1048576).toFixed(1);
      $('#update-status').textContent = total
        ? `Downloading through Tor… ${mib(received)} of ${mib(total)} MiB`
        : `Downloading through Tor… ${mib(received)} MiB`;
    });
    $('#update-offer').hidden = true;
    $('#update-status').textContent = `Installed: restart Tessera to use ${version}.`;
  } catch (err) {
    $('#update-status').textContent = '';
    $('#update-offer').hidden = true;
    showError('update-error', err);
  } finally {
    bar.hidden = true;
    $('#update-check').disabled = !$('#set-update-checks').checked;
  }
}

async function refreshCardState() {
  try {
    const readers = await backend.cardStatus();
    const mine = readers.find((r) => r.card && r.enrolled_here);
    $('#card-state').textContent = mine ? `This vault's card: ${mine.uid} on ${mine.reader}.`
      : readers.some((r) => r.card) ? 'The card on the reader is not this vault\u2019s card.' : 'No card on the reader.';
  } catch (err) {
    $('#card-state').textContent = '';
  }
}

function swapUi(stage) {
  $('#swap-next').hidden = stage !== 'started';
  $('#swap-finish').hidden = stage !== 'started';
  $('#swap-cancel').hidden = stage !== 'started';
  $('#swap-start').hidden = stage === 'started';
}

async function swapStart() {
  showError('swap-error', null);
  $('#swap-log').replaceChildren();
  try {
    await backend.cardSwapStart($('#swap-pw').value);
    swapUi('started');
  } catch (err) {
    showError('swap-error', err);
  } finally {
    $('#swap-pw').value = '';
  }
}

async function swapFinish() {
  showError('swap-error', null);
  const log = $('#swap-log');
  log.replaceChildren();
  try {
    const uid = await backend.cardSwapFinish((p) => log.append(el('li', { dataset: { step: p.step } }, `${p.step}/${p.of} ${p.what}`)));
    log.append(el('li', { class: 'done', id: 'swap-done' }, `The vault now opens with card ${uid}.`));
    swapUi('done');
    refreshCardState();
  } catch (err) {
    showError('swap-error', err);
  }
}

/** Shows a recovery key once, until the person says they wrote it down. */
function showRecoveryKey(key) {
  if (!key) return;
  $('#backup-key').textContent = key;
  $('#backup-key-panel').hidden = false;
  $('#backup-key').focus();
}

async function backupNow() {
  showError('backup-error', null);
  $('#backup-done').hidden = true;
  try {
    const made = await backend.backupNow($('#backup-folder').value);
    $('#backup-done').textContent = `Backup written: ${made.path} (${made.bytes} bytes).`;
    $('#backup-done').hidden = false;
    showRecoveryKey(made.recoveryKey);
  } catch (err) {
    showError('backup-error', err);
  }
}

async function backupScheduled() {
  showError('backup-error', null);
  try {
    const on = $('#backup-scheduled').checked;
    showRecoveryKey(await backend.backupSchedule(on ? $('#backup-folder').value : '', 7));
  } catch (err) {
    showError('backup-error', err);
    await refreshSettings();
  }
}

/** Leaving: password and card confirm; the engine then reports the wipe as a lock and the
 * router shows first run. */
async function leave() {
  showError('leave-error', null);
  if (!$('#leave-sure').checked) {
    showError('leave-error', { message: 'Tick the box to confirm that this cannot be undone.' });
    return;
  }
  const button = $('#leave-go');
  button.disabled = true;
  $('#leave-status').textContent = 'Telling your contacts and deleting the account at the relay…';
  try {
    await backend.deleteAccount($('#leave-pw').value);
    $('#leave-pw').value = '';
  } catch (err) {
    $('#leave-status').textContent = '';
    showError('leave-error', err);
  } finally {
    button.disabled = false;
  }
}

async function duress(ev, set) {
  if (ev) ev.preventDefault();
  showError('duress-error', null);
  try {
    if (set) await backend.duressSet($('#duress-pw').value, $('#duress-new').value);
    else await backend.duressClear($('#duress-pw').value);
  } catch (err) {
    showError('duress-error', err);
  } finally {
    $('#duress-pw').value = '';
    $('#duress-new').value = '';
    await refreshSettings();
  }
}

async function changePassword(ev) {
  ev.preventDefault();
  showError('pw-error', null);
  $('#pw-done').hidden = true;
  try {
    await backend.changePassword($('#pw-old').value, $('#pw-new').value);
    $('#pw-done').hidden = false;
  } catch (err) {
    showError('pw-error', err);
  } finally {
    $('#pw-old').value = '';
    $('#pw-new').value = '';
  }
}

function showView(id) {
  showOnly(VIEWS, id);
  for (const [view, nav] of Object.entries(NAV)) {
    if (view === id) $(`#${nav}`).setAttribute('aria-current', 'page');
    else $(`#${nav}`).removeAttribute('aria-current');
  }
  if (id === 'view-contacts') refreshContacts();
  if (id === 'view-settings') { refreshSettings(); refreshCardState(); }
}

function wire() {
  if (wired) return;
  wired = true;
  $('#nav-chats').addEventListener('click', () => { showView('view-chats'); refreshConversations(); });
  $('#nav-contacts').addEventListener('click', () => showView('view-contacts'));
  $('#nav-settings').addEventListener('click', () => showView('view-settings'));
  $('#lock-now').addEventListener('click', () => backend.lock());
  $('#card-banner-close').addEventListener('click', () => { $('#card-banner').hidden = true; });
  $('#leave-go').addEventListener('click', leave);
  $('#composer').addEventListener('submit', send);
  $('#compose').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('#composer').requestSubmit(); }
    else if (e.key === 'Escape' && composeMode) { e.preventDefault(); setComposeMode(null); }
    else if (e.key === 'ArrowUp' && !e.target.value) {
      // Edit your last message (within 24 hours).
      const mine = [...document.querySelectorAll('#chat-log .msg.out[data-kind="text"]')].pop();
      if (mine && editable(viewOf(mine))) { e.preventDefault(); startEdit(viewOf(mine)); }
    }
  });
  $('#compose-cancel').addEventListener('click', () => setComposeMode(null));
  let draftTimer;
  $('#compose').addEventListener('input', () => {
    clearTimeout(draftTimer);
    draftTimer = setTimeout(saveDraft, 800);
    clearTimeout(previewTimer);
    previewTimer = setTimeout(updatePreview, 1000);
    typingInput();
  });
  $('#show-archived').addEventListener('change', () => refreshConversations());
  $('#open-notes').addEventListener('click', async () => {
    try {
      await openConversation(await backend.openNoteToSelf(), NOTE_TO_SELF);
    } catch (err) { showError('chat-error', err); }
  });
  $('#conv-pin').addEventListener('click', () => { const c = conversationsById.get(open); changeConversation({ pinned: !(c && c.pinned) }); });
  $('#conv-archive').addEventListener('click', () => { const c = conversationsById.get(open); changeConversation({ archived: !(c && c.archived) }); });
  $('#conv-unread').addEventListener('click', () => changeConversation({ markedUnread: true }));
  $('#conv-mute').addEventListener('change', (e) => {
    const v = e.target.value;
    changeConversation(v === '' ? { mutedUntil: 0 } : { muteFor: Number(v) });
  });
  $('#conv-block').addEventListener('click', async () => {
    if (!open) return;
    const c = conversationsById.get(open);
    try {
      await backend.setBlocked(open, !(c && c.contact.blocked));
      await refreshContacts();
      await refreshConversations();
      showConversationMenu(conversationsById.get(open));
    } catch (err) { showError('chat-error', err); }
  });
  $('#conv-delete').addEventListener('click', async () => {
    if (!open) return;
    try {
      await backend.deleteConversation(open);
      $('#chat-log').replaceChildren();
      await refreshConversations();
    } catch (err) { showError('chat-error', err); }
  });
  $('#chat-log').addEventListener('keydown', onLogKey);
  $('#chat-log').addEventListener('contextmenu', onLogContextMenu);
  $('#chat-log').addEventListener('scroll', () => loadOlder());
  let t;
  $('#search').addEventListener('input', () => { clearTimeout(t); t = setTimeout(runSearch, 200); });
  $('#add-form').addEventListener('submit', addContact);
  $('#copy-invite').addEventListener('click', () => { $('#my-invite').select(); document.execCommand('copy'); });
  $('#mark-verified').addEventListener('click', async () => { if (safetyFor) { await backend.verifyContact(safetyFor); $('#safety-state').textContent = 'Verified.'; $('#mark-verified').hidden = true; } });
  $('#safety-close').addEventListener('click', () => { $('#safety').hidden = true; });
  $('#set-lock-removal').addEventListener('change', (e) => setSetting('lock_on_card_removal', e.target.checked ? 'on' : 'off'));
  $('#set-focus').addEventListener('change', (e) => setSetting('lock_on_focus_loss', e.target.checked ? 'on' : 'off'));
  $('#set-notify').addEventListener('change', (e) => setSetting('notification_content', e.target.checked ? 'on' : 'off'));
  $('#set-read-receipts').addEventListener('change', (e) => setSetting('read_receipts', e.target.checked ? 'on' : 'off'));
  $('#set-typing').addEventListener('change', (e) => setSetting('typing_indicators', e.target.checked ? 'on' : 'off'));
  $('#set-link-previews').addEventListener('change', (e) => {
    linkPreviewsOn = e.target.checked;
    setSetting('link_previews', e.target.checked ? 'on' : 'off');
  });
  $('#compose-preview-remove').addEventListener('click', () => {
    previewDismissed = composePreview && composePreview.url;
    showComposePreview(null);
    $('#compose').focus();
  });
  $('#set-update-checks').addEventListener('change', (e) => {
    $('#update-check').disabled = !e.target.checked;
    setSetting('update_checks', e.target.checked ? 'on' : 'off');
  });
  $('#update-check').addEventListener('click', checkUpdate);
  $('#update-install').addEventListener('click', installUpdate);
  $('#set-idle').addEventListener('change', (e) => setSetting('idle_lock_minutes', String(e.target.value || 0)));
  $('#set-theme').addEventListener('change', (e) => setSetting('theme', e.target.value));
  $('#set-transport-next').addEventListener('change', (e) => setSetting('transport', e.target.value));
  $('#set-zoom').addEventListener('change', (e) => setSetting('zoom', e.target.value));
  $('#set-call-policy').addEventListener('change', (e) => setSetting('call_ice_policy', e.target.value));
  $('#set-calls-tor').addEventListener('change', (e) => setSetting('calls_outside_tor', e.target.checked ? 'on' : 'off'));
  $('#set-panic-shortcut').addEventListener('change', (e) => setSetting('panic_shortcut', e.target.value.trim()));
  $('#call-audio').addEventListener('click', () => { if (open) dial(open, false); });
  $('#timer').addEventListener('change', async (ev) => {
    if (!open) return;
    const contact = open;
    try {
      await backend.setTimer(contact, Number(ev.target.value));
    } catch (err) {
      showError('chat-error', err);
      ev.target.value = String(await backend.timer(contact).catch(() => 0));
    }
  });
  $('#call-video').addEventListener('click', () => { if (open) dial(open, true); });
  wireCalls();
  $('#pw-form').addEventListener('submit', changePassword);
  $('#backup-now').addEventListener('click', backupNow);
  $('#backup-scheduled').addEventListener('change', backupScheduled);
  $('#backup-key-done').addEventListener('click', () => {
    $('#backup-key').textContent = '';
    $('#backup-key-panel').hidden = true;
  });
  $('#duress-form').addEventListener('submit', (ev) => duress(ev, true));
  $('#duress-clear').addEventListener('click', () => duress(null, false));
  $('#swap-start').addEventListener('click', swapStart);
  $('#swap-finish').addEventListener('click', swapFinish);
  $('#swap-cancel').addEventListener('click', async () => { await backend.cardSwapCancel(); swapUi('idle'); });
}

/** What the unlock's card check found, shown above the app until dismissed. */
function showCardCheck(check) {
  const b = $('#card-banner');
  const lines = [];
  if (check && check.readsElsewhere > 0) {
    lines.push(`Your card was read ${check.readsElsewhere} time${check.readsElsewhere === 1 ? '' : 's'} since Tessera last opened, not by Tessera on this computer. If that was not you (a phone, another reader), someone may have tried to copy it. Its secret has been replaced, so a copy made before no longer opens Tessera.`);
  }
  if (check && check.rotationError) {
    lines.push('Your card\u2019s secret could not be replaced this time (was the card taken away?). It still opens Tessera; the next unlock tries again.');
  }
  $('#card-banner-text').textContent = lines.join(' ');
  b.hidden = lines.length === 0;
}

export async function openApp(cardCheck) {
  wire();
  showCardCheck(cardCheck);
  showView('view-chats');
  await refreshMe();
  await refreshSettings();
  await refreshConversations();
  await refreshContacts();
  if (open) await openConversation(open, openName);
}

/** Clears everything the unlocked page shows (called on lock, before the lock screen). */
export function closeApp() {
  for (const id of ['#conv-list', '#search-results', '#chat-log', '#requests', '#contact-list']) $(id).replaceChildren();
  // Nothing of the vault stays in the page's memory either.
  shownBodies.clear();
  conversationsById = new Map();
  ownId = null;
  composeMode = null;
  linkPreviewsOn = false;
  previewSeq += 1;
  showComposePreview(null);
  $('#compose-state').hidden = true;
  $('#compose-state-text').textContent = '';
  $('#typing').hidden = true;
  for (const id of ['#my-invite', '#add-code', '#add-name', '#compose', '#search', '#pw-old', '#pw-new', '#swap-pw', '#leave-pw']) $(id).value = '';
  $('#leave-sure').checked = false;
  $('#leave-status').textContent = '';
  $('#swap-log').replaceChildren();
  swapUi('idle');
  for (const id of ['#me-name', '#set-relay', '#set-pin', '#set-transport', '#about-account', '#safety-digits', '#identity-banner']) $(id).textContent = '';
  for (const id of ['#invite-qr', '#safety-qr']) $(id).removeAttribute('src');
  $('#safety').hidden = true;
  $('#identity-banner').hidden = true;
  $('#card-banner-text').textContent = '';
  $('#card-banner').hidden = true;
  $('#composer').hidden = true;
  $('#call-buttons').hidden = true;
  $('#chat-title').textContent = 'Choose a conversation';
  closeCall();
}

export function onEngineEvent(e) {
  // Connection state is not vault content: keep it current even while another screen shows.
  if (e.type === 'connected' || e.type === 'disconnected' || e.type === 'tor') {
    netEvent(e);
    return;
  }
  if ($('#main').hidden) return;
  switch (e.type) {
    case 'message':
      refreshConversations();
      // A request's message comes without its text (the request box shows a preview).
      if (e.contact === open) {
        if (e.message) showArrived(e.message);
        else appendNew();
        if (e.message && e.message.kind === 'timer') $('#timer').value = e.message.body;
        $('#typing').hidden = true;
      }
      if (!e.message) refreshContacts();
      break;
    case 'status': {
      const node = document.querySelector(`.msg[data-id="${e.id}"] .meta`);
      if (node) {
        const old = node.querySelector('.mark');
        const m = mark(e.status, e.message && e.message.failure);
        if (old && m) old.replaceWith(m);
        else if (m) node.append(m);
      }
      break;
    }
    case 'changed': {
      // The event's view has no reactions: read the whole message again.
      if (document.querySelector(`.msg[data-id="${e.message.id}"]`)) {
        backend.messageView(e.message.id).then((m) => {
          const now = document.querySelector(`.msg[data-id="${e.message.id}"]`);
          if (!now) return;
          if (m) now.replaceWith(messageNode(m)); else now.remove();
        }).catch(() => {});
      }
      refreshConversations();
      break;
    }
    case 'typing':
      showTyping(e.contact, e.on);
      break;
    case 'expired':
      for (const id of e.ids) {
        document.querySelector(`.msg[data-id="${id}"]`)?.remove();
        shownBodies.delete(id);
      }
      refreshConversations();
      break;
    case 'contacts':
      refreshContacts();
      refreshConversations();
      break;
    case 'resync':
      // Some events were missed: read everything shown again.
      refreshContacts();
      refreshConversations();
      if (open) openConversation(open, openName);
      break;
    case 'call':
      onCallEvent(e);
      break;
    case 'identityChanged': {
      const b = $('#identity-banner');
      b.textContent = 'A contact\u2019s identity changed. Their messages wait until you compare safety numbers (Contacts).';
      b.hidden = false;
      refreshContacts();
      break;
    }
    default:
      break;
  }
}

function netEvent(e) {
  const net = $('#net-status');
  if (e.type === 'connected') {
    net.textContent = 'Connected to the relay';
    net.dataset.state = 'connected';
  } else if (e.type === 'disconnected') {
    net.textContent = 'Offline: messages wait in the outbox';
    net.dataset.state = 'offline';
  } else {
    $('#tor-progress').value = e.percent;
    $('#tor-phase').textContent = `${e.percent}% ${e.phase}${e.blocked ? ` (${e.blocked})` : ''}`;
    if (!e.ready) {
      net.textContent = `Starting Tor: ${e.percent}%`;
      net.dataset.state = 'tor';
    }
  }
}
