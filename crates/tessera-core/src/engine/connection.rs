//! The relay connection: log in (registering a renewed certificate), receive pushes, stay
//! connected, sync once, and keep contact certificates fresh (`docs/engine.md`, "Connection").

use super::*;

impl Engine {
    /// Connects to the relay and logs in (if not connected); deliveries are processed in the
    /// background from then on.
    pub async fn connect(&self) -> Result<Arc<RelayClient>, CoreError> {
        let _one_at_a_time = self.inner.connecting.lock().await;
        // Rotations due now happen before the relay sees this device (a device offline for a
        // year renews everything here, before it sends anything).
        self.maybe_maintain()?;
        // A vault restored from a backup replaces its keys before it is seen with them.
        self.start_over().await?;
        let now = self.now_ms();
        let current = self
            .with(|u| Ok(keys::registered_serial(&u.vault)? == u.me.certificate.fields.serial))?;
        if let Ok(mut held) = self.inner.client.lock()
            && let Some(c) = held.clone()
        {
            if current {
                return Ok(c);
            }
            // A renewed certificate: the next connection registers it (and replaces this one
            // at the relay).
            held.take();
        }
        let (relay, transport, account, auth, public, certificate, registered) =
            self.with(|u| {
                Ok((
                    u.me.relay.clone(),
                    u.me.transport.clone(),
                    u.me.account_id,
                    u.me.auth.clone(),
                    u.me.public.clone(),
                    u.me.certificate.clone(),
                    keys::registered_serial(&u.vault)?,
                ))
            })?;
        let (client, pushes) = RelayClient::connect(&relay, &transport).await?;
        if registered == certificate.fields.serial {
            client.login(&account, DEVICE_ID, &auth, &mut rng()).await?;
        } else {
            // A renewed certificate: registering it is the login (the relay keeps the highest
            // serial, signed by the account identity).
            client
                .register(&public, &certificate, &auth, &mut rng())
                .await?;
            let serial = certificate.fields.serial;
            self.with(|u| keys::set_registered_serial(&u.vault, serial))?;
            tracing::info!(serial, "registered a renewed device certificate");
        }
        // An account that never published prekeys (one a duress unlock made) publishes its
        // first batch now.
        let first = self.with(|u| {
            if keys::current_statement(&u.vault)?.is_some() {
                return Ok(None);
            }
            let batch = keys::next_batch_id(&u.vault)?;
            u.vault
                .transaction(|v| keys::new_batch(v, &u.me.identity, batch, now, &mut rng()))
                .map(Some)
        })?;
        if let Some((signed, wire)) = first {
            client.publish_prekeys(&signed, wire).await?;
            self.with(|u| keys::mark_published(&u.vault))?;
        }
        let unpublished = self.with(|u| keys::unpublished_statement(&u.vault))?;
        if let Some(signed) = unpublished {
            match client.publish_prekeys(&signed, Vec::new()).await {
                Ok(()) => {}
                // The relay no longer holds the batch this statement names (an upload that
                // never finished): publish a whole new batch instead.
                Err(ClientError::Relay {
                    code: ErrorCode::NotFound,
                    ..
                }) => {
                    let (signed, wire) = self.with(|u| {
                        let batch = keys::next_batch_id(&u.vault)?;
                        u.vault.transaction(|v| {
                            keys::new_batch(v, &u.me.identity, batch, now, &mut rng())
                        })
                    })?;
                    client.publish_prekeys(&signed, wire).await?;
                }
                Err(e) => return Err(e.into()),
            }
            self.with(|u| keys::mark_published(&u.vault))?;
        }
        Ok(self.attach(client, pushes))
    }

