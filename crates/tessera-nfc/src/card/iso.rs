//! The ISO/IEC 7816-4 commands (datasheet §10.9): ISOSelectFile, ISOReadBinary and
//! ISOUpdateBinary — what an NFC Forum Type 4 Tag reader (a phone) uses.

use super::{Apdu, Auth, Card, Level, ReadKind, ReadRun, mirror, state::FREE, state::NEVER};

/// The NDEF application's DF name (NFC Forum Type 4 Tag).
pub const NDEF_APP: [u8; 7] = [0xD2, 0x76, 0x00, 0x00, 0x85, 0x01, 0x01];
/// The DF name that selects the PICC level.
pub const PICC_DF: [u8; 7] = [0xD2, 0x76, 0x00, 0x00, 0x85, 0x01, 0x00];
/// The NDEF application's ISO file identifier (the NFC Forum convention for the DF).
pub const NDEF_APP_FID: [u8; 2] = [0xE1, 0x10];

const OK: [u8; 2] = [0x90, 0x00];
const WRONG_LENGTH: [u8; 2] = [0x67, 0x00];
const SECURITY: [u8; 2] = [0x69, 0x82];
const CONDITIONS: [u8; 2] = [0x69, 0x85];
const NOT_FOUND: [u8; 2] = [0x6A, 0x82];
const WRONG_P1P2: [u8; 2] = [0x6A, 0x86];
const LC_INCONSISTENT: [u8; 2] = [0x6A, 0x87];

impl Card {
    fn select_picc(&mut self) -> Vec<u8> {
        self.level = Level::Picc;
        self.ef = None;
        self.auth = Auth::None;
        OK.to_vec()
    }

    fn select_app(&mut self) -> Vec<u8> {
        self.level = Level::App;
        self.ef = None;
        self.auth = Auth::None;
        OK.to_vec()
    }

    /// The file with ISO file id `fid` in the NDEF application.
    fn file_by_fid(&self, fid: &[u8]) -> Option<u8> {
        self.state
            .files
            .iter()
            .find(|f| f.iso_id() == fid)
            .map(|f| f.no)
    }

    /// ISOSelectFile (§10.9.1): P1 00 (MF, DF or EF by id), 01 (child DF), 02 (EF under the
    /// current DF), 03 (parent DF), 04 (by DF name); P2 00 or 0C (no FCI either way). A name or
    /// id that is not found answers `6A 82` and leaves the selection as it was.
    pub(super) fn iso_select(&mut self, c: &Apdu<'_>) -> Vec<u8> {
        if c.p2 != 0x00 && c.p2 != 0x0C {
            return WRONG_P1P2.to_vec();
        }
        let d = c.data;
        match c.p1 {
            0x04 => {
                if d.is_empty() || d.len() > 16 {
                    LC_INCONSISTENT.to_vec()
                } else if d == NDEF_APP {
                    self.select_app()
                } else if d == PICC_DF {
                    self.select_picc()
                } else {
                    NOT_FOUND.to_vec()
                }
            }
            0x03 => {
                if !d.is_empty() {
                    LC_INCONSISTENT.to_vec()
                } else {
                    self.select_picc()
                }
            }
            0x00..=0x02 => {
                if c.p1 == 0x00 && (d.is_empty() || d == [0x3F, 0x00]) {
                    return self.select_picc();
                }
                if d.len() != 2 {
                    return LC_INCONSISTENT.to_vec();
                }
                if c.p1 != 0x02 && d == NDEF_APP_FID {
                    return self.select_app();
                }
                if c.p1 == 0x01 || self.level != Level::App {
                    return NOT_FOUND.to_vec();
                }
                match self.file_by_fid(d) {
                    Some(no) => {
                        // Selecting a file inside the application keeps its authentication.
                        self.ef = Some(no);
                        OK.to_vec()
                    }
                    None => NOT_FOUND.to_vec(),
                }
            }
            _ => WRONG_P1P2.to_vec(),
        }
    }

    /// The file an ISOReadBinary/ISOUpdateBinary targets and the offset: P1 bit 7 set means a
    /// short file id in bits 4–0 (which also selects the file) and the offset in P2, otherwise
    /// a 15-bit offset in P1–P2 on the selected file. Both commands are plain only: refused in
    /// an authenticated state.
    fn binary_target(&mut self, c: &Apdu<'_>) -> Result<(u8, usize), [u8; 2]> {
        let target = self.binary_file(c)?;
        if self.authenticated() {
            return Err(SECURITY);
        }
        Ok(target)
    }

