//! What an NTAG 424 DNA remembers across power cycles: keys, files and their settings, the SDM
//! read counter, and the manufacturing data it reports (GetVersion, Read_Sig).
//!
//! The settings encode and decode exactly as the datasheet's ChangeFileSettings and
//! GetFileSettings carry them (NT4H2421Gx §10.7.1–10.7.2, Tables 69–74), including its rules for
//! which SDM fields are present and which configurations are refused.

use crate::protocol::apdu::Status;
use crate::protocol::crypto::Key;
use crate::protocol::session::CommMode;

/// Access condition value meaning "free".
pub const FREE: u8 = 0xE;
/// Access condition value meaning "never".
pub const NEVER: u8 = 0xF;
/// SDMReadCtrOffset value meaning "counter enabled but not mirrored".
pub const NO_MIRROR: usize = 0xFF_FFFF;
/// Length of the ASCII UID mirror (7 bytes as hex).
pub const UID_LEN: usize = 14;
/// Length of the ASCII SDMReadCtr mirror (3 bytes as hex).
pub const CTR_LEN: usize = 6;
/// Length of the ASCII encrypted PICC data (16 bytes as hex, AES mode).
pub const PICC_LEN: usize = 32;
/// Length of the ASCII SDMMAC (8 bytes as hex).
pub const MAC_LEN: usize = 16;

/// Secure Dynamic Messaging settings of a file (datasheet Table 69): which mirrors are on, the
/// keys that protect them, and where they go in the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SdmSettings {
    /// SDMOptions: bit 7 UID mirror, bit 6 SDMReadCtr, bit 5 SDMReadCtrLimit, bit 4
    /// SDMENCFileData, bit 0 ASCII encoding (always 1 on this chip).
    pub options: u8,
    /// SDMCtrRet access right (0–4, `FREE`, `NEVER`): who may use GetFileCounters.
    pub ctr_ret: u8,
    /// SDMMetaRead: 0–4 encrypted PICC data with that key, `FREE` plain UID/counter mirrors,
    /// `NEVER` no PICC data.
    pub meta_read: u8,
    /// SDMFileRead: 0–4 the key behind the SDMMAC (and encrypted file data), `NEVER` none.
    pub file_read: u8,
    /// Plain UID mirror position.
    #[serde(default)]
    pub uid_offset: Option<usize>,
    /// Plain SDMReadCtr mirror position ([`NO_MIRROR`]: counter on, not mirrored).
    #[serde(default)]
    pub ctr_offset: Option<usize>,
    /// Encrypted PICC data position.
    #[serde(default)]
    pub picc_offset: Option<usize>,
    /// Where the SDMMAC input starts.
    #[serde(default)]
    pub mac_input_offset: Option<usize>,
    /// SDMENCFileData position.
    #[serde(default)]
    pub enc_offset: Option<usize>,
    /// SDMENCFileData placeholder length (a multiple of 32).
    #[serde(default)]
    pub enc_length: Option<usize>,
    /// SDMMAC position.
    #[serde(default)]
    pub mac_offset: Option<usize>,
    /// SDMReadCtrLimit.
    #[serde(default)]
    pub ctr_limit: Option<u32>,
}

impl SdmSettings {
    /// UID mirroring (plain or inside the PICC data).
    pub fn uid_mirrored(&self) -> bool {
        self.options & 0x80 != 0
    }

    /// SDMReadCtr enabled (mirrored plain, inside the PICC data, or only counted).
    pub fn ctr_enabled(&self) -> bool {
        self.options & 0x40 != 0
    }

    /// SDMENCFileData enabled.
    pub fn enc_enabled(&self) -> bool {
        self.options & 0x10 != 0
    }

