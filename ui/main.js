// Lock screen wiring. Talks to the backend only through backend.js.
import { appInfo } from './backend.js';

function show(id, text) {
  const el = document.getElementById(id);
  el.textContent = text;
  el.hidden = false;
}

async function start() {
  try {
    const info = await appInfo();
    const commit = info.commit ? ` (${info.commit})` : '';
    show('app-version', `${info.name} ${info.version}${commit}`);
    show('relay', info.relay ? `Relay: ${info.relay}` : 'No relay configured');
  } catch (err) {
    // Backend errors are {code, message} objects or strings; show only the message.
    const message = (err && err.message) || String(err);
    show('backend-error', message);
  }
}

start();
