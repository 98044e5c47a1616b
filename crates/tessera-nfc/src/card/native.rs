//! The native commands (`90 INS 00 00 …`, datasheet §10.4–10.8) with EV2 secure messaging
//! (§9.1): authentication, GetVersion, Read_Sig, and the file and key commands.

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::state::{FREE, FileSettings, NEVER, u24};
use super::{Auth, Card, FRAME, Level, ReadKind, ReadRun, Sm, sw};
use crate::protocol::apdu::Status;
use crate::protocol::auth::session_keys;
use crate::protocol::crypto::{cbc_decrypt, cbc_encrypt, encrypt_block, mact, pad, unpad};
use crate::protocol::session::CommMode;

fn rotate_left(b: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..15].copy_from_slice(&b[1..]);
    out[15] = b[0];
    out
}

fn iv(sm: &Sm, label: [u8; 2], ctr: u16) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..2].copy_from_slice(&label);
    b[2..6].copy_from_slice(&sm.ti);
    b[6..8].copy_from_slice(&ctr.to_le_bytes());
    encrypt_block(&sm.enc, &b)
}

impl Card {
    /// The authenticated key, if a session is running.
    fn session_key(&self) -> Option<u8> {
        match &self.auth {
            Auth::Session(sm) => Some(sm.key_no),
            _ => None,
        }
    }

    /// A native command. Any refusal ends the session (the reader must authenticate again),
    /// as the datasheet's secure messaging requires of a failed command.
    pub(super) fn native(
        &mut self,
        ins: u8,
        data: &[u8],
        run: Option<ReadRun>,
        random: &mut dyn FnMut() -> [u8; 16],
    ) -> Vec<u8> {
        let result = match ins {
            0x71 | 0x77 => self.auth_start(ins, data, random),
            0xAF => self.auth_finish(data, random),
            0x60 => self.get_version(data),
            0x3C => self.read_sig(data),
            0xAD | 0x8D | 0xF5 | 0xF6 | 0x5F | 0xC4 | 0x64 | 0x51 if self.level != Level::App => {
                Err(Status::PermissionDenied)
            }
            0xAD => self.read_data(data, run, random),
            0x8D => self.write_data(data),
            0xF5 => self.get_file_settings(data),
            0xF6 => self.get_file_counters(data),
            0x5F => self.change_file_settings(data),
            0xC4 => self.change_key(data),
            0x64 => self.get_key_version(data),
            0x51 => self.get_card_uid(data),
            _ => Err(Status::IllegalCommand),
        };
        match result {
            Ok(out) => out,
            Err(status) => {
                self.auth = Auth::None;
                self.run = None;
                sw(status)
            }
        }
    }

    fn auth_start(
        &mut self,
        ins: u8,
        data: &[u8],
        random: &mut dyn FnMut() -> [u8; 16],
    ) -> Result<Vec<u8>, Status> {
        let Some(&key_byte) = data.first() else {
            return Err(Status::LengthError);
        };
        let mut pcd_cap = [0u8; 6];
        if ins == 0x71 {
            let len_cap = usize::from(*data.get(1).ok_or(Status::LengthError)?);
            if len_cap > 6 {
                return Err(Status::ParameterError);
            }
            let cap = data.get(2..).ok_or(Status::LengthError)?;
            if cap.len() != len_cap {
                return Err(Status::LengthError);
            }
            pcd_cap[..len_cap].copy_from_slice(cap);
        } else if data.len() != 1 {
            return Err(Status::LengthError);
        }
        if key_byte & 0xC0 != 0 {
            return Err(Status::ParameterError);
        }
        let key_no = key_byte & 0x3F;
        if usize::from(key_no) >= 5 || self.level != Level::App {
            return Err(Status::NoSuchKey);
        }
        let kept = match (&self.auth, ins) {
            (Auth::Session(sm), 0x77) => Some((sm.ti, sm.ctr)),
            (_, 0x77) => return Err(Status::AuthenticationError),
            _ => None,
        };
        let rnd_b = random();
        let key = self.state.keys[usize::from(key_no)];
        let mut out = cbc_encrypt(&key, &[0; 16], &rnd_b).map_err(|_| Status::MemoryError)?;
        self.auth = Auth::Challenged {
            key_no,
            rnd_b,
            kept,
            pcd_cap,
        };
        out.extend(Status::AdditionalFrame.to_sw());
        Ok(out)
    }