    /// Parses the SDM part of ChangeFileSettings data (everything after FileOption and
    /// AccessRights) for a file of `file_size` bytes. Returns the settings; the whole of
    /// `data` must be used (`LengthError` otherwise), and the datasheet's consistency rules
    /// hold (`ParameterError` otherwise).
    pub fn parse(data: &[u8], file_size: usize) -> Result<Self, Status> {
        let mut r = Reader { data, at: 0 };
        let options = r.u8()?;
        let ar = [r.u8()?, r.u8()?];
        let mut s = Self {
            options,
            ctr_ret: ar[0] & 0x0F,
            meta_read: ar[1] >> 4,
            file_read: ar[1] & 0x0F,
            uid_offset: None,
            ctr_offset: None,
            picc_offset: None,
            mac_input_offset: None,
            enc_offset: None,
            enc_length: None,
            mac_offset: None,
            ctr_limit: None,
        };
        let plain_meta = s.meta_read == FREE;
        let keyed = |v: u8| v <= 4;
        if s.uid_mirrored() && plain_meta {
            s.uid_offset = Some(r.u24()?);
        }
        if s.ctr_enabled() && plain_meta {
            s.ctr_offset = Some(r.u24()?);
        }
        if keyed(s.meta_read) {
            s.picc_offset = Some(r.u24()?);
        }
        if s.file_read != NEVER {
            s.mac_input_offset = Some(r.u24()?);
            if s.enc_enabled() {
                s.enc_offset = Some(r.u24()?);
                s.enc_length = Some(r.u24()?);
            }
            s.mac_offset = Some(r.u24()?);
        }
        if options & 0x20 != 0 {
            s.ctr_limit = Some(r.u24()? as u32);
        }
        if r.at != data.len() {
            return Err(Status::LengthError);
        }
        s.check(file_size)?;
        Ok(s)
    }

    /// The datasheet's rules for a consistent configuration (Table 71, PARAMETER_ERROR).
    fn check(&self, size: usize) -> Result<(), Status> {
        let bad = Err(Status::ParameterError);
        let keyed = |v: u8| v <= 4;
        // Encoding: ASCII only; RFU bits zero; RFU nibble of the access rights F.
        if self.options & 0x01 == 0 || self.options & 0x0E != 0 {
            return bad;
        }
        if !(keyed(self.meta_read) || self.meta_read == FREE || self.meta_read == NEVER)
            || !(keyed(self.file_read) || self.file_read == NEVER)
            || !(keyed(self.ctr_ret) || self.ctr_ret == FREE || self.ctr_ret == NEVER)
        {
            return bad;
        }
        let (uid, ctr) = (self.uid_mirrored(), self.ctr_enabled());
        if self.meta_read != NEVER && !uid && !ctr {
            return bad;
        }
        if self.meta_read == NEVER && uid {
            return bad;
        }
        if self.ctr_ret != NEVER && !ctr {
            return bad;
        }
        if self.enc_enabled() && (self.file_read == NEVER || !uid || !ctr) {
            return bad;
        }
        if self.ctr_limit.is_some() && !ctr {
            return bad;
        }
        if self.ctr_limit == Some(0) {
            // Not above the counter, which enabling SDM sets to 0.
            return bad;
        }
        // Each mirror inside the file.
        let fits = |at: Option<usize>, len: usize| at.is_none_or(|o| o + len <= size);
        let ctr_mirror = self.ctr_offset.filter(|o| *o != NO_MIRROR);
        if !fits(self.uid_offset, UID_LEN)
            || !fits(ctr_mirror, CTR_LEN)
            || !fits(self.picc_offset, PICC_LEN)
            || !fits(self.mac_offset, MAC_LEN)
        {
            return bad;
        }
        if let (Some(input), Some(mac)) = (self.mac_input_offset, self.mac_offset)
            && input > mac
        {
            return bad;
        }
        if let (Some(at), Some(len)) = (self.enc_offset, self.enc_length) {
            let (Some(input), Some(mac)) = (self.mac_input_offset, self.mac_offset) else {
                return bad;
            };
            if len < 32 || len % 32 != 0 || at < input || at + len > mac {
                return bad;
            }
        }
        // No two mirrors overlap.
        let spans: Vec<(usize, usize)> = [
            self.uid_offset.map(|o| (o, UID_LEN)),
            ctr_mirror.map(|o| (o, CTR_LEN)),
            self.picc_offset.map(|o| (o, PICC_LEN)),
            self.mac_offset.map(|o| (o, MAC_LEN)),
            self.enc_offset.zip(self.enc_length),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                if a.0 < b.0 + b.1 && b.0 < a.0 + a.1 {
                    return bad;
                }
            }
        }
        Ok(())
    }

    /// The SDM part as GetFileSettings returns it (same fields and order as ChangeFileSettings).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![
            self.options,
            0xF0 | self.ctr_ret,
            (self.meta_read << 4) | self.file_read,
        ];
        let fields = [
            self.uid_offset,
            self.ctr_offset,
            self.picc_offset,
            self.mac_input_offset,
            self.enc_offset,
            self.enc_length,
            self.mac_offset,
            self.ctr_limit.map(|l| l as usize),
        ];
        for v in fields.into_iter().flatten() {
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        out
    }
}

