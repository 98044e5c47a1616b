//! The card side of the protocol: an NTAG 424 DNA as a state machine (APDU in, R-APDU out, no
//! I/O; randomness passed in). The virtual card for pcscd's vpcd driver is this plus a socket.
//!
//! Implemented: ISOSelectFile (NDEF application), AuthenticateEV2First/NonFirst, ReadData and
//! WriteData in each file's communication mode with its access rights, ISOReadBinary of the NDEF
//! file, GetFileSettings, ChangeFileSettings (with SDM), ChangeKey (both cases), GetCardUID,
//! and SDM mirroring (encrypted PICC data + SDMMAC) with a read counter.

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::protocol::apdu::Status;
use crate::protocol::auth::session_keys;
use crate::protocol::crypto::{
    Key, cbc_decrypt, cbc_encrypt, crc32nk, encrypt_block, mact, pad, unpad,
};
use crate::protocol::sdm;
use crate::protocol::session::CommMode;

/// Access condition value meaning "free".
pub const FREE: u8 = 0xE;
/// Access condition value meaning "never".
pub const NEVER: u8 = 0xF;

/// SDM configuration of the NDEF file (encrypted PICC data + SDMMAC only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SdmSettings {
    /// SDMOptions byte.
    pub options: u8,
    /// SDMCtrRet access key.
    pub ctr_ret: u8,
    /// SDMMetaRead key (0–4: encrypted PICC data).
    pub meta_read: u8,
    /// SDMFileRead key (0–4: SDMMAC).
    pub file_read: u8,
    /// Where the encrypted PICC data (32 hex characters) is mirrored.
    pub picc_offset: usize,
    /// Where the MAC input starts.
    pub mac_input_offset: usize,
    /// Where the SDMMAC (16 hex characters) is mirrored.
    pub mac_offset: usize,
}

/// A file's settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSettings {
    /// Communication mode.
    pub comm: CommMode,
    /// Read key (0–4, `FREE`, `NEVER`).
    pub read: u8,
    /// Write key.
    pub write: u8,
    /// Read-and-write key.
    pub read_write: u8,
    /// Key needed to change the settings.
    pub change: u8,
    /// SDM, if enabled.
    pub sdm: Option<SdmSettings>,
}

impl FileSettings {
    fn option_byte(&self) -> u8 {
        let comm = match self.comm {
            CommMode::Plain => 0,
            CommMode::Mac => 1,
            CommMode::Full => 3,
        };
        comm | if self.sdm.is_some() { 0x40 } else { 0 }
    }

    fn access_bytes(&self) -> [u8; 2] {
        [
            (self.read_write << 4) | self.change,
            (self.read << 4) | self.write,
        ]
    }
}

/// A file and its contents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct File {
    /// File number (1–3).
    pub no: u8,
    /// Contents (fixed size).
    pub data: Vec<u8>,
    /// Settings.
    pub settings: FileSettings,
}

/// Everything a card remembers across power cycles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CardState {
    /// 7-byte UID.
    pub uid: [u8; 7],
    /// The five application keys.
    pub keys: [Key; 5],
    /// Their versions.
    pub key_versions: [u8; 5],
    /// Files 1 (CC), 2 (NDEF), 3 (proprietary).
    pub files: Vec<File>,
    /// SDMReadCtr.
    pub sdm_counter: u32,
}

