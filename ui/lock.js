// Lock screen: reader and card status, password, clear messages for each failure.
import * as backend from './backend.js';
import { $, showError, errorText } from './util.js';

let started = false;
let cardFactor = true;
let onUnlocked = () => {};

const REASONS = {
  card_removed: 'Locked because the card left the reader.',
  idle: 'Locked after the idle time you set.',
  focus_lost: 'Locked because the window lost focus.',
  requested: 'Locked.',
};

async function refreshCard() {
  const out = $('#card-status');
  if (!cardFactor) {
    out.textContent = 'This vault has no card; the password and this computer\u2019s keyring open it.';
    return;
  }
  try {
    const readers = await backend.cardStatus();
    const withCard = readers.find((r) => r.card);
    if (readers.length === 0) out.textContent = 'No card reader found. Plug in the reader.';
    else if (!withCard) out.textContent = 'Tap your card on the reader.';
    else if (withCard.enrolled_here === false) out.textContent = 'This is not the card for this vault.';
    else out.textContent = 'Card ready.';
    out.dataset.state = !readers.length ? 'no_reader' : !withCard ? 'no_card' : withCard.enrolled_here === false ? 'wrong_card' : 'ready';
  } catch (err) {
    out.textContent = errorText(err);
    out.dataset.state = err.code || 'error';
  }
}

async function info() {
  try {
    const i = await backend.appInfo();
    const commit = i.commit ? ` (${i.commit})` : '';
    $('#app-version').textContent = `${i.name} ${i.version}${commit}`;
    $('#relay').textContent = i.relay ? `Relay: ${i.relay}` : '';
  } catch (err) {
    $('#backend-error').textContent = errorText(err);
    $('#backend-error').hidden = false;
  }
}

async function submit(ev) {
  ev.preventDefault();
  showError('unlock-error', null);
  const pw = $('#password');
  $('#unlock').disabled = true;
  try {
    const check = await backend.unlock(pw.value);
    pw.value = '';
    onUnlocked(check);
  } catch (err) {
    showError('unlock-error', err);
    pw.select();
  } finally {
    $('#unlock').disabled = false;
  }
}

export function showLock(state, reason, done) {
  cardFactor = state.cardFactor;
  onUnlocked = done;
  const r = $('#lock-reason');
  r.textContent = REASONS[reason] || '';
  r.hidden = !REASONS[reason];
  showError('unlock-error', null);
  refreshCard();
  info();
  $('#password').focus();
  if (started) return;
  started = true;
  $('#unlock-form').addEventListener('submit', submit);
  setInterval(() => { if (!$('#lock-screen').hidden) refreshCard(); }, 1500);
}