/// A cursor over settings bytes; running out is the datasheet's LENGTH_ERROR.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, Status> {
        let b = *self.data.get(self.at).ok_or(Status::LengthError)?;
        self.at += 1;
        Ok(b)
    }

    fn u24(&mut self) -> Result<usize, Status> {
        let b = self
            .data
            .get(self.at..self.at + 3)
            .ok_or(Status::LengthError)?;
        self.at += 3;
        Ok(u24(b))
    }
}

/// A 3-byte little-endian integer (offsets, lengths, sizes).
pub(crate) fn u24(b: &[u8]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16
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
    /// The FileOption byte: communication mode, bit 6 for SDM.
    pub fn option_byte(&self) -> u8 {
        let comm = match self.comm {
            CommMode::Plain => 0,
            CommMode::Mac => 1,
            CommMode::Full => 3,
        };
        comm | if self.sdm.is_some() { 0x40 } else { 0 }
    }

    /// AccessRights as sent: `RW << 4 | Change`, `Read << 4 | Write`.
    pub fn access_bytes(&self) -> [u8; 2] {
        [
            (self.read_write << 4) | self.change,
            (self.read << 4) | self.write,
        ]
    }

    /// Parses ChangeFileSettings data for file `no` of `size` bytes.
    pub fn parse(no: u8, data: &[u8], size: usize) -> Result<Self, Status> {
        if data.len() < 3 {
            return Err(Status::LengthError);
        }
        let option = data[0];
        // Bit 7 and bits 5–2 are RFU.
        if option & 0xBC != 0 {
            return Err(Status::ParameterError);
        }
        let comm = match option & 3 {
            0 | 2 => CommMode::Plain,
            1 => CommMode::Mac,
            _ => CommMode::Full,
        };
        let s = Self {
            comm,
            read_write: data[1] >> 4,
            change: data[1] & 15,
            read: data[2] >> 4,
            write: data[2] & 15,
            sdm: None,
        };
        let valid = |v: u8| v <= 4 || v == FREE || v == NEVER;
        if ![s.read_write, s.change, s.read, s.write]
            .into_iter()
            .all(valid)
        {
            return Err(Status::ParameterError);
        }
        if option & 0x40 == 0 {
            return if data.len() == 3 {
                Ok(s)
            } else {
                Err(Status::LengthError)
            };
        }
        if no != 2 {
            return Err(Status::PermissionDenied);
        }
        Ok(Self {
            sdm: Some(SdmSettings::parse(&data[3..], size)?),
            ..s
        })
    }
}

/// A StandardData file and its contents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct File {
    /// File number (1–3).
    pub no: u8,
    /// Contents (fixed size).
    pub data: Vec<u8>,
    /// Settings.
    pub settings: FileSettings,
}

