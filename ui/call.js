// The call screens: incoming (ringing, accept/decline) and in-call (the contact's video, the
// camera, mute, camera on/off, hang up, duration, connection quality), with what protects the
// call: end-to-end encryption, relay-only or direct, and the contact's safety-number state.

import * as backend from './backend.js';
import { $, showError } from './util.js';

const ENDED = {
  hung_up: 'Call ended',
  remote_hung_up: 'The contact hung up',
  cancelled: 'Call cancelled',
  rejected: 'The contact declined',
  busy: 'The contact is in another call',
  unavailable: 'The contact is not reachable',
  no_answer: 'No answer',
  failed: 'The call could not connect',
};

const STATES = {
  dialing: 'Calling\u2026',
  ringing: 'Ringing\u2026',
  incoming: 'Incoming call',
  connecting: 'Connecting\u2026',
  active: 'In call',
};

let poll = null;
let videoSubscribed = false;
// Whether the own camera is on, as the backend last said: a preview picture that was already on
// its way when the camera was switched off is not drawn, and the preview goes with the state
// itself, not only with the "stopped" message on the picture channel.
let cameraWanted = true;

function clock(secs) {
  const m = Math.floor(secs / 60);
  const s = String(secs % 60).padStart(2, '0');
  return `${m}:${s}`;
}

// One message per picture: kind (0 the contact, 1 your camera), width u16 LE, height u16 LE,
// RGBA. A lone kind byte: that picture stopped.
function drawPicture(buf) {
  const bytes = new Uint8Array(buf);
  if (bytes.length < 1) return;
  const canvas = bytes[0] === 1 ? $('#call-preview') : $('#call-remote');
  if (bytes[0] === 1 && !cameraWanted) return;
  if (bytes.length === 1) {
    clearCanvas(canvas);
    if (bytes[0] === 1) canvas.hidden = true;
    return;
  }
  if (bytes.length < 5) return;
  const w = bytes[1] | (bytes[2] << 8);
  const h = bytes[3] | (bytes[4] << 8);
  if (!w || !h || bytes.length < 5 + w * h * 4) return;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(buf, 5, w * h * 4), w, h), 0, 0);
  canvas.dataset.pictures = String(Number(canvas.dataset.pictures || 0) + 1);
  canvas.hidden = false;
}

function clearCanvas(canvas) {
  canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.pictures;
}

function render(v) {
  $('#call-name').textContent = v.contactName || 'Call';
  $('#call-state').textContent = STATES[v.state] || v.state;
  $('#call-screen').dataset.state = v.state;
  $('#call-policy').textContent = v.policy === 'relay_only'
    ? 'Relay only: the contact cannot see your address'
    : 'Direct: you and the contact see each other\u2019s addresses';
  $('#call-policy').dataset.policy = v.policy;
  const safety = $('#call-safety');
  if (v.identityChanged) {
    safety.textContent = 'Identity changed: compare safety numbers';
    safety.dataset.safety = 'changed';
  } else if (v.verified) {
    safety.textContent = 'Safety number verified';
    safety.dataset.safety = 'verified';
  } else {
    safety.textContent = 'Safety number not verified';
    safety.dataset.safety = 'unverified';
  }
  $('#call-duration').textContent = v.durationSecs != null ? clock(v.durationSecs) : '';
  $('#call-quality').textContent = v.state === 'active' ? `Connection: ${v.quality}` : '';
  $('#call-quality').dataset.quality = v.quality;
  $('#call-incoming-buttons').hidden = v.state !== 'incoming';
  $('#call-active-buttons').hidden = v.state === 'incoming';
  $('#call-mute').textContent = v.muted ? 'Unmute' : 'Mute';
  $('#call-mute').setAttribute('aria-pressed', String(v.muted));
  $('#call-camera').hidden = !v.video;
  $('#call-camera').textContent = v.camera ? 'Camera off' : 'Camera on';
  cameraWanted = Boolean(v.video && v.camera);
  if (!cameraWanted) {
    clearCanvas($('#call-preview'));
    $('#call-preview').hidden = true;
  }
  $('#call-remote').hidden = !v.video;
  const notes = [];
  const details = [];
  if (v.devices.microphone) {
    notes.push('No microphone: the contact hears silence.');
    details.push(`Microphone: ${v.devices.microphone}`);
  }
  if (v.devices.speaker) {
    notes.push('No speaker: you hear nothing.');
    details.push(`Speaker: ${v.devices.speaker}`);
  }
  if (v.video && v.devices.camera) {
    notes.push('No camera: the contact sees no picture.');
    details.push(`Camera: ${v.devices.camera}`);
  }
  $('#call-devices').textContent = notes.join(' ');
  $('#call-devices').title = details.join('\n');
  const previewing = v.video && v.camera && !v.devices.camera && !$('#call-preview').hidden;
  $('#call-preview-note').textContent = !v.video || previewing ? ''
    : v.devices.camera ? 'No camera' : v.camera ? 'Starting camera…' : 'Camera off';
  $('#call-preview-box').hidden = !v.video;
}

