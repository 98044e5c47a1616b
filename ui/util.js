// Small DOM and formatting helpers shared by the screens.

export const $ = (sel, root = document) => root.querySelector(sel);

/** Creates an element: el('li', {class: 'x', dataset: {id: 1}}, 'text', child). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** Shows one element of a group, hides the rest. */
export function showOnly(ids, id) {
  for (const i of ids) document.getElementById(i).hidden = i !== id;
}

/** What the user reads for a backend error code. Messages never echo secrets. */
const MESSAGES = {
  wrong_password: 'Wrong password. The vault stays locked.',
  backup_folder: 'The backup folder must be a full path, such as /media/usb/tessera.',
  duress_empty: 'Type a duress password.',
  bad_shortcut: 'That is not a usable shortcut: use at least one of Ctrl, Alt, Shift, Super and a key, for example Ctrl+Alt+Shift+W.',
  shortcut_unavailable: 'Another program holds this shortcut. Choose another.',
  duress_same_as_password: 'The duress password must differ from your password.',
  duress_settings_too_long: 'The account\u2019s settings are too long to keep with the duress password.',
  wrong_card: 'This is not the card for this vault. Tap the card you set up Tessera with.',
  card_replayed: 'This card answered with an old counter: it may be a copy. The vault stays locked.',
  no_reader: 'No card reader found. Plug in the reader and try again.',
  no_card: 'No card on the reader. Tap your card.',
  card_removed: 'The card was taken away during the read. Hold it on the reader.',
  card_busy: 'Another program is using the card. Close it and try again.',
  card_service_unavailable: 'The smart card service (pcscd) is not running.',
  card_not_provisioned: 'This card is not set up for Tessera yet.',
  card_keys_missing: 'This card was set up on another computer; its keys are not in this keyring.',
  not_factory_fresh: 'This card is already set up. Re-provision it to use it again.',
  wrong_current_key: 'The card did not accept the key Tessera has for it.',
  not_ntag424: 'This card is not an NTAG 424 DNA. Tessera works with NXP NTAG 424 DNA cards.',
  card_refused: 'The card refused the operation.',
  keyring_unavailable: 'The system keyring is not available.',
  device_secret_missing: 'This computer\u2019s keyring lacks the vault\u2019s secret.',
  vault_damaged: 'The vault files are damaged. Nothing was changed.',
  weak_password: 'Choose a stronger password.',
  bad_relay: 'That is not a relay address (tessera://host:port/pin).',
  bad_invite: 'That is not a Tessera invite code.',
  bad_name: 'Give this device a name (1 to 64 characters).',
  pin_mismatch: 'The relay presented a different key than its address pins. Nothing was sent.',
  tor_unavailable: 'Tor could not start. Nothing was sent outside Tor.',
  tor_connect: 'The relay could not be reached through Tor. Nothing was sent outside Tor.',
  relay: 'The relay could not be reached.',
  locked: 'Tessera is locked.',
  name_taken: 'Another contact already has this name.',
  identity_changed: 'This contact\u2019s identity changed. Compare safety numbers first.',
  too_long: 'The message is too long.',
  not_a_backup: 'That file is not a Tessera backup.',
  backup_newer_version: 'That backup was made by a newer version of Tessera. Update Tessera first.',
  bad_recovery_key: 'That is not a recovery key: check it for typing errors (35 characters).',
  wrong_recovery_key: 'The recovery key does not open this backup.',
  backup_damaged: 'The backup file is damaged.',
  backup_too_large: 'The backup file is too large.',
  vault_exists: 'There is already an account here.',
  contact_deleted: 'This contact deleted their account. Nothing can be sent to them.',
  not_deleted: 'The account was not deleted: the relay could not be reached or refused. Nothing was deleted; try again.',
  same_card: 'That is the card already in use. Put a different card on the reader.',
  no_card_enrolled: 'This vault has no card to replace.',
  no_swap: 'Start the replacement with the current card first.',
  call_in_progress: 'You are already in a call.',
  no_call: 'There is no call to do that with.',
  no_turn: 'This relay offers no call service (TURN), so relay-only calls are not possible. Ask its operator, or allow direct calls in Settings.',
  calls_outside_tor: 'Calls use UDP, which Tor does not carry. Allow calls outside Tor in Settings to call; your relay will then see your IP address.',
  call_media: 'The call\u2019s media connection failed.',
  preview_needs_tor: 'No link preview: previews are fetched through Tor only, and this account connects directly.',
  no_preview: 'No preview for this link.',
  own_account: 'That is your own account (the note to self).',
  updates_need_tor: 'Updates are fetched only through Tor, and this account connects directly.',
  updates_off: 'Update checks are turned off.',
  updates_not_configured: 'Updates are not configured in this build (built from source: update by building the new version).',
  update_bad_signature: 'The update’s signature is not valid; nothing was installed.',
  update_not_newer: 'The update server offers an older version than this one; refused.',
  update_unreachable: 'The update server could not be reached through Tor.',
  update_bad_manifest: 'The update server’s answer is not a valid update for this system.',
  update_bad_package: 'The downloaded update is not a package for this system; nothing was installed.',
  update_install_failed: 'The update could not be installed (the system refused or the password prompt was cancelled).',
  update_config: 'The update settings of this build are invalid.',
  no_update: 'Check for updates first.',
};

export function errorText(err) {
  if (err && MESSAGES[err.code]) return MESSAGES[err.code];
  return (err && err.message) || String(err);
}

export function showError(id, err) {
  const e = document.getElementById(id);
  e.textContent = err ? errorText(err) : '';
  e.dataset.code = (err && err.code) || '';
  e.hidden = !err;
}

export function time(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

export function day(ms) {
  return new Date(ms).toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

export function shortTime(ms) {
  const d = new Date(ms);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return time(ms);
  return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}