impl File {
    /// The ISO file identifier (E103, E104, E105 for files 1–3).
    pub fn iso_id(&self) -> [u8; 2] {
        [0xE1, 0x02 + self.no]
    }
}

/// Manufacturing data the card reports through GetVersion (datasheet Tables 54, 56, 58).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Version {
    /// Part 1: vendor, type, subtype, major, minor, storage size, protocol.
    pub hardware: [u8; 7],
    /// Part 2: the same for the software.
    pub software: [u8; 7],
    /// Part 3 after the UID: BatchNo (4), BatchNo/FabKey, FabKey/CWProd, YearProd (BCD week
    /// and year).
    pub production: [u8; 7],
}

impl Default for Version {
    /// An NTAG 424 DNA (50 pF, strong back modulation) with the datasheet's software version,
    /// batch `7E55E7A0`, made in week 48 of 2026.
    fn default() -> Self {
        Self {
            hardware: [0x04, 0x04, 0x02, 0x30, 0x00, 0x11, 0x05],
            software: [0x04, 0x04, 0x02, 0x01, 0x02, 0x11, 0x05],
            production: [0x7E, 0x55, 0xE7, 0xA0, 0x00, 0x48, 0x26],
        }
    }
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
    /// SDMReadCtr of the NDEF file.
    pub sdm_counter: u32,
    /// GetVersion data.
    #[serde(default)]
    pub version: Version,
    /// The 56-byte originality signature `Read_Sig` returns. A virtual card has no NXP key, so
    /// its signature never verifies against NXP's public key (all zero unless set).
    #[serde(default = "no_signature")]
    pub signature: Vec<u8>,
}

fn no_signature() -> Vec<u8> {
    vec![0; 56]
}