    fn binary_file(&mut self, c: &Apdu<'_>) -> Result<(u8, usize), [u8; 2]> {
        if self.level != Level::App {
            return Err(CONDITIONS);
        }
        if c.p1 & 0x80 != 0 {
            if c.p1 & 0x60 != 0 {
                return Err(WRONG_P1P2);
            }
            let sfi = c.p1 & 0x1F;
            let no = match sfi {
                0 => self.ef.ok_or(CONDITIONS)?,
                0x1F => return Err(WRONG_P1P2),
                n if self.state.file(n).is_some() => n,
                _ => return Err(NOT_FOUND),
            };
            self.ef = Some(no);
            Ok((no, usize::from(c.p2)))
        } else {
            let no = self.ef.ok_or(CONDITIONS)?;
            Ok((no, usize::from(c.p1) << 8 | usize::from(c.p2)))
        }
    }

    /// ISOReadBinary (§10.9.2): plain only, refused in an authenticated state; needs Read or
    /// ReadWrite free (or SDM reading). Le = 00 or more than is left reads to the end of the
    /// file. An SDM file is mirrored, and its read counter advances only on the first read of
    /// a run (`run` is the run the previous command left).
    pub(super) fn iso_read_binary(
        &mut self,
        c: &Apdu<'_>,
        run: Option<ReadRun>,
        random: &mut dyn FnMut() -> [u8; 16],
    ) -> Vec<u8> {
        if !c.data.is_empty() {
            return WRONG_LENGTH.to_vec();
        }
        let Some(le) = c.le else {
            return WRONG_LENGTH.to_vec();
        };
        let (no, offset) = match self.binary_target(c) {
            Ok(t) => t,
            Err(sw) => return sw.to_vec(),
        };
        let Some(file) = self.state.file(no).cloned() else {
            return NOT_FOUND.to_vec();
        };
        let s = &file.settings;
        let sdm_read = s.sdm.as_ref().is_some_and(|d| d.file_read != NEVER);
        if s.read != FREE && s.read_write != FREE && !sdm_read {
            return SECURITY.to_vec();
        }
        if offset >= file.data.len() {
            return WRONG_P1P2.to_vec();
        }
        let data = match self.sdm_read(&file, ReadKind::Iso, run, random) {
            Ok(d) => d,
            Err(()) => return SECURITY.to_vec(),
        };
        let end = (offset + le).min(data.len());
        let mut out = data[offset..end].to_vec();
        out.extend(OK);
        out
    }

    /// The data an unauthenticated read of `file` returns: static, or mirrored for SDM. For
    /// SDM, the first read of a run advances the counter (refused at its limit) and mirrors;
    /// the run's later reads return the same bytes.
    pub(super) fn sdm_read(
        &mut self,
        file: &super::File,
        kind: ReadKind,
        run: Option<ReadRun>,
        random: &mut dyn FnMut() -> [u8; 16],
    ) -> Result<Vec<u8>, ()> {
        let Some(sdm) = &file.settings.sdm else {
            return Ok(file.data.clone());
        };
        if let Some(run) = run
            && run.kind == kind
            && run.file == file.no
        {
            let data = run.data.clone();
            self.run = Some(run);
            return Ok(data);
        }
        let limit = sdm.ctr_limit.unwrap_or(0xFF_FFFF);
        if self.state.sdm_counter >= limit || self.state.sdm_counter >= 0xFF_FFFF {
            return Err(());
        }
        self.state.sdm_counter += 1;
        let data = mirror::dynamic_data(
            file,
            &self.state.uid,
            &self.state.keys,
            self.state.sdm_counter,
            random(),
        );
        self.run = Some(ReadRun {
            kind,
            file: file.no,
            data: data.clone(),
        });
        Ok(data)
    }

    /// ISOUpdateBinary: plain only, refused in an authenticated state; needs Write or
    /// ReadWrite free. Writes `data` at the offset, within the file.
    pub(super) fn iso_update_binary(&mut self, c: &Apdu<'_>) -> Vec<u8> {
        if c.data.is_empty() || c.le.is_some() {
            return WRONG_LENGTH.to_vec();
        }
        let (no, offset) = match self.binary_target(c) {
            Ok(t) => t,
            Err(sw) => return sw.to_vec(),
        };
        let Some(file) = self.state.files.iter_mut().find(|f| f.no == no) else {
            return NOT_FOUND.to_vec();
        };
        let s = &file.settings;
        if s.write != FREE && s.read_write != FREE {
            return SECURITY.to_vec();
        }
        if offset >= file.data.len() {
            return WRONG_P1P2.to_vec();
        }
        let Some(slot) = file.data.get_mut(offset..offset + c.data.len()) else {
            return WRONG_LENGTH.to_vec();
        };
        slot.copy_from_slice(c.data);
        OK.to_vec()
    }
}