impl CardState {
    /// A card as it leaves the factory: all keys zero, the datasheet's default files.
    pub fn factory(uid: [u8; 7]) -> Self {
        let settings = |comm, rw, change, read, write| FileSettings {
            comm,
            read,
            write,
            read_write: rw,
            change,
            sdm: None,
        };
        let mut cc = vec![0u8; 32];
        cc[..23].copy_from_slice(&[
            0x00, 0x17, 0x20, 0x01, 0x00, 0x00, 0xFF, 0x04, 0x06, 0xE1, 0x04, 0x01, 0x00, 0x00,
            0x00, 0x05, 0x06, 0xE1, 0x05, 0x00, 0x80, 0x82, 0x83,
        ]);
        Self {
            uid,
            keys: [[0; 16]; 5],
            key_versions: [0; 5],
            files: vec![
                File {
                    no: 1,
                    data: cc,
                    settings: settings(CommMode::Plain, 0, 0, FREE, 0),
                },
                File {
                    no: 2,
                    data: vec![0; 256],
                    settings: settings(CommMode::Plain, FREE, 0, FREE, FREE),
                },
                File {
                    no: 3,
                    data: vec![0; 128],
                    settings: settings(CommMode::Full, 3, 0, 2, 3),
                },
            ],
            sdm_counter: 0,
        }
    }
}

enum Auth {
    None,
    Challenged {
        key_no: u8,
        rnd_b: [u8; 16],
        kept: Option<([u8; 4], u16)>,
    },
    Session {
        key_no: u8,
        ti: [u8; 4],
        ctr: u16,
        enc: Zeroizing<Key>,
        mac: Zeroizing<Key>,
    },
}

/// A card: persistent state plus the volatile session.
pub struct Card {
    /// Persistent state (save it after every command that changed it).
    pub state: CardState,
    selected: bool,
    auth: Auth,
}

fn sw(status: Status) -> Vec<u8> {
    status.to_sw().to_vec()
}

fn u24(b: &[u8]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16
}

fn hex_upper(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .flat_map(|b| {
            let d = b"0123456789ABCDEF";
            [d[usize::from(b >> 4)], d[usize::from(b & 15)]]
        })
        .collect()
}

impl Card {
    /// A powered card (no application selected, not authenticated).
    pub fn new(state: CardState) -> Self {
        Self {
            state,
            selected: false,
            auth: Auth::None,
        }
    }

    /// Power off / removal: the session is gone.
    pub fn reset(&mut self) {
        self.selected = false;
        self.auth = Auth::None;
    }

    /// Processes one C-APDU. `random` supplies the card's random numbers (RndB, TI, PICC data
    /// padding).
    pub fn process(&mut self, apdu: &[u8], random: &mut dyn FnMut() -> [u8; 16]) -> Vec<u8> {
        if apdu.len() >= 4 && apdu[0] == 0x00 && apdu[1] == 0xA4 {
            let ndef = [0xD2, 0x76, 0x00, 0x00, 0x85, 0x01, 0x01];
            self.auth = Auth::None;
            self.selected = apdu.len() >= 12 && apdu[2] == 0x04 && apdu[5..12] == ndef;
            return sw(if self.selected {
                Status::Ok
            } else {
                Status::IsoNotFound
            })
            .iter()
            .map(|b| if *b == 0x91 { 0x90 } else { *b })
            .collect();
        }
        if apdu.len() >= 4 && apdu[..4] == [0xFF, 0xCA, 0x00, 0x00] {
            // The reader's GET DATA (UID) pseudo-APDU: vpcd has no reader firmware, so the
            // virtual card answers it as a PC/SC reader would.
            let mut out = self.state.uid.to_vec();
            out.extend([0x90, 0x00]);
            return out;
        }
        if apdu.len() >= 4 && apdu[0] == 0x00 && apdu[1] == 0xB0 {
            // ISOReadBinary of the NDEF file (plain, free read only).
            return self.iso_read_ndef(random);
        }
        if apdu.len() < 5 || apdu[0] != 0x90 || apdu[2] != 0 || apdu[3] != 0 {
            return vec![0x6E, 0x00];
        }
        let ins = apdu[1];
        let data: &[u8] = if apdu.len() > 5 {
            let lc = usize::from(apdu[4]);
            match apdu.get(5..5 + lc) {
                Some(d) if apdu.len() == 6 + lc => d,
                _ => return sw(Status::LengthError),
            }
        } else {
            &[]
        };
        if !self.selected && ins != 0x60 {
            return sw(Status::PermissionDenied);
        }
        match ins {
            0x71 | 0x77 => self.auth_start(ins, data, random),
            0xAF => self.auth_finish(data, random),
            0xAD | 0x8D | 0xF5 | 0x5F | 0xC4 | 0x51 => self.file_command(ins, data, random),
            _ => sw(Status::IllegalCommand),
        }
    }