    fn auth_finish(
        &mut self,
        data: &[u8],
        random: &mut dyn FnMut() -> [u8; 16],
    ) -> Result<Vec<u8>, Status> {
        let Auth::Challenged {
            key_no,
            rnd_b,
            kept,
            pcd_cap,
        } = std::mem::replace(&mut self.auth, Auth::None)
        else {
            // Nothing to continue.
            return Err(Status::IllegalCommand);
        };
        if data.len() != 32 {
            return Err(Status::LengthError);
        }
        let key = self.state.keys[usize::from(key_no)];
        let plain = Zeroizing::new(
            cbc_decrypt(&key, &[0; 16], data).map_err(|_| Status::AuthenticationError)?,
        );
        if !bool::from(plain[16..].ct_eq(&rotate_left(&rnd_b))) {
            return Err(Status::AuthenticationError);
        }
        let mut rnd_a = [0u8; 16];
        rnd_a.copy_from_slice(&plain[..16]);
        let rot_a = rotate_left(&rnd_a);
        let (enc, mac) = session_keys(&key, &rnd_a, &rnd_b);
        let (ti, ctr, reply) = match kept {
            None => {
                let r = random();
                let ti = [r[0], r[1], r[2], r[3]];
                // TI ‖ RndA' ‖ PDcap2 (all zero: AES secure messaging) ‖ PCDcap2 as sent.
                let mut p = ti.to_vec();
                p.extend_from_slice(&rot_a);
                p.extend_from_slice(&[0; 6]);
                p.extend_from_slice(&pcd_cap);
                (ti, 0, p)
            }
            Some((ti, ctr)) => (ti, ctr, rot_a.to_vec()),
        };
        let mut out = cbc_encrypt(&key, &[0; 16], &reply).map_err(|_| Status::MemoryError)?;
        self.auth = Auth::Session(Sm {
            key_no,
            ti,
            ctr,
            enc,
            mac,
        });
        out.extend(Status::Ok.to_sw());
        Ok(out)
    }

    /// Checks a command's secure messaging in `mode` (`body` = data' ‖ MAC after the clear
    /// header) and returns its plain data. Outside a session everything is plain.
    fn open(
        &mut self,
        ins: u8,
        header: &[u8],
        body: &[u8],
        mode: CommMode,
    ) -> Result<Zeroizing<Vec<u8>>, Status> {
        let Auth::Session(sm) = &self.auth else {
            return Ok(Zeroizing::new(body.to_vec()));
        };
        if sm.ctr == 0xFFFF {
            return Err(Status::IntegrityError);
        }
        if mode == CommMode::Plain {
            return Ok(Zeroizing::new(body.to_vec()));
        }
        if body.len() < 8 {
            return Err(Status::LengthError);
        }
        let (data, got) = body.split_at(body.len() - 8);
        let mut input = vec![ins];
        input.extend_from_slice(&sm.ctr.to_le_bytes());
        input.extend_from_slice(&sm.ti);
        input.extend_from_slice(header);
        input.extend_from_slice(data);
        if !bool::from(mact(&sm.mac, &input).ct_eq(got)) {
            return Err(Status::IntegrityError);
        }
        if mode == CommMode::Full && !data.is_empty() {
            let plain = cbc_decrypt(&sm.enc, &iv(sm, [0xA5, 0x5A], sm.ctr), data)
                .map_err(|_| Status::IntegrityError)?;
            let plain = Zeroizing::new(plain);
            let unpadded = unpad(&plain).map_err(|_| Status::IntegrityError)?;
            return Ok(Zeroizing::new(unpadded.to_vec()));
        }
        Ok(Zeroizing::new(data.to_vec()))
    }