async function refresh() {
  try {
    const v = await backend.callStatus();
    if (v) render(v);
  } catch (err) {
    if (err && err.code === 'locked') stop();
  }
}

function show() {
  $('#call-screen').hidden = false;
  showError('call-error', null);
  if (!videoSubscribed) {
    videoSubscribed = true;
    backend.callVideo(drawPicture).catch(() => { videoSubscribed = false; });
  }
  if (!poll) poll = setInterval(refresh, 1000);
  refresh();
}

function stop() {
  if (poll) clearInterval(poll);
  poll = null;
}

function hide() {
  stop();
  $('#call-screen').hidden = true;
  delete $('#call-screen').dataset.state;
  clearCanvas($('#call-remote'));
  clearCanvas($('#call-preview'));
  $('#call-preview').hidden = true;
  cameraWanted = true;
  for (const id of ['#call-name', '#call-state', '#call-duration', '#call-quality', '#call-devices', '#call-policy', '#call-safety']) $(id).textContent = '';
}

async function act(f) {
  showError('call-error', null);
  try {
    await f();
  } catch (err) {
    showError('call-error', err);
  }
  refresh();
}

/** Starts a call to `contact` (from the chat header). */
export async function dial(contact, video) {
  show();
  $('#call-state').textContent = 'Calling\u2026';
  try {
    await backend.callStart(contact, video);
  } catch (err) {
    showError('call-error', err);
    $('#call-state').textContent = 'The call could not start';
    setTimeout(() => { if (!poll || $('#call-screen').dataset.state === undefined) hide(); }, 6000);
  }
  refresh();
}

/** A call event from the backend. */
export function onCallEvent(e) {
  if (e.what === 'incoming' || e.what === 'state') {
    show();
  } else if (e.what === 'ended') {
    stop();
    $('#call-state').textContent = ENDED[e.reason] || 'Call ended';
    $('#call-screen').dataset.state = 'ended';
    $('#call-screen').dataset.reason = e.reason;
    $('#call-incoming-buttons').hidden = true;
    $('#call-active-buttons').hidden = true;
    setTimeout(() => { if ($('#call-screen').dataset.state === 'ended') hide(); }, 3000);
  }
}

/** Buttons. */
export function wireCalls() {
  $('#call-accept').addEventListener('click', () => act(backend.callAccept));
  $('#call-reject').addEventListener('click', () => act(backend.callReject));
  $('#call-hangup').addEventListener('click', () => act(backend.callHangUp));
  $('#call-mute').addEventListener('click', () => act(() => backend.callMute($('#call-mute').getAttribute('aria-pressed') !== 'true')));
  $('#call-camera').addEventListener('click', () => act(() => backend.callCamera($('#call-camera').textContent === 'Camera on')));
}

/** The app locked: the call is over and nothing of it stays on screen. */
export function closeCall() {
  hide();
}