    fn auth_start(
        &mut self,
        ins: u8,
        data: &[u8],
        random: &mut dyn FnMut() -> [u8; 16],
    ) -> Vec<u8> {
        let Some(&key_no) = data.first() else {
            return sw(Status::LengthError);
        };
        if usize::from(key_no) >= 5 {
            return sw(Status::NoSuchKey);
        }
        let kept = match (&self.auth, ins) {
            (Auth::Session { ti, ctr, .. }, 0x77) => Some((*ti, *ctr)),
            (_, 0x77) => return sw(Status::AuthenticationError),
            _ => None,
        };
        let rnd_b = random();
        let key = self.state.keys[usize::from(key_no)];
        let Ok(enc) = cbc_encrypt(&key, &[0; 16], &rnd_b) else {
            return sw(Status::MemoryError);
        };
        self.auth = Auth::Challenged {
            key_no,
            rnd_b,
            kept,
        };
        let mut out = enc;
        out.extend(Status::AdditionalFrame.to_sw());
        out
    }

    fn auth_finish(&mut self, data: &[u8], random: &mut dyn FnMut() -> [u8; 16]) -> Vec<u8> {
        let Auth::Challenged {
            key_no,
            rnd_b,
            kept,
        } = std::mem::replace(&mut self.auth, Auth::None)
        else {
            return sw(Status::AuthenticationError);
        };
        let key = self.state.keys[usize::from(key_no)];
        if data.len() != 32 {
            return sw(Status::LengthError);
        }
        let Ok(plain) = cbc_decrypt(&key, &[0; 16], data) else {
            return sw(Status::AuthenticationError);
        };
        let mut rot_b = [0u8; 16];
        rot_b[..15].copy_from_slice(&rnd_b[1..]);
        rot_b[15] = rnd_b[0];
        if !bool::from(plain[16..].ct_eq(&rot_b)) {
            return sw(Status::AuthenticationError);
        }
        let mut rnd_a = [0u8; 16];
        rnd_a.copy_from_slice(&plain[..16]);
        let mut rot_a = [0u8; 16];
        rot_a[..15].copy_from_slice(&rnd_a[1..]);
        rot_a[15] = rnd_a[0];
        let (enc, mac) = session_keys(&key, &rnd_a, &rnd_b);
        let (ti, ctr, reply) = match kept {
            None => {
                let r = random();
                let ti = [r[0], r[1], r[2], r[3]];
                let mut p = ti.to_vec();
                p.extend_from_slice(&rot_a);
                p.extend_from_slice(&[0; 12]);
                (ti, 0, p)
            }
            Some((ti, ctr)) => (ti, ctr, rot_a.to_vec()),
        };
        let Ok(mut out) = cbc_encrypt(&key, &[0; 16], &reply) else {
            return sw(Status::MemoryError);
        };
        self.auth = Auth::Session {
            key_no,
            ti,
            ctr,
            enc,
            mac,
        };
        out.extend(Status::Ok.to_sw());
        out
    }

    fn iso_read_ndef(&mut self, random: &mut dyn FnMut() -> [u8; 16]) -> Vec<u8> {
        let Some(file) = self.state.files.iter().find(|f| f.no == 2) else {
            return vec![0x6A, 0x82];
        };
        if file.settings.read != FREE && file.settings.read_write != FREE {
            return vec![0x69, 0x82];
        }
        let mut out = self.mirrored(2, random);
        out.extend([0x90, 0x00]);
        out
    }