    /// The response data of a successful command in `mode`: in a session the counter advances
    /// and the data is encrypted (Full) and MACed with return code `rc` (MAC, Full).
    fn seal(&mut self, body: Vec<u8>, mode: CommMode, rc: u8) -> Vec<u8> {
        let Auth::Session(sm) = &mut self.auth else {
            return body;
        };
        sm.ctr = sm.ctr.wrapping_add(1);
        let sm = sm.clone();
        let mut out = match mode {
            CommMode::Full if !body.is_empty() => {
                cbc_encrypt(&sm.enc, &iv(&sm, [0x5A, 0xA5], sm.ctr), &pad(&body))
                    .unwrap_or_default()
            }
            _ => body,
        };
        if mode != CommMode::Plain {
            let mut input = vec![rc];
            input.extend_from_slice(&sm.ctr.to_le_bytes());
            input.extend_from_slice(&sm.ti);
            input.extend_from_slice(&out);
            out.extend_from_slice(&mact(&sm.mac, &input));
        }
        out
    }

    /// Response data as one frame with `91 00`, or chained with `91 AF` when longer.
    fn respond(&mut self, data: Vec<u8>) -> Vec<u8> {
        if data.len() > FRAME {
            return self.chained(data, &[]);
        }
        let mut out = data;
        out.extend(Status::Ok.to_sw());
        out
    }

    /// The mode a command with access rights `rights` runs in: plain if one is free, the
    /// file's mode if the session's key is one of them; otherwise refused
    /// (PERMISSION_DENIED when all are "never", AUTHENTICATION_ERROR otherwise).
    fn access(&self, rights: &[u8], comm: CommMode) -> Result<CommMode, Status> {
        if rights.contains(&FREE) {
            return Ok(CommMode::Plain);
        }
        match self.session_key() {
            Some(k) if rights.contains(&k) => Ok(comm),
            _ if rights.iter().all(|r| *r == NEVER) => Err(Status::PermissionDenied),
            _ => Err(Status::AuthenticationError),
        }
    }

    /// GetVersion (§10.5.2): hardware, software and production data in three frames; in a
    /// session the command carries a MAC and the last frame the MAC over all three.
    fn get_version(&mut self, data: &[u8]) -> Result<Vec<u8>, Status> {
        let mode = if self.authenticated() {
            CommMode::Mac
        } else {
            CommMode::Plain
        };
        if mode == CommMode::Plain && !data.is_empty() {
            return Err(Status::LengthError);
        }
        self.open(0x60, &[], data, mode)?;
        let v = &self.state.version;
        let mut all = v.hardware.to_vec();
        all.extend_from_slice(&v.software);
        all.extend_from_slice(&self.state.uid);
        all.extend_from_slice(&v.production);
        let all = self.seal(all, mode, 0x00);
        Ok(self.chained(all, &[7, 7]))
    }

    /// Read_Sig (§10.5, AN12196): the 56-byte originality signature with status `91 90`;
    /// encrypted (Full) in a session.
    fn read_sig(&mut self, data: &[u8]) -> Result<Vec<u8>, Status> {
        let mode = if self.authenticated() {
            CommMode::Full
        } else {
            CommMode::Plain
        };
        let Some((&address, rest)) = data.split_first() else {
            return Err(Status::LengthError);
        };
        if mode == CommMode::Plain && !rest.is_empty() {
            return Err(Status::LengthError);
        }
        self.open(0x3C, &[address], rest, mode)?;
        if address != 0 {
            return Err(Status::ParameterError);
        }
        let sig = self.state.signature.clone();
        let mut out = self.seal(sig, mode, 0x90);
        out.extend(Status::SignatureOk.to_sw());
        Ok(out)
    }

    /// The file a command's header names.
    fn file_of(&self, header: &[u8]) -> Result<super::File, Status> {
        let no = header.first().copied().ok_or(Status::LengthError)?;
        self.state.file(no).cloned().ok_or(Status::FileNotFound)
    }