    /// Fetches again the certificates of `contact`'s devices that their owner has renewed by
    /// now (the cached one is in its last 15 days), at most once an hour per device. Best
    /// effort, over the current connection only: without one the cached certificate is used
    /// (its envelope key stays usable for 90 days after it ends).
    pub(super) async fn refresh_contact(&self, contact: &[u8; 32]) {
        let now = self.now_ms();
        let Ok((stale, account)) = self.with(|u| {
            let Some(c) = u.vault.contact(contact)? else {
                return Ok((Vec::new(), None));
            };
            let mut stale = Vec::new();
            for (device, cert) in u.vault.contact_devices(contact)? {
                let Ok(cert) = DeviceCertificate::from_bytes(&cert) else {
                    continue;
                };
                if keys::contact_certificate_stale(cert.fields.not_after, now) {
                    stale.push((device, cert.fields.serial));
                }
            }
            Ok((stale, AccountPublic::from_bytes(&c.account_public).ok()))
        }) else {
            return;
        };
        let Some(account) = account else { return };
        // Only over a connection that is already up: this runs before sealing, and a send must
        // not wait for a connection attempt (the flush after it connects).
        let Some(client) = self.inner.client.lock().ok().and_then(|c| c.clone()) else {
            return;
        };
        for (device, serial) in stale {
            let due = self.inner.refreshed.lock().is_ok_and(|mut m| {
                let last = m.entry((*contact, device)).or_insert(0);
                if now.saturating_sub(*last) < 3_600_000 && *last != 0 {
                    false
                } else {
                    *last = now;
                    true
                }
            });
            if !due {
                continue;
            }
            match client
                .fetch_certificate(&AccountId(*contact), device, &account, now)
                .await
            {
                Ok(cert) if cert.fields.serial > serial => {
                    let bytes = cert.to_bytes();
                    let _ =
                        self.with(|u| Ok(u.vault.put_contact_device(contact, device, &bytes)?));
                    tracing::info!(
                        device,
                        serial = cert.fields.serial,
                        "contact certificate refreshed"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::info!(error = %e, "contact certificate not refreshed"),
            }
        }
    }

    pub(super) fn attach(&self, client: RelayClient, mut pushes: Pushes) -> Arc<RelayClient> {
        let client = Arc::new(client);
        if let Ok(mut c) = self.inner.client.lock() {
            *c = Some(client.clone());
        }
        self.inner.link.send_replace(true);
        self.emit(Event::Connected);
        let engine = self.clone();
        let weak = Arc::downgrade(&client);
        tokio::spawn(async move {
            while let Some(push) = pushes.recv().await {
                match push {
                    Pushed::Deliver {
                        delivery_id,
                        envelope,
                    } => {
                        let keep = engine.receive_envelope(&envelope);
                        // The acknowledgement's answer is not awaited: the next envelope is
                        // processed while it travels (one round trip per envelope would stall
                        // a backlog over Tor). An ack that is lost leaves the envelope at the
                        // relay; it comes again and is dropped as a duplicate.
                        if !keep && let Some(c) = weak.upgrade() {
                            tokio::spawn(async move {
                                let _ = c.ack(delivery_id).await;
                            });
                        }
                    }
                    Pushed::PrekeysLow { .. } => {
                        if let Err(e) = engine.refill_prekeys().await {
                            tracing::warn!(error = %e, "prekey refill failed");
                        }
                    }
                    Pushed::Closing { code, .. } => {
                        tracing::info!(?code, "relay closed the connection");
                    }
                    _ => {}
                }
            }
            // A connection replaced by a newer one (a renewed certificate registered) ends
            // quietly; only the loss of the current connection is a disconnection.
            let current = match engine.inner.client.lock() {
                Ok(mut c) if c.as_ref().is_some_and(|c| Arc::as_ptr(c) == weak.as_ptr()) => {
                    c.take();
                    true
                }
                Ok(c) => c.is_none(),
                Err(_) => true,
            };
            if current {
                engine.inner.link.send_replace(false);
            }
            // A connection closed by locking is not a disconnection (`Locked` says it).
            if current && engine.is_unlocked() {
                engine.emit(Event::Disconnected);
            }
        });
        client
    }

    /// Stays connected: reconnects with exponential backoff (1 s doubling to 60 s, with
    /// jitter) until the engine is locked. Returns only when locked.
    pub async fn run(&self) {
        let mut backoff = Duration::from_secs(1);
        while self.is_unlocked() {
            match self.connect().await {
                Ok(client) => {
                    backoff = Duration::from_secs(1);
                    if let Err(e) = self.finish_restore().await {
                        tracing::warn!(error = %e, "session resets after a restore failed");
                    }
                    let _ = self.flush_outbox().await;
                    let engine = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = engine.backup_if_due().await {
                            tracing::warn!(error = %e, "scheduled backup failed");
                        }
                    });
                    // Receipts queued by incoming messages are flushed by `receive`.
                    let mut link = self.inner.link.subscribe();
                    let mut hourly = tokio::time::Instant::now() + Duration::from_secs(3600);
                    loop {
                        // Entries backing off after a failure go out when their time comes.
                        let retry = self
                            .next_delivery()
                            .map_or(Duration::from_secs(3600), |at| {
                                Duration::from_millis(at.saturating_sub(self.now_ms()))
                            });
                        tokio::select! {
                            // Disconnected or locked: watched as a state, so a burst of events
                            // that a slow listener would lag behind cannot hide it.
                            () = until_down(&mut link) => break,
                            () = tokio::time::sleep(retry) => {
                                let _ = self.flush_outbox().await;
                            }
                            // Hourly: rotations fall due while connected too; `connect`
                            // maintains and registers a renewed certificate.
                            () = tokio::time::sleep_until(hourly) => {
                                hourly += Duration::from_secs(3600);
                                if let Err(e) = self.backup_if_due().await {
                                    tracing::warn!(error = %e, "scheduled backup failed");
                                }
                                if self.connect().await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    drop(client);
                }
                Err(e) => {
                    tracing::info!(error = %e, "cannot reach the relay; retrying");
                    let jitter = Duration::from_millis(rand::random_range(0..500));
                    tokio::time::sleep(backoff + jitter).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// Connects, processes everything the relay has queued until nothing arrives for `idle`,
    /// sends the outbox, and returns.
    pub async fn sync(&self, idle: Duration) -> Result<(), CoreError> {
        let mut events = self.subscribe();
        self.connect().await?;
        self.finish_restore().await?;
        self.upload_attachments().await?;
        self.flush_outbox().await?;
        loop {
            match tokio::time::timeout(idle, events.recv()).await {
                Ok(Ok(Event::Disconnected)) => return Err(CoreError::Net(ClientError::Closed)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        self.flush_outbox().await?;
        self.download_attachments().await?;
        if let Err(e) = self.backup_if_due().await {
            tracing::warn!(error = %e, "scheduled backup failed");
        }
        Ok(())
    }
}

/// Returns once the link state is "down" (at once if it already is, or if the engine is gone).
async fn until_down(link: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let up = *link.borrow_and_update();
        if !up || link.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::until_down;
    use std::time::Duration;

    /// The run loop's watch on the link: it wakes when the link goes down (not when it is
    /// reported up again), at once when it already is down, and when the engine is gone.
    #[tokio::test]
    async fn until_down_wakes_when_the_link_goes_down_or_the_engine_is_gone() {
        let (tx, mut rx) = tokio::sync::watch::channel(true);
        let waiter = tokio::spawn(async move { until_down(&mut rx).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        tx.send_replace(true);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "up again is not down");
        tx.send_replace(false);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woke on down")
            .expect("no panic");

        let (_tx, mut down) = tokio::sync::watch::channel(false);
        tokio::time::timeout(Duration::from_secs(10), until_down(&mut down))
            .await
            .expect("already down");
        let (gone, mut orphan) = tokio::sync::watch::channel(true);
        drop(gone);
        tokio::time::timeout(Duration::from_secs(10), until_down(&mut orphan))
            .await
            .expect("the engine is gone");
    }
}