impl CardState {
    /// A card as it leaves the factory: all keys zero, the datasheet's default files (CC file
    /// free to read; NDEF file free; proprietary file Full mode, read key 2, write key 3).
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
            version: Version::default(),
            signature: no_signature(),
        }
    }

    /// File `no`.
    pub fn file(&self, no: u8) -> Option<&File> {
        self.files.iter().find(|f| f.no == no)
    }

    /// GetFileSettings data of file `no`.
    pub fn file_settings(&self, no: u8) -> Option<Vec<u8>> {
        let f = self.file(no)?;
        let mut out = vec![0x00, f.settings.option_byte()];
        out.extend(f.settings.access_bytes());
        out.extend(&(f.data.len() as u32).to_le_bytes()[..3]);
        if let Some(sdm) = &f.settings.sdm {
            out.extend(sdm.encode());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an12196_sdm_settings_round_trip() {
        // AN12196 ChangeFileSettings: PICC data (key 2) at 0x20, SDMMAC (key 1) at 0x43 over
        // an empty input.
        let data = [
            0x40, 0x00, 0xE0, 0xC1, 0xF1, 0x21, 0x20, 0, 0, 0x43, 0, 0, 0x43, 0, 0,
        ];
        let s = FileSettings::parse(2, &data, 256).unwrap();
        let sdm = s.sdm.clone().unwrap();
        assert_eq!(
            (sdm.meta_read, sdm.file_read, sdm.ctr_ret),
            (2, 1, 1),
            "{sdm:?}"
        );
        assert_eq!(sdm.picc_offset, Some(0x20));
        assert_eq!(sdm.encode(), data[3..].to_vec());
        // Anywhere but the NDEF file: not allowed.
        assert_eq!(
            FileSettings::parse(3, &data, 128),
            Err(Status::PermissionDenied)
        );
        // One byte short or long: length error.
        assert_eq!(
            FileSettings::parse(2, &data[..14], 256),
            Err(Status::LengthError)
        );
        let mut long = data.to_vec();
        long.push(0);
        assert_eq!(FileSettings::parse(2, &long, 256), Err(Status::LengthError));
    }

    #[test]
    fn the_getfilesettings_example_decodes_with_encrypted_file_data() {
        // AN12196's GetFileSettings (CommMode.MAC example): SDM data after FileSize.
        let sdm = [
            0xD1, 0xFE, 0x00, 0x1F, 0, 0, 0x44, 0, 0, 0x44, 0, 0, 0x20, 0, 0, 0x6A, 0, 0,
        ];
        let s = SdmSettings::parse(&sdm, 256).unwrap();
        assert!(s.enc_enabled());
        assert_eq!(
            (s.picc_offset, s.enc_offset, s.enc_length, s.mac_offset),
            (Some(0x1F), Some(0x44), Some(0x20), Some(0x6A))
        );
        assert_eq!(s.encode(), sdm.to_vec());
    }

    #[test]
    fn inconsistent_sdm_configurations_are_refused() {
        let ok = [0xC1, 0xF1, 0x21, 0x20, 0, 0, 0x43, 0, 0, 0x43, 0, 0];
        assert!(SdmSettings::parse(&ok, 256).is_ok());
        let refused = |bytes: &[u8], why: &str| {
            assert_eq!(
                SdmSettings::parse(bytes, 256),
                Err(Status::ParameterError),
                "{why}"
            );
        };
        // Binary encoding is not supported.
        refused(
            &[0xC0, 0xF1, 0x21, 0x20, 0, 0, 0x43, 0, 0, 0x43, 0, 0],
            "binary",
        );
        // PICC data and the MAC overlap.
        refused(
            &[0xC1, 0xF1, 0x21, 0x20, 0, 0, 0x30, 0, 0, 0x30, 0, 0],
            "overlap",
        );
        // MAC past the end of the file.
        refused(
            &[0xC1, 0xF1, 0x21, 0x20, 0, 0, 0xF8, 0, 0, 0xF8, 0, 0],
            "past end",
        );
        // Counter retrieval without a counter.
        refused(
            &[0x81, 0xF1, 0x21, 0x20, 0, 0, 0x43, 0, 0, 0x43, 0, 0],
            "ctr ret",
        );
        // MAC input after the MAC.
        refused(
            &[0xC1, 0xF1, 0x21, 0x20, 0, 0, 0x50, 0, 0, 0x43, 0, 0],
            "input",
        );
        // Plain UID mirror with no PICC data access.
        refused(&[0x81, 0xFF, 0xF1, 0x43, 0, 0, 0x43, 0, 0], "uid, meta F");
        // A read counter limit of zero.
        refused(
            &[
                0xE1, 0xF1, 0x21, 0x20, 0, 0, 0x43, 0, 0, 0x43, 0, 0, 0, 0, 0,
            ],
            "limit 0",
        );
    }

    #[test]
    fn plain_mirrors_parse_with_their_offsets() {
        // UID at 0x10, counter at 0x1F, MAC (key 2) at 0x30 over the text from 0x10.
        let s = SdmSettings::parse(
            &[
                0xC1, 0xFE, 0xE2, 0x10, 0, 0, 0x1F, 0, 0, 0x10, 0, 0, 0x30, 0, 0,
            ],
            256,
        )
        .unwrap();
        assert_eq!(
            (s.uid_offset, s.ctr_offset, s.picc_offset),
            (Some(0x10), Some(0x1F), None)
        );
        assert_eq!(s.ctr_ret, FREE);
        // A factory card's settings as the datasheet lists them.
        let c = CardState::factory([4, 1, 2, 3, 4, 5, 6]);
        assert_eq!(c.file_settings(1).unwrap(), [0, 0, 0x00, 0xE0, 0x20, 0, 0]);
        assert_eq!(c.file_settings(2).unwrap(), [0, 0, 0xE0, 0xEE, 0, 1, 0]);
        assert_eq!(c.file_settings(3).unwrap(), [0, 3, 0x30, 0x23, 0x80, 0, 0]);
    }
}