    /// ReadData (§10.8.1): `FileNo ‖ Offset(3) ‖ Length(3)`, length 0 = to the end.
    fn read_data(
        &mut self,
        data: &[u8],
        run: Option<ReadRun>,
        random: &mut dyn FnMut() -> [u8; 16],
    ) -> Result<Vec<u8>, Status> {
        if data.len() < 7 {
            return Err(Status::LengthError);
        }
        let (header, body) = data.split_at(7);
        let file = self.file_of(header)?;
        let s = &file.settings;
        let sdm_read = s.sdm.as_ref().is_some_and(|d| d.file_read != NEVER);
        let mode = if !self.authenticated() && sdm_read {
            CommMode::Plain
        } else {
            self.access(&[s.read, s.read_write], s.comm)?
        };
        if !self.authenticated() && !body.is_empty() {
            return Err(Status::LengthError);
        }
        self.open(0xAD, header, body, mode)?;
        let (offset, len) = (u24(&header[1..4]), u24(&header[4..7]));
        let size = file.data.len();
        let end = if len == 0 { size } else { offset + len };
        if offset >= size || end > size {
            return Err(Status::BoundaryError);
        }
        let contents = if self.authenticated() {
            // Authenticated: the static data, no mirroring (§9.3.3).
            file.data.clone()
        } else {
            self.sdm_read(&file, ReadKind::Native, run, random)
                .map_err(|()| Status::PermissionDenied)?
        };
        let out = self.seal(contents[offset..end].to_vec(), mode, 0x00);
        Ok(self.respond(out))
    }

    /// WriteData (§10.8.2): `FileNo ‖ Offset(3) ‖ Length(3) ‖ Data`.
    fn write_data(&mut self, data: &[u8]) -> Result<Vec<u8>, Status> {
        if data.len() < 7 {
            return Err(Status::LengthError);
        }
        let (header, body) = data.split_at(7);
        let file = self.file_of(header)?;
        let s = &file.settings;
        let mode = self.access(&[s.write, s.read_write], s.comm)?;
        let plain = self.open(0x8D, header, body, mode)?;
        let (offset, len) = (u24(&header[1..4]), u24(&header[4..7]));
        if len == 0 || len != plain.len() {
            return Err(Status::LengthError);
        }
        if offset + len > file.data.len() {
            return Err(Status::BoundaryError);
        }
        if let Some(f) = self.state.files.iter_mut().find(|f| f.no == file.no) {
            f.data[offset..offset + len].copy_from_slice(&plain);
        }
        let out = self.seal(Vec::new(), mode, 0x00);
        Ok(self.respond(out))
    }

    fn session_mode(&self, mode: CommMode) -> CommMode {
        if self.authenticated() {
            mode
        } else {
            CommMode::Plain
        }
    }

    /// Opens a command whose data is one header byte, sent plain outside a session and with a
    /// MAC inside one (GetFileSettings, GetKeyVersion); returns the byte and the mode.
    fn open_mac_header(&mut self, ins: u8, data: &[u8]) -> Result<(u8, CommMode), Status> {
        let mode = self.session_mode(CommMode::Mac);
        let (header, body) = data.split_at(data.len().min(1));
        let Some(&byte) = header.first() else {
            return Err(Status::LengthError);
        };
        if mode == CommMode::Plain && !body.is_empty() {
            return Err(Status::LengthError);
        }
        self.open(ins, header, body, mode)?;
        Ok((byte, mode))
    }

    /// GetFileSettings (§10.7.2): MAC in a session.
    fn get_file_settings(&mut self, data: &[u8]) -> Result<Vec<u8>, Status> {
        let (file_no, mode) = self.open_mac_header(0xF5, data)?;
        let settings = self
            .state
            .file_settings(file_no)
            .ok_or(Status::FileNotFound)?;
        let out = self.seal(settings, mode, 0x00);
        Ok(self.respond(out))
    }

