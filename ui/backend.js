// The only module that talks to the Tauri backend. Every other module imports from here, so the
// set of commands the interface uses is visible in one place and can be mocked in one place.

function core() {
  const api = window.__TAURI__ && window.__TAURI__.core;
  if (!api) {
    throw new Error('The Tessera backend is not available (page opened outside the app?)');
  }
  return api;
}

/**
 * Build information: { name, version, commit, target, profile, relay }.
 * @returns {Promise<{name: string, version: string, commit: string, target: string,
 *                    profile: string, relay: string | null}>}
 */
export function appInfo() {
  return core().invoke('app_info');
}