    /// File contents as a reader sees them: with SDM mirrors filled in (and the counter
    /// incremented) for the NDEF file.
    fn mirrored(&mut self, no: u8, random: &mut dyn FnMut() -> [u8; 16]) -> Vec<u8> {
        let Some(file) = self.state.files.iter().find(|f| f.no == no) else {
            return Vec::new();
        };
        let mut data = file.data.clone();
        let Some(sdm) = file.settings.sdm.clone() else {
            return data;
        };
        self.state.sdm_counter = (self.state.sdm_counter + 1) & 0xFF_FFFF;
        let ctr = self.state.sdm_counter;
        let (Some(meta), Some(file_key)) = (
            self.state.keys.get(usize::from(sdm.meta_read)),
            self.state.keys.get(usize::from(sdm.file_read)),
        ) else {
            return data;
        };
        let mut picc = random();
        picc[0] = 0xC7;
        picc[1..8].copy_from_slice(&self.state.uid);
        picc[8..11].copy_from_slice(&ctr.to_le_bytes()[..3]);
        if let Ok(enc) = cbc_encrypt(meta, &[0; 16], &picc)
            && let Some(slot) = data.get_mut(sdm.picc_offset..sdm.picc_offset + 32)
        {
            slot.copy_from_slice(&hex_upper(&enc));
        }
        let input = data
            .get(sdm.mac_input_offset..sdm.mac_offset)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let mac = sdm::sdm_mac(file_key, &self.state.uid, ctr, &input);
        if let Some(slot) = data.get_mut(sdm.mac_offset..sdm.mac_offset + 16) {
            slot.copy_from_slice(&hex_upper(&mac));
        }
        data
    }

