// Screen router: first run, lock screen, or the unlocked app. Talks to the backend only through
// backend.js.
import * as backend from './backend.js';
import { $, showOnly } from './util.js';
import { startFirstRun } from './firstrun.js';
import { showLock } from './lock.js';
import { openApp, closeApp, onEngineEvent } from './app.js';
import { setupWipe } from './wipe.js';

const SCREENS = ['first-run', 'lock-screen', 'main'];

async function route(lockReason, cardCheck) {
  const state = await backend.appState();
  if (state.phase === 'first_run') {
    showOnly(SCREENS, 'first-run');
    startFirstRun(state, () => route());
  } else if (state.phase === 'locked') {
    closeApp();
    showOnly(SCREENS, 'lock-screen');
    showLock(state, lockReason, (check) => route(undefined, check));
  } else {
    showOnly(SCREENS, 'main');
    await openApp(cardCheck);
  }
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme || 'system';
}
window.addEventListener('tessera-theme', (e) => applyTheme(e.detail));

async function start() {
  try {
    await backend.subscribe((event) => {
      if (event.type === 'locked') {
        // Drop everything the page shows before anything else.
        closeApp();
        route(event.reason);
        return;
      }
      onEngineEvent(event);
    });
    // Activity for the idle lock, at most every 10 s.
    let last = 0;
    const touch = () => {
      const now = Date.now();
      if (now - last > 10000) {
        last = now;
        backend.activity().catch(() => {});
      }
    };
    for (const ev of ['keydown', 'pointerdown', 'wheel']) window.addEventListener(ev, touch, { passive: true });
    setupWipe(() => { closeApp(); route(); });
    await route();
  } catch (err) {
    const box = $('#backend-error');
    box.textContent = (err && err.message) || String(err);
    box.hidden = false;
    showOnly(SCREENS, 'lock-screen');
  }
}

start();
