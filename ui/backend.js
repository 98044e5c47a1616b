// The only module that talks to the Tauri backend. Every other module imports from here, so the
// set of commands the interface uses is visible in one place and can be mocked in one place.
// Failed commands reject with {code, message}; `code` is stable, `message` is for logs.

function core() {
  const api = window.__TAURI__ && window.__TAURI__.core;
  if (!api) {
    throw new Error('The Tessera backend is not available (page opened outside the app?)');
  }
  return api;
}

const call = (cmd, args) => core().invoke(cmd, args);

export const appInfo = () => call('app_info');
export const appState = () => call('app_state');
export const activity = () => call('activity');
/** Readers and cards; `probe` (once per card, not in a loop) also tells factory from foreign. */
export const cardStatus = (probe = false) => call('card_status', { probe });
export const passwordStrength = (password, name) => call('password_strength', { password, name });
export const createAccount = (form) => call('create_account', { form });
export const unlock = (password) => call('unlock', { password });
export const lock = () => call('lock');
export const panicWipe = () => call('panic_wipe');
export const deleteAccount = (password) => call('delete_account', { password });
export const restoreAccount = (form) => call('restore_account', { form });
export const me = () => call('me');
export const conversations = () => call('conversations');
/** Opens the note to self; resolves to the id that names it (our own account id). */
export const openNoteToSelf = () => call('open_note_to_self');
export const history = (contact, before, limit) => call('history', { contact, before, limit });
/** Sends a text; `replyTo` (a message id) and `preview` (from linkPreview) are optional. */
export const sendMessage = (contact, body, replyTo = null, preview = null) => call('send_message', { contact, body, replyTo, preview });
/** The preview of the text's first https link, fetched through Tor; null when previews are off or there is no link. */
export const linkPreview = (text) => call('link_preview', { text });
export const timer = (contact) => call('timer', { contact });
export const messageView = (id) => call('message_view', { id });
export const editMessage = (id, body) => call('edit_message', { id, body });
export const deleteMessage = (id, everyone) => call('delete_message', { id, everyone });
export const react = (id, emoji) => call('react', { id, emoji });
export const updateConversation = (contact, change) => call('update_conversation', { contact, change });
export const deleteConversation = (contact) => call('delete_conversation', { contact });
export const setBlocked = (contact, blocked) => call('set_blocked', { contact, blocked });
export const removeContact = (contact) => call('remove_contact', { contact });
export const sendTyping = (contact, on) => call('send_typing', { contact, on });
export const setTimer = (contact, seconds) => call('set_timer', { contact, seconds });
export const markRead = (contact) => call('mark_read', { contact });
export const search = (text) => call('search', { text });
export const contacts = () => call('contacts');
export const requests = () => call('requests');
export const addContact = (code, name) => call('add_contact', { code, name });
export const answerRequest = (contact, accept) => call('answer_request', { contact, accept });
export const safetyNumber = (contact) => call('safety_number', { contact });
export const verifyContact = (contact) => call('verify_contact', { contact });
export const settings = () => call('settings');
export const setSetting = (name, value) => call('set_setting', { name, value });
/** Checks for an update through Tor: null (newest already) or {current, version, date, notes}. */
export const checkUpdate = () => call('check_update');
/** Installs the update found by checkUpdate; `onProgress({received, total})`; resolves to its version. */
export function installUpdate(onProgress) {
  const channel = new (core().Channel)();
  channel.onmessage = onProgress;
  return call('install_update', { onProgress: channel });
}
export const cardSwapStart = (password) => call('card_swap_start', { password });
export const cardSwapCancel = () => call('card_swap_cancel');
export const changePassword = (old, next) => call('change_password', { old, new: next });
export const backupNow = (folder) => call('backup_now', { folder });
export const backupSchedule = (folder, everyDays) => call('backup_schedule', { folder, everyDays });
export const duressSet = (password, duress) => call('duress_set', { password, duress });
export const duressClear = (password) => call('duress_clear', { password });

/** Provisions the card on the reader; `onStep({step, of, what})` sees each step. */
export function provisionCard(reprovision, onStep) {
  const channel = new (core().Channel)();
  channel.onmessage = onStep;
  return call('provision_card', { reprovision, onProgress: channel });
}

/** Card replacement, step 2: `onStep({step, of, what})` sees each step; resolves to the UID. */
export function cardSwapFinish(onStep) {
  const channel = new (core().Channel)();
  channel.onmessage = onStep;
  return call('card_swap_finish', { onProgress: channel });
}

export const callStart = (contact, video) => call('call_start', { contact, video });
export const callAccept = () => call('call_accept');
export const callReject = () => call('call_reject');
export const callHangUp = () => call('call_hang_up');
export const callMute = (muted) => call('call_mute', { muted });
export const callCamera = (on) => call('call_camera', { on });
export const callStatus = () => call('call_status');

/** The peer's pictures during a call: `onPicture(ArrayBuffer)`, `u16 w, u16 h, RGBA…`. */
export function callVideo(onPicture) {
  const channel = new (core().Channel)();
  channel.onmessage = onPicture;
  return call('call_video', { channel });
}

/** Engine events ({type: 'message'|'status'|'locked'|'contacts'|'tor'|…}) go to `onEvent`. */
export function subscribe(onEvent) {
  const channel = new (core().Channel)();
  channel.onmessage = onEvent;
  return call('subscribe', { onEvent: channel });
}