    /// Commands on files and keys, with secure messaging when the mode asks for it.
    fn file_command(
        &mut self,
        ins: u8,
        data: &[u8],
        random: &mut dyn FnMut() -> [u8; 16],
    ) -> Vec<u8> {
        let header_len = match ins {
            0xAD | 0x8D => 7,
            0xF5 | 0x5F | 0xC4 => 1,
            _ => 0,
        };
        if data.len() < header_len {
            return sw(Status::LengthError);
        }
        let (header, rest) = data.split_at(header_len);
        let file_no = header.first().copied().unwrap_or(0);
        let file = self.state.files.iter().find(|f| f.no == file_no).cloned();
        // Which key the command needs and in which mode it travels.
        let (needed, mode): (Option<u8>, CommMode) = match ins {
            0xAD | 0x8D => {
                let Some(f) = &file else {
                    return sw(Status::FileNotFound);
                };
                let s = &f.settings;
                let keys = if ins == 0xAD {
                    [s.read, s.read_write]
                } else {
                    [s.write, s.read_write]
                };
                if keys.contains(&FREE) {
                    (None, CommMode::Plain)
                } else {
                    let authed = match &self.auth {
                        Auth::Session { key_no, .. } => Some(*key_no),
                        _ => None,
                    };
                    match keys.iter().find(|k| Some(**k) == authed) {
                        Some(k) => (Some(*k), s.comm),
                        None => return sw(Status::PermissionDenied),
                    }
                }
            }
            0xF5 => (
                None,
                if matches!(self.auth, Auth::Session { .. }) {
                    CommMode::Mac
                } else {
                    CommMode::Plain
                },
            ),
            0x5F => {
                let Some(f) = &file else {
                    return sw(Status::FileNotFound);
                };
                (Some(f.settings.change), CommMode::Full)
            }
            0xC4 | 0x51 => (Some(0), CommMode::Full),
            _ => return sw(Status::IllegalCommand),
        };
        // ChangeKey needs the master key; GetCardUID any authenticated key.
        let session = match (&self.auth, needed) {
            (
                Auth::Session {
                    key_no,
                    ti,
                    ctr,
                    enc,
                    mac,
                },
                Some(k),
            ) => {
                if ins != 0x51 && *key_no != k {
                    return sw(Status::PermissionDenied);
                }
                Some((*key_no, *ti, *ctr, enc.clone(), mac.clone()))
            }
            (_, Some(_)) => return sw(Status::AuthenticationError),
            (
                Auth::Session {
                    key_no,
                    ti,
                    ctr,
                    enc,
                    mac,
                },
                None,
            ) => Some((*key_no, *ti, *ctr, enc.clone(), mac.clone())),
            (_, None) => None,
        };
        // Unwrap the command.
        let plain: Zeroizing<Vec<u8>> = match (&session, mode) {
            (Some((_, ti, ctr, enc, mac)), CommMode::Mac | CommMode::Full) => {
                if rest.len() < 8 {
                    return sw(Status::LengthError);
                }
                let (body, got) = rest.split_at(rest.len() - 8);
                let mut input = vec![ins];
                input.extend_from_slice(&ctr.to_le_bytes());
                input.extend_from_slice(ti);
                input.extend_from_slice(header);
                input.extend_from_slice(body);
                if !bool::from(mact(mac, &input).ct_eq(got)) {
                    self.auth = Auth::None;
                    return sw(Status::IntegrityError);
                }
                if mode == CommMode::Full && !body.is_empty() {
                    let mut ivb = [0u8; 16];
                    ivb[..2].copy_from_slice(&[0xA5, 0x5A]);
                    ivb[2..6].copy_from_slice(ti);
                    ivb[6..8].copy_from_slice(&ctr.to_le_bytes());
                    let iv = encrypt_block(enc, &ivb);
                    match cbc_decrypt(enc, &iv, body)
                        .ok()
                        .and_then(|p| unpad(&p).ok().map(<[u8]>::to_vec))
                    {
                        Some(p) => Zeroizing::new(p),
                        None => {
                            self.auth = Auth::None;
                            return sw(Status::IntegrityError);
                        }
                    }
                } else {
                    Zeroizing::new(body.to_vec())
                }
            }
            _ => Zeroizing::new(rest.to_vec()),
        };
        // Execute.
        let result: Result<Vec<u8>, Status> = match ins {
            0xAD => {
                let (off, len) = (u24(&header[1..4]), u24(&header[4..7]));
                let contents = self.mirrored(file_no, random);
                let end = if len == 0 { contents.len() } else { off + len };
                contents
                    .get(off..end)
                    .map(<[u8]>::to_vec)
                    .ok_or(Status::BoundaryError)
            }
            0x8D => {
                let (off, len) = (u24(&header[1..4]), u24(&header[4..7]));
                match self.state.files.iter_mut().find(|f| f.no == file_no) {
                    Some(f) if len == plain.len() && off + len <= f.data.len() => {
                        f.data[off..off + len].copy_from_slice(&plain);
                        Ok(Vec::new())
                    }
                    Some(_) => Err(Status::BoundaryError),
                    None => Err(Status::FileNotFound),
                }
            }
            0xF5 => match &file {
                Some(f) => {
                    let mut out = vec![0x00, f.settings.option_byte()];
                    out.extend(f.settings.access_bytes());
                    out.extend(&(f.data.len() as u32).to_le_bytes()[..3]);
                    Ok(out)
                }
                None => Err(Status::FileNotFound),
            },
            0x5F => self.change_file_settings(file_no, &plain),
            0xC4 => self.change_key(file_no, &plain),
            0x51 => Ok(self.state.uid.to_vec()),
            _ => Err(Status::IllegalCommand),
        };
        let body = match result {
            Ok(b) => b,
            Err(status) => {
                self.auth = Auth::None;
                return sw(status);
            }
        };
        // ChangeKey of the authenticated key ends the session with a bare OK.
        if ins == 0xC4 && session.as_ref().is_some_and(|s| s.0 == file_no) {
            self.auth = Auth::None;
            return sw(Status::Ok);
        }
        // Wrap the response.
        let Some((_, ti, ctr, enc, mac)) = session else {
            let mut out = body;
            out.extend(Status::Ok.to_sw());
            return out;
        };
        let next = ctr.wrapping_add(1);
        if let Auth::Session { ctr, .. } = &mut self.auth {
            *ctr = next;
        }
        let mut out = match mode {
            CommMode::Full if !body.is_empty() => {
                let mut ivb = [0u8; 16];
                ivb[..2].copy_from_slice(&[0x5A, 0xA5]);
                ivb[2..6].copy_from_slice(&ti);
                ivb[6..8].copy_from_slice(&next.to_le_bytes());
                let iv = encrypt_block(&enc, &ivb);
                cbc_encrypt(&enc, &iv, &pad(&body)).unwrap_or_default()
            }
            _ => body,
        };
        if mode != CommMode::Plain {
            let mut input = vec![0x00];
            input.extend_from_slice(&next.to_le_bytes());
            input.extend_from_slice(&ti);
            input.extend_from_slice(&out);
            out.extend_from_slice(&mact(&mac, &input));
        }
        out.extend(Status::Ok.to_sw());
        out
    }

