//! The virtual card behind pcscd's `vpcd` driver (vsmartcard): a TCP client that answers vpcd's
//! control bytes and APDUs with the [`crate::card::Card`] logic, keeping the card's state
//! in a file that is sealed with a key kept in the OS keyring ([`StateKeys`]) and mode 0600: it
//! holds the card's keys and secret, as a real card's memory does, and never in plaintext.
//!
//! Wire format (`docs/ntag424.md` §virtual card): every message both ways is `u16 length (big
//! endian) || payload`; a 1-byte payload from vpcd is a control: 0 power off, 1 power on,
//! 2 reset, 4 get ATR. Connecting is inserting the card; closing the socket is removing it.
// The crate's clippy.toml keeps the clock and RNGs out of `protocol` and `card`; the vpcd socket is I/O: it supplies the card its random numbers.
#![allow(clippy::disallowed_methods)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use zeroize::Zeroizing;

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

/// Where the keys of virtual-card state files live: the OS keyring in `tessera-cli` (a real
/// card keeps its keys in its own chip; the keyring is the closest thing a computer has), memory
/// in tests. Entries are named `vcard-<file id hex>`.
pub trait StateKeys {
    /// The key named `name`, if there is one.
    fn get(&self, name: &str) -> Result<Option<Zeroizing<[u8; 32]>>, String>;
    /// Stores the key named `name`.
    fn put(&self, name: &str, key: &[u8; 32]) -> Result<(), String>;
}

/// State-file keys held in memory only: for tests and benchmarks whose card lives no longer than
/// the process (its state file cannot be opened afterwards).
#[derive(Default)]
pub struct MemoryStateKeys(
    std::sync::Mutex<std::collections::HashMap<String, Zeroizing<[u8; 32]>>>,
);

impl StateKeys for MemoryStateKeys {
    fn get(&self, name: &str) -> Result<Option<Zeroizing<[u8; 32]>>, String> {
        let keys = self
            .0
            .lock()
            .map_err(|_| "key store poisoned".to_string())?;
        Ok(keys.get(name).cloned())
    }
    fn put(&self, name: &str, key: &[u8; 32]) -> Result<(), String> {
        let mut keys = self
            .0
            .lock()
            .map_err(|_| "key store poisoned".to_string())?;
        keys.insert(name.into(), Zeroizing::new(*key));
        Ok(())
    }
}

/// A card state file opened with its key: the state, and what [`save`] needs to seal it again.
pub struct StateFile {
    /// The card's state.
    pub state: CardState,
    id: [u8; 16],
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for StateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateFile")
            .field("uid", &self.state.uid)
            .finish_non_exhaustive()
    }
}

/// The state file's header: magic, version, file id (names the key), nonce.
const MAGIC: &[u8; 4] = b"TSVC";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 16 + 24;

fn key_name(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("vcard-{hex}")
}

fn state_error(path: &Path, message: impl Into<String>) -> VpcdError {
    VpcdError::State {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Opens the state file with its key from `keys`, or creates a factory card (random UID) and a
/// key for it if there is no file. The file is `TSVC || version || id (16) || nonce (24) ||
/// XChaCha20-Poly1305(JSON state)` with the header as associated data, so the card's keys and
/// its secret are never written in plaintext. A plaintext file from an earlier version is read
/// once and sealed in place.
pub fn load_or_create(path: &Path, keys: &dyn StateKeys) -> Result<StateFile, VpcdError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut uid = [0u8; 7];
            rand::rng().fill_bytes(&mut uid);
            uid[0] = 0x04; // NXP
            let file = new_file(path, CardState::factory(uid), keys)?;
            save(path, &file)?;
            return Ok(file);
        }
        Err(e) => return Err(e.into()),
    };
    if bytes.first() == Some(&b'{') {
        let state = serde_json::from_slice(&bytes).map_err(|e| state_error(path, e.to_string()))?;
        let file = new_file(path, state, keys)?;
        save(path, &file)?;
        return Ok(file);
    }
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(state_error(path, "not a virtual card state file"));
    }
    let (header, sealed) = bytes.split_at(HEADER_LEN);
    let mut id = [0u8; 16];
    id.copy_from_slice(&header[5..21]);
    let key = keys
        .get(&key_name(&id))
        .map_err(|e| state_error(path, format!("keyring: {e}")))?
        .ok_or_else(|| state_error(path, "its key is not in this keyring"))?;
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(Key::from_slice(&key[..]))
            .decrypt(
                XNonce::from_slice(&header[21..]),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| state_error(path, "damaged, or sealed with another key"))?,
    );
    let state = serde_json::from_slice(&plain).map_err(|e| state_error(path, e.to_string()))?;
    Ok(StateFile { state, id, key })
}

fn new_file(path: &Path, state: CardState, keys: &dyn StateKeys) -> Result<StateFile, VpcdError> {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut key[..]);
    keys.put(&key_name(&id), &key)
        .map_err(|e| state_error(path, format!("keyring: {e}")))?;
    Ok(StateFile { state, id, key })
}

/// Seals the state with a fresh nonce and writes the file atomically, readable by the owner only.
pub fn save(path: &Path, file: &StateFile) -> Result<(), VpcdError> {
    let plain = Zeroizing::new(
        serde_json::to_vec(&file.state).map_err(|e| state_error(path, e.to_string()))?,
    );
    let mut bytes = Vec::with_capacity(HEADER_LEN + plain.len() + 16);
    bytes.extend_from_slice(MAGIC);
    bytes.push(VERSION);
    bytes.extend_from_slice(&file.id);
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    bytes.extend_from_slice(&nonce);
    let sealed = XChaCha20Poly1305::new(Key::from_slice(&file.key[..]))
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &bytes,
            },
        )
        .map_err(|_| state_error(path, "cannot seal the state"))?;
    bytes.extend_from_slice(&sealed);
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
pub fn serve(
    addr: &str,
    state_path: &Path,
    keys: &dyn StateKeys,
    removed: &dyn Fn() -> bool,
) -> Result<(), VpcdError> {
    serve_with(addr, state_path, keys, removed, PullAt::Never).map(drop)
}

