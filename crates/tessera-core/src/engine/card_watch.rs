//! The card while unlocked: lock when it leaves the reader, and the window a card swap may
//! leave the reader empty (`docs/engine.md`, "Lock").

use super::*;

impl Engine {
    /// Whether the engine locks when the card leaves the reader (the `lock_on_card_removal`
    /// setting; on unless turned off).
    pub fn lock_on_card_removal(&self) -> Result<bool, CoreError> {
        self.with(|u| Ok(u.vault.setting("lock_on_card_removal")?.as_deref() != Some("off")))
    }

    /// Turns locking on card removal on or off.
    pub fn set_lock_on_card_removal(&self, on: bool) -> Result<(), CoreError> {
        self.with(|u| {
            u.vault
                .set_setting("lock_on_card_removal", if on { "on" } else { "off" })?;
            Ok(())
        })
    }

    /// Watches `reader` (where the unlocking card was read) from a thread of its own: when the
    /// card leaves it and [`Engine::lock_on_card_removal`] is on, the engine locks — the vault
    /// connection closes and every key in memory is dropped (zeroized) — and
    /// [`Event::Locked`] with [`LockReason::CardRemoved`] is sent. The thread ends when the
    /// engine locks for any reason. If the card service fails, the engine locks too (fail
    /// closed: a watch that cannot watch must not leave the vault open).
    ///
    /// During a card swap ([`Engine::begin_card_swap`]) a removal does not lock: the watch waits
    /// for a card to come back. If the swap ends (or expires) with the reader empty, it locks.
    pub fn watch_card(&self, reader: String) -> std::thread::JoinHandle<()> {
        let engine = self.clone();
        std::thread::spawn(move || {
            loop {
                let stop = || !engine.is_unlocked();
                let removed = crate::card::wait_for_removal(&reader, &stop);
                if !engine.is_unlocked() {
                    return;
                }
                match removed {
                    Ok(true) if engine.card_swapping() => {
                        let back = || !engine.is_unlocked() || !engine.card_swapping();
                        match crate::card::wait_for_insert(&reader, &back) {
                            Ok(true) => continue,
                            Ok(false) if !engine.is_unlocked() => return,
                            _ => {
                                tracing::info!("card swap ended with no card: locking");
                                engine.lock_because(LockReason::CardRemoved);
                                return;
                            }
                        }
                    }
                    Ok(true) => {
                        if engine.lock_on_card_removal().unwrap_or(true) {
                            tracing::info!("card removed: locking");
                            engine.lock_because(LockReason::CardRemoved);
                        }
                        return;
                    }
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "card watch failed: locking");
                        engine.lock_because(LockReason::CardRemoved);
                        return;
                    }
                }
            }
        })
    }

    /// Lets the card leave the reader for at most `for_at_most` without locking (a card
    /// replacement). [`Engine::end_card_swap`] ends it early.
    pub fn begin_card_swap(&self, for_at_most: Duration) {
        if let Ok(mut s) = self.inner.card_swap.lock() {
            *s = Some(std::time::Instant::now() + for_at_most);
        }
    }

    /// Ends a card swap: from now on a removal locks again.
    pub fn end_card_swap(&self) {
        if let Ok(mut s) = self.inner.card_swap.lock() {
            *s = None;
        }
    }

    pub(super) fn card_swapping(&self) -> bool {
        self.inner
            .card_swap
            .lock()
            .map(|s| s.is_some_and(|until| std::time::Instant::now() < until))
            .unwrap_or(false)
    }
}