    /// GetFileCounters (§10.7.3): SDMReadCtr and two reserved bytes, Full, behind SDMCtrRet.
    fn get_file_counters(&mut self, data: &[u8]) -> Result<Vec<u8>, Status> {
        let (header, body) = data.split_at(data.len().min(1));
        let file = self.file_of(header)?;
        let sdm = file.settings.sdm.ok_or(Status::PermissionDenied)?;
        let mode = match self.access(&[sdm.ctr_ret], CommMode::Full)? {
            CommMode::Plain => self.session_mode(CommMode::Full),
            m => m,
        };
        if mode == CommMode::Plain && !body.is_empty() {
            return Err(Status::LengthError);
        }
        self.open(0xF6, header, body, mode)?;
        let mut counters = self.state.sdm_counter.to_le_bytes()[..3].to_vec();
        counters.extend([0, 0]);
        let out = self.seal(counters, mode, 0x00);
        Ok(self.respond(out))
    }

    /// ChangeFileSettings (§10.7.1): behind the file's Change right (plain when it is free).
    /// Enabling SDM restarts the read counter.
    fn change_file_settings(&mut self, data: &[u8]) -> Result<Vec<u8>, Status> {
        let (header, body) = data.split_at(data.len().min(1));
        let file = self.file_of(header)?;
        let mode = self.access(&[file.settings.change], CommMode::Full)?;
        let plain = self.open(0x5F, header, body, mode)?;
        let settings = FileSettings::parse(file.no, &plain, file.data.len())?;
        if settings.sdm.is_some() {
            self.state.sdm_counter = 0;
        }
        if let Some(f) = self.state.files.iter_mut().find(|f| f.no == file.no) {
            f.settings = settings;
        }
        let out = self.seal(Vec::new(), mode, 0x00);
        Ok(self.respond(out))
    }

    /// ChangeKey (§10.6.1): Full, with the AppMasterKey's session. Changing key 0 itself ends
    /// the session with a bare `91 00`.
    fn change_key(&mut self, data: &[u8]) -> Result<Vec<u8>, Status> {
        let (header, body) = data.split_at(data.len().min(1));
        let Some(&key_byte) = header.first() else {
            return Err(Status::LengthError);
        };
        if self.session_key() != Some(0) {
            return Err(Status::AuthenticationError);
        }
        let plain = self.open(0xC4, header, body, CommMode::Full)?;
        if key_byte & 0xC0 != 0 {
            return Err(Status::ParameterError);
        }
        let k = usize::from(key_byte & 0x3F);
        if k >= 5 {
            return Err(Status::NoSuchKey);
        }
        if k == 0 {
            if plain.len() != 17 {
                return Err(Status::LengthError);
            }
            self.state.keys[0].copy_from_slice(&plain[..16]);
            self.state.key_versions[0] = plain[16];
            self.auth = Auth::None;
            return Ok(sw(Status::Ok));
        }
        if plain.len() != 21 {
            return Err(Status::LengthError);
        }
        let mut new = Zeroizing::new([0u8; 16]);
        for (i, n) in new.iter_mut().enumerate() {
            *n = plain[i] ^ self.state.keys[k][i];
        }
        if crate::protocol::crypto::crc32nk(&new[..]).to_le_bytes() != plain[17..21] {
            return Err(Status::IntegrityError);
        }
        self.state.keys[k] = *new;
        self.state.key_versions[k] = plain[16];
        let out = self.seal(Vec::new(), CommMode::Full, 0x00);
        Ok(self.respond(out))
    }

    /// GetKeyVersion (§10.6.2): MAC in a session.
    fn get_key_version(&mut self, data: &[u8]) -> Result<Vec<u8>, Status> {
        let (key_no, mode) = self.open_mac_header(0x64, data)?;
        if key_no & 0xF0 != 0 {
            return Err(Status::ParameterError);
        }
        let version = *self
            .state
            .key_versions
            .get(usize::from(key_no))
            .ok_or(Status::NoSuchKey)?;
        let out = self.seal(vec![version], mode, 0x00);
        Ok(self.respond(out))
    }

    /// GetCardUID (§10.5.3): Full, after authenticating with any key.
    fn get_card_uid(&mut self, data: &[u8]) -> Result<Vec<u8>, Status> {
        if !self.authenticated() {
            return Err(Status::AuthenticationError);
        }
        self.open(0x51, &[], data, CommMode::Full)?;
        let uid = self.state.uid.to_vec();
        let out = self.seal(uid, CommMode::Full, 0x00);
        Ok(self.respond(out))
    }
}