    fn change_file_settings(&mut self, no: u8, d: &[u8]) -> Result<Vec<u8>, Status> {
        if d.len() < 3 {
            return Err(Status::LengthError);
        }
        let comm = match d[0] & 3 {
            0 | 2 => CommMode::Plain,
            1 => CommMode::Mac,
            _ => CommMode::Full,
        };
        let mut s = FileSettings {
            comm,
            read_write: d[1] >> 4,
            change: d[1] & 15,
            read: d[2] >> 4,
            write: d[2] & 15,
            sdm: None,
        };
        if d[0] & 0x40 != 0 {
            // SDM with encrypted PICC data and SDMMAC (the configuration Tessera uses).
            if d.len() != 15 || no != 2 {
                return Err(Status::ParameterError);
            }
            let sdm = SdmSettings {
                options: d[3],
                ctr_ret: d[4] & 15,
                meta_read: d[5] >> 4,
                file_read: d[5] & 15,
                picc_offset: u24(&d[6..9]),
                mac_input_offset: u24(&d[9..12]),
                mac_offset: u24(&d[12..15]),
            };
            if sdm.meta_read > 4 || sdm.file_read > 4 || sdm.mac_input_offset > sdm.mac_offset {
                return Err(Status::ParameterError);
            }
            s.sdm = Some(sdm);
            self.state.sdm_counter = 0;
        }
        let f = self
            .state
            .files
            .iter_mut()
            .find(|f| f.no == no)
            .ok_or(Status::FileNotFound)?;
        f.settings = s;
        Ok(Vec::new())
    }

    fn change_key(&mut self, key_no: u8, d: &[u8]) -> Result<Vec<u8>, Status> {
        let k = usize::from(key_no);
        if k >= 5 {
            return Err(Status::NoSuchKey);
        }
        let authed = match &self.auth {
            Auth::Session { key_no, .. } => *key_no,
            _ => return Err(Status::AuthenticationError),
        };
        if key_no == authed {
            if d.len() != 17 {
                return Err(Status::LengthError);
            }
            self.state.keys[k].copy_from_slice(&d[..16]);
            self.state.key_versions[k] = d[16];
        } else {
            if d.len() != 21 {
                return Err(Status::LengthError);
            }
            let mut new = [0u8; 16];
            for (i, n) in new.iter_mut().enumerate() {
                *n = d[i] ^ self.state.keys[k][i];
            }
            if crc32nk(&new).to_le_bytes() != d[17..21] {
                return Err(Status::IntegrityError);
            }
            self.state.keys[k] = new;
            self.state.key_versions[k] = d[16];
        }
        Ok(Vec::new())
    }
}
