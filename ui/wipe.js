// Panic wipe: one confirmation, then the backend destroys the keys and the files. Reached from
// the lock screen and from settings; the page returns to first run when the engine reports the
// lock (or, from the lock screen, right after the wipe).
import * as backend from './backend.js';
import { $, showError } from './util.js';

let onWiped = () => {};

async function confirmWipe() {
  const button = $('#wipe-confirm');
  button.disabled = true;
  showError('wipe-error', null);
  try {
    await backend.panicWipe();
    $('#wipe-dialog').close();
    onWiped();
  } catch (err) {
    showError('wipe-error', err);
  } finally {
    button.disabled = false;
  }
}

function ask() {
  showError('wipe-error', null);
  $('#wipe-dialog').showModal();
  // Cancel has the focus: Enter alone never wipes.
  $('#wipe-cancel').focus();
}

/** Wires the wipe buttons; `done` runs after a wipe (the router shows first run). */
export function setupWipe(done) {
  onWiped = done;
  $('#lock-wipe').addEventListener('click', ask);
  $('#set-wipe').addEventListener('click', ask);
  $('#wipe-cancel').addEventListener('click', () => $('#wipe-dialog').close());
  $('#wipe-confirm').addEventListener('click', confirmWipe);
}
