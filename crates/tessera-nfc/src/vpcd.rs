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

/// Reassembles vpcd's messages from the bytes the socket delivers, however they are split.
///
/// vpcd writes a message's length and its payload with two `send` calls, so the payload can
/// arrive well after the length (a delayed ACK holds it back for up to 200 ms). The socket is
/// read with a timeout (to notice a removal request), so bytes received before a timeout must
/// be kept: reading the length, timing out, and then reading the payload as the next length
/// desynchronised the stream, vpcd waited for an answer forever, and the card never appeared.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// Adds bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message (its payload), if one has arrived.
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        let len = usize::from(u16::from_be_bytes([*self.buf.first()?, *self.buf.get(1)?]));
        if self.buf.len() < 2 + len {
            return None;
        }
        let message = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Some(message)
    }
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
    let mut framer = Framer::default();
    let mut chunk = [0u8; 4096];
    loop {
        if removed() {
            return Ok(());
        }
        let Some(msg) = framer.next_message() else {
            quick_ack(&stream);
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => framer.push(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_framer_reassembles_messages_split_anywhere() {
        let stream = [
            frame(&[4]).unwrap(),
            frame(&[0x00, 0xA4, 0x04, 0x0C, 0x01, 0xD2]).unwrap(),
            frame(&[1]).unwrap(),
        ]
        .concat();
        for split in 0..stream.len() {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                // Byte by byte, as the slowest socket could deliver them.
                for b in part {
                    f.push(&[*b]);
                    while let Some(m) = f.next_message() {
                        got.push(m);
                    }
                }
            }
            assert_eq!(
                got,
                vec![vec![4], vec![0x00, 0xA4, 0x04, 0x0C, 0x01, 0xD2], vec![1]],
                "split at {split}"
            );
        }
    }

    /// Regression: vpcd's length arrived, the 200 ms read timeout passed, then its payload
    /// came; the payload was read as the next length and the card never answered.
    #[test]
    fn a_message_split_across_the_read_timeout_is_answered() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let dir = std::env::temp_dir().join(format!("tessera-vpcd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("card.json");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let card = {
            let stop = stop.clone();
            let state = state.clone();
            std::thread::spawn(move || {
                serve(&addr, &state, &|| {
                    stop.load(std::sync::atomic::Ordering::SeqCst)
                })
            })
        };
        let (mut vpcd, _) = listener.accept().unwrap();
        vpcd.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        // "Get ATR": the length, a pause longer than the card's read timeout, the payload.
        vpcd.write_all(&[0x00, 0x01]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(450));
        vpcd.write_all(&[0x04]).unwrap();
        let mut reply = [0u8; 2 + ATR.len()];
        vpcd.read_exact(&mut reply).unwrap();
        assert_eq!(reply[2..], ATR);
        // The stream is still in step: an APDU split the same way is answered too.
        let select = frame(&crate::protocol::apdu::select_ndef_application()).unwrap();
        vpcd.write_all(&select[..3]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(450));
        vpcd.write_all(&select[3..]).unwrap();
        let mut reply = [0u8; 4];
        vpcd.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [0x00, 0x02, 0x90, 0x00]);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        card.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