/// A moment at which the virtual card leaves the reader by itself, to test what a card taken
/// away in the middle of a write does (`tessera-cli card sim --pull-at`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullAt {
    /// Never.
    #[default]
    Never,
    /// During the first command that changes the secret file (file 3): only the first half of
    /// the bytes it changes are written (a torn write), the command fails (`91 EE`, memory
    /// error), and the card is gone.
    SecretWriteTorn,
    /// Right after the first command that changes the secret file: the write is whole, but the
    /// command fails (`91 EE`) as if the answer was lost, and the card is gone.
    SecretWritten,
}

/// How [`serve_with`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// vpcd closed the connection, or `removed` said so.
    Closed,
    /// The card left at the moment [`PullAt`] chose.
    Pulled,
}

fn secret_file(state: &CardState) -> Option<&[u8]> {
    state
        .files
        .iter()
        .find(|f| f.no == crate::tag::SECRET_FILE)
        .map(|f| f.data.as_slice())
}

/// `after`'s secret file with the second half of the bytes that differ from `before`'s put
/// back: what a write cut off half way leaves.
fn tear(before: &CardState, after: &mut CardState) {
    let Some(old) = secret_file(before).map(<[u8]>::to_vec) else {
        return;
    };
    let Some(file) = after
        .files
        .iter_mut()
        .find(|f| f.no == crate::tag::SECRET_FILE)
    else {
        return;
    };
    let changed: Vec<usize> = (0..file.data.len().min(old.len()))
        .filter(|&i| file.data[i] != old[i])
        .collect();
    for &i in &changed[changed.len() / 2..] {
        file.data[i] = old[i];
    }
}

/// [`serve`], leaving the reader at the moment `pull` names.
pub fn serve_with(
    addr: &str,
    state_path: &Path,
    keys: &dyn StateKeys,
    removed: &dyn Fn() -> bool,
    pull: PullAt,
) -> Result<Served, VpcdError> {
    let mut file = load_or_create(state_path, keys)?;
    let mut card = Card::new(file.state.clone());
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
    let mut rng = rand::rng();
    let mut framer = Framer::default();
    let mut chunk = [0u8; 4096];
    // Once pulled: the card is gone when vpcd's own messages for the failed command (power,
    // reset) have been answered; closing in the middle of an exchange leaves vpcd waiting.
    let mut pulled: Option<std::time::Instant> = None;
    loop {
        if removed() {
            return Ok(Served::Closed);
        }
        if pulled.is_some_and(|at| at.elapsed() > std::time::Duration::from_millis(500)) {
            return Ok(Served::Pulled);
        }
        let Some(msg) = framer.next_message() else {
            quick_ack(&stream);
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(Served::Closed),
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
        if pulled.is_some() {
            // Gone: nothing more reaches the state file.
            card.state = before;
        } else if card.state != before {
            let secret_changed = secret_file(&card.state) != secret_file(&before);
            if secret_changed && pull != PullAt::Never {
                if pull == PullAt::SecretWriteTorn {
                    tear(&before, &mut card.state);
                }
                file.state = card.state.clone();
                save(state_path, &file)?;
                pulled = Some(std::time::Instant::now());
                write_message(&mut stream, &[0x91, 0xEE])?;
                continue;
            }
            file.state = card.state.clone();
            save(state_path, &file)?;
        }
        if let Some(reply) = reply {
            write_message(&mut stream, &reply)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Review finding: the virtual card's state file (its five keys and the card secret) was
    /// written as plaintext JSON. It is sealed now, under a key kept in the keyring.
    #[test]
    fn the_development_card_secret_is_never_written_in_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let keys = MemoryStateKeys::default();
        let mut file = load_or_create(&path, &keys).unwrap();
        let secret = [0xA5u8; 32];
        file.state.keys[2] = [0x5A; 16];
        file.state.files[2].data[..32].copy_from_slice(&secret);
        save(&path, &file).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], MAGIC);
        assert!(!contains(&bytes, &secret), "the card secret is in the file");
        assert!(!contains(&bytes, &[0x5A; 16]), "a card key is in the file");
        assert!(!contains(&bytes, b"keys") && !contains(&bytes, b"165"));
        let again = load_or_create(&path, &keys).unwrap();
        assert_eq!(again.state, file.state);

        // Without its key (another keyring), or damaged: a typed error, never a new card.
        let other = MemoryStateKeys::default();
        assert!(matches!(
            load_or_create(&path, &other),
            Err(VpcdError::State { .. })
        ));
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(
            load_or_create(&path, &keys),
            Err(VpcdError::State { .. })
        ));

        // A plaintext file from before is taken in and sealed in place.
        let legacy = dir.path().join("old.json");
        std::fs::write(&legacy, serde_json::to_vec(&file.state).unwrap()).unwrap();
        let taken = load_or_create(&legacy, &keys).unwrap();
        assert_eq!(taken.state, file.state);
        let sealed = std::fs::read(&legacy).unwrap();
        assert!(sealed.starts_with(MAGIC) && !contains(&sealed, &secret));
    }

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
                serve(&addr, &state, &MemoryStateKeys::default(), &|| {
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
