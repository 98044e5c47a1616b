//! The PC/SC transport: readers, cards, transmit — with typed errors for the ways it fails.
// The crate's clippy.toml keeps the clock and RNGs out of `protocol` and `card`; the PC/SC transport is I/O: it waits on the clock.
#![allow(clippy::disallowed_methods)]

use pcsc::{Context, Protocols, Scope, ShareMode};

/// Why talking to a card through PC/SC failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReaderError {
    /// The PC/SC service (pcscd) is not running or not reachable.
    #[error("the smart-card service is not running (start pcscd)")]
    NoService,
    /// No reader is attached.
    #[error("no card reader found")]
    NoReader,
    /// The reader has no card.
    #[error("no card on the reader")]
    NoCard,
    /// The card was taken away during the exchange.
    #[error("the card was removed")]
    CardRemoved,
    /// Another program holds the card exclusively.
    #[error("another program is using the card")]
    Busy,
    /// Anything else PC/SC reported.
    #[error("PC/SC error: {0}")]
    Other(String),
}

fn map(e: pcsc::Error) -> ReaderError {
    match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped | pcsc::Error::NoReadersAvailable => {
            if matches!(e, pcsc::Error::NoReadersAvailable) {
                ReaderError::NoReader
            } else {
                ReaderError::NoService
            }
        }
        pcsc::Error::NoSmartcard => ReaderError::NoCard,
        pcsc::Error::RemovedCard | pcsc::Error::ResetCard => ReaderError::CardRemoved,
        pcsc::Error::SharingViolation => ReaderError::Busy,
        other => ReaderError::Other(other.to_string()),
    }
}

/// A connection to the PC/SC service.
pub struct Readers {
    ctx: Context,
}

/// A card on a reader, connected exclusively.
pub struct CardConnection {
    card: pcsc::Card,
}

impl Readers {
    /// Connects to the PC/SC service.
    pub fn open() -> Result<Self, ReaderError> {
        Ok(Self {
            ctx: Context::establish(Scope::User).map_err(map)?,
        })
    }

    /// Reader names.
    pub fn list(&self) -> Result<Vec<String>, ReaderError> {
        let mut buf = vec![0u8; 4096];
        let names = self.ctx.list_readers(&mut buf).map_err(map)?;
        let out: Vec<String> = names.map(|n| n.to_string_lossy().into_owned()).collect();
        if out.is_empty() {
            return Err(ReaderError::NoReader);
        }
        Ok(out)
    }

    /// Waits (up to `timeout`) until a reader whose name satisfies `wanted` is attached, on
    /// pcscd's reader-list notifications; returns its name, or `None` on timeout.
    pub fn wait_for_reader(
        &self,
        wanted: &dyn Fn(&str) -> bool,
        timeout: std::time::Duration,
    ) -> Result<Option<String>, ReaderError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut pnp = [pcsc::ReaderState::new(
            pcsc::PNP_NOTIFICATION(),
            pcsc::State::UNAWARE,
        )];
        loop {
            match self.list() {
                Ok(names) => {
                    if let Some(n) = names.into_iter().find(|n| wanted(n)) {
                        return Ok(Some(n));
                    }
                }
                Err(ReaderError::NoReader) => {}
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Sleeps until the reader list changes (or a second passes: not every PC/SC
            // implementation reports the list through the notification).
            match self
                .ctx
                .get_status_change(left.min(std::time::Duration::from_secs(1)), &mut pnp)
            {
                Ok(()) | Err(pcsc::Error::Timeout) | Err(pcsc::Error::UnknownReader) => {}
                Err(e) => return Err(map(e)),
            }
            pnp[0].sync_current_state();
        }
    }

    /// Connects to the card on `reader` (exclusively: no other program talks to it meanwhile).
    pub fn connect(&self, reader: &str) -> Result<CardConnection, ReaderError> {
        let name = std::ffi::CString::new(reader).map_err(|_| ReaderError::NoReader)?;
        let card = self
            .ctx
            .connect(&name, ShareMode::Exclusive, Protocols::ANY)
            .map_err(map)?;
        Ok(CardConnection { card })
    }

    /// Whether a card is on `reader` now.
    pub fn card_present(&self, reader: &str) -> Result<bool, ReaderError> {
        let name = std::ffi::CString::new(reader).map_err(|_| ReaderError::NoReader)?;
        let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
        self.ctx
            .get_status_change(std::time::Duration::from_millis(0), &mut states)
            .map_err(map)?;
        Ok(states[0].event_state().contains(pcsc::State::PRESENT))
    }

    /// Waits (up to `timeout`) until the card on `reader` is present (`true`) or absent
    /// (`false`); returns whether that state was reached. It sleeps in pcscd's
    /// `SCardGetStatusChange`, woken by the reader's events (no polling of its own); a card
    /// that is there but did not answer with an ATR (`MUTE`) is not present yet.
    pub fn wait_for(
        &self,
        reader: &str,
        present: bool,
        timeout: std::time::Duration,
    ) -> Result<bool, ReaderError> {
        let deadline = std::time::Instant::now() + timeout;
        let name = std::ffi::CString::new(reader).map_err(|_| ReaderError::NoReader)?;
        let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.ctx.get_status_change(left, &mut states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(e) => return Err(map(e)),
            }
            let event = states[0].event_state();
            if event.contains(pcsc::State::UNKNOWN) {
                return Err(ReaderError::NoReader);
            }
            let usable = event.contains(pcsc::State::PRESENT) && !event.contains(pcsc::State::MUTE);
            if usable == present {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            states[0].sync_current_state();
        }
    }

    /// What pcscd reports for `reader` now, in words (`PRESENT | INUSE`, `EMPTY`, …), and its
    /// ATR: for diagnostics when a card does not show up.
    pub fn describe(&self, reader: &str) -> String {
        let Ok(name) = std::ffi::CString::new(reader) else {
            return "no such reader".into();
        };
        let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
        match self
            .ctx
            .get_status_change(std::time::Duration::from_millis(0), &mut states)
        {
            Ok(()) | Err(pcsc::Error::Timeout) => {
                let atr: Vec<String> = states[0].atr().iter().map(|b| format!("{b:02X}")).collect();
                format!("{:?}, ATR [{}]", states[0].event_state(), atr.join(" "))
            }
            Err(e) => format!("status unavailable: {e}"),
        }
    }
}

impl CardConnection {
    /// Sends one APDU, returns the response (data and status word).
    pub fn transmit(&self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let r = self.card.transmit(apdu, &mut buf).map_err(map)?;
        Ok(r.to_vec())
    }
}
