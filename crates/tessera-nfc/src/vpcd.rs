//! The virtual card behind pcscd's `vpcd` driver (vsmartcard): a TCP client that answers vpcd's
//! control bytes and APDUs with the [`crate::card::Card`] logic, keeping the card's state
//! in a file (mode 0600: it holds the card's keys, as a real card's memory does).
//!
//! Wire format (`docs/ntag424.md` §virtual card): every message both ways is `u16 length (big
//! endian) || payload`; a 1-byte payload from vpcd is a control: 0 power off, 1 power on,
//! 2 reset, 4 get ATR. Connecting is inserting the card; closing the socket is removing it.
// The crate's clippy.toml keeps the clock and RNGs out of `protocol` and `card`; the vpcd socket is I/O: it supplies the card its random numbers.
#![allow(clippy::disallowed_methods)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use rand::RngCore as _;

use crate::card::{Card, CardState};

/// The ATR an NTAG 424 DNA gets from a PC/SC reader (`3B 81 80 01 80 80`; see [`atr_from_ats`]).
pub const ATR: [u8; 6] = [0x3B, 0x81, 0x80, 0x01, 0x80, 0x80];
/// The NTAG 424 DNA's ATS (without CRC).
pub const ATS: [u8; 6] = [0x06, 0x77, 0x77, 0x71, 0x02, 0x80];

/// The ATR a PC/SC reader builds for an ISO 14443-4 card from its ATS (PC/SC part 3):
/// `3B 8n 80 01 <historical bytes> TCK`, TCK the XOR of T0 up to the last historical byte.
pub fn atr_from_ats(ats: &[u8]) -> Option<Vec<u8>> {
    let tl = usize::from(*ats.first()?);
    if tl != ats.len() || tl < 2 {
        return None;
    }
    let t0 = ats[1];
    // TA, TB, TC present per T0 bits 5, 6, 7; the historical bytes follow.
    let interface = [0x10u8, 0x20, 0x40]
        .iter()
        .filter(|b| t0 & **b != 0)
        .count();
    let historical = ats.get(2 + interface..)?;
    if historical.len() > 15 {
        return None;
    }
    let mut atr = vec![0x3B, 0x80 | historical.len() as u8, 0x80, 0x01];
    atr.extend_from_slice(historical);
    let tck = atr[1..].iter().fold(0u8, |a, b| a ^ b);
    atr.push(tck);
    Some(atr)
}

/// What the card answers to one message from vpcd (its payload, length prefix removed):
/// `None` for the power and reset controls, the ATR for "get ATR", the R-APDU for an APDU.
pub fn answer(
    card: &mut Card,
    message: &[u8],
    random: &mut dyn FnMut() -> [u8; 16],
) -> Option<Vec<u8>> {
    match message {
        [0] | [1] | [2] => {
            card.reset();
            None
        }
        [4] => Some(ATR.to_vec()),
        [_] | [] => None,
        apdu => Some(card.process(apdu, random)),
    }
}

/// `payload` framed for the vpcd socket: `u16 length (big endian) || payload`.
pub fn frame(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let len =
        u16::try_from(payload.len()).map_err(|_| std::io::Error::other("message too long"))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    Ok(out)
}
/// vpcd's default port for its first slot.
pub const DEFAULT_PORT: u16 = 35963;

/// Why the virtual card stopped.
#[derive(Debug, thiserror::Error)]
pub enum VpcdError {
    /// The connection to vpcd failed or closed.
    #[error("vpcd connection: {0}")]
    Io(#[from] std::io::Error),
    /// The state file is unreadable or damaged.
    #[error("card state file {path}: {message}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Loads the state file, or creates a factory card (random UID) if there is none.
pub fn load_or_create(path: &Path) -> Result<CardState, VpcdError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| VpcdError::State {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut uid = [0u8; 7];
            rand::rng().fill_bytes(&mut uid);
            uid[0] = 0x04; // NXP
            let state = CardState::factory(uid);
            save(path, &state)?;
            Ok(state)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes the state file atomically, readable by the owner only.
pub fn save(path: &Path, state: &CardState) -> Result<(), VpcdError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| VpcdError::State {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn quick_ack(s: &TcpStream) {
    // Linux turns quick ACKs off again by itself: set it before every read.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = s;
}

fn read_message(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    quick_ack(s);
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    quick_ack(s);
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_message(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    s.write_all(&frame(payload)?)
}

/// Inserts the card into the vpcd reader at `addr` and serves it until vpcd closes the
/// connection (or `removed` returns true between messages). The state file is rewritten after
/// every command that changed the card.
pub fn serve(addr: &str, state_path: &Path, removed: &dyn Fn() -> bool) -> Result<(), VpcdError> {
    let mut card = Card::new(load_or_create(state_path)?);
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
    let mut rng = rand::rng();
    loop {
        if removed() {
            return Ok(());
        }
        let msg = match read_message(&mut stream) {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let before = card.state.clone();
        let reply = answer(&mut card, &msg, &mut || {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            b
        });
        if card.state != before {
            save(state_path, &card.state)?;
        }
        if let Some(reply) = reply {
            write_message(&mut stream, &reply)?;
        }
    }
}
