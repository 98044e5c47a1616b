// First run: relay, password (with strength feedback), card provisioning, device name.
import * as backend from './backend.js';
import { $, el, showError, errorText } from './util.js';

let started = false;
let cardReady = false;

// A card's provisioning state, probed once per card (a probe authenticates with the factory
// key; repeated failures count on a real card). Provisioning clears it.
const probed = new Map();

async function refreshCard() {
  const status = $('#fr-card-status');
  try {
    let readers = await backend.cardStatus();
    let withCard = readers.find((r) => r.card);
    if (withCard && withCard.uid && !withCard.provisioning) {
      if (!probed.has(withCard.uid)) {
        readers = await backend.cardStatus(true);
        const again = readers.find((r) => r.card);
        if (again && again.uid) probed.set(again.uid, again.provisioning);
      }
      withCard = { ...withCard, provisioning: probed.get(withCard.uid) };
    }
    if (readers.length === 0) status.textContent = 'No card reader found. Plug one in.';
    else if (!withCard) status.textContent = `Reader ${readers[0].reader}: put your card on it.`;
    else status.textContent = `Card ${withCard.uid || ''} on ${withCard.reader}: ${
      { factory: 'new (factory settings)', provisioned: 'set up for Tessera', foreign: 'set up by someone else', unknown: 'not answering' }[withCard.provisioning] || 'unknown'}.`;
  } catch (err) {
    status.textContent = errorText(err);
  }
}

async function strength() {
  const pw = $('#fr-password').value;
  const out = $('#fr-strength');
  if (!pw) {
    $('#fr-meter').value = 0;
    out.textContent = 'At least a strong password: four or more random words work well.';
    return;
  }
  const s = await backend.passwordStrength(pw, $('#fr-name').value);
  $('#fr-meter').value = s.score;
  const words = ['very weak', 'weak', 'fair', 'strong', 'very strong'][s.score];
  out.dataset.score = s.score;
  out.textContent = `Strength: ${words}. ${s.warning || ''} ${s.suggestions.join(' ')}`.trim();
}

async function provision() {
  const log = $('#fr-provision-log');
  log.replaceChildren();
  showError('fr-error', null);
  $('#fr-provision').disabled = true;
  try {
    const uid = await backend.provisionCard($('#fr-reprovision').checked, (p) => {
      log.append(el('li', { dataset: { step: p.step } }, `${p.step}/${p.of} ${p.what}`));
    });
    log.append(el('li', { class: 'done', id: 'fr-provision-done' }, `Card ${uid} is ready.`));
    probed.delete(uid);
    cardReady = true;
  } catch (err) {
    showError('fr-error', err);
  } finally {
    $('#fr-provision').disabled = false;
    refreshCard();
  }
}

/** Whether the form restores a backup instead of creating an account. */
function restoring() {
  return $('#fr-mode-restore').checked;
}

function applyMode() {
  const r = restoring();
  $('#fr-restore').hidden = !r;
  $('#fr-relay-set').hidden = r;
  $('#fr-name-set').hidden = r;
  $('#fr-title').textContent = r ? 'Restore Tessera from a backup' : 'Set up Tessera';
  $('#fr-create').textContent = r ? 'Restore my account' : 'Create my account';
  $('#fr-busy').textContent = r
    ? 'Restoring the vault, registering new keys and telling your contacts…'
    : 'Creating the vault and registering with the relay…';
  showError('fr-error', null);
}

/** The chosen file's bytes as standard base64. */
function fileBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ''));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function create(ev, done) {
  ev.preventDefault();
  showError('fr-error', null);
  const restore = restoring();
  const file = $('#fr-backup').files[0];
  if (restore && !file) {
    showError('fr-error', { code: 'no_backup', message: 'Choose the backup file (step 1).' });
    return;
  }
  if (restore && !$('#fr-recovery-key').value.trim()) {
    showError('fr-error', { code: 'no_recovery_key', message: 'Type the backup\u2019s recovery key (step 1).' });
    return;
  }
  const pw = $('#fr-password').value;
  if (pw !== $('#fr-password2').value) {
    showError('fr-error', { code: 'mismatch', message: 'The two passwords differ.' });
    return;
  }
  const useCard = !$('#fr-no-card').checked;
  if (useCard && !cardReady) {
    showError('fr-error', { code: 'card', message: 'Set up the card first (step 3), or continue without a card.' });
    return;
  }
  $('#fr-create').disabled = true;
  $('#fr-busy').hidden = false;
  try {
    if (restore) {
      await backend.restoreAccount({
        backup: await fileBase64(file),
        recoveryKey: $('#fr-recovery-key').value,
        password: pw,
        useCard,
      });
      $('#fr-recovery-key').value = '';
      $('#fr-backup').value = '';
    } else {
      await backend.createAccount({
        relay: $('#fr-relay').value,
        password: pw,
        name: $('#fr-name').value,
        transport: $('#fr-transport').value,
        useCard,
      });
    }
    $('#fr-password').value = '';
    $('#fr-password2').value = '';
    done();
  } catch (err) {
    showError('fr-error', err);
  } finally {
    $('#fr-create').disabled = false;
    $('#fr-busy').hidden = true;
  }
}

/** A relay on this machine cannot be reached through Tor (exits refuse loopback). */
function loopbackRelay(address) {
  return /^tessera:\/\/(127\.|localhost[:/]|\[::1\])/.test(address.trim());
}

function suggestTransport() {
  if (loopbackRelay($('#fr-relay').value)) $('#fr-transport').value = 'direct';
}

export function startFirstRun(state, done) {
  if (state.suggestedRelay && !$('#fr-relay').value) $('#fr-relay').value = state.suggestedRelay;
  suggestTransport();
  refreshCard();
  if (started) return;
  started = true;
  let timer;
  $('#fr-password').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => strength().catch(() => {}), 150);
  });
  $('#fr-provision').addEventListener('click', provision);
  $('#fr-mode-new').addEventListener('change', applyMode);
  $('#fr-mode-restore').addEventListener('change', applyMode);
  $('#fr-relay').addEventListener('change', suggestTransport);
  $('#fr-form').addEventListener('submit', (ev) => create(ev, done));
  setInterval(() => { if (!$('#first-run').hidden) refreshCard(); }, 2000);
}
