//! Reading a card the way a phone does: the NFC Forum Type 4 Tag NDEF read procedure (select
//! the NDEF application, select and read the capability container, select the NDEF file, read
//! its length, read the message) over any [`Transport`], and a parser for the NDEF records it
//! returns. Nothing here needs a key; on a Tessera card the one record is the SUN
//! (`tessera.app:sun`, payload `e=<PICC data>&c=<SDMMAC>`).

use crate::NfcError;
use crate::protocol::apdu::Status;
use crate::tag::{TagError, Transport};

/// The capability container's NDEF file control TLV (T4T §5.1): where the message is and how
/// it may be accessed, plus the reader limits the tag declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityContainer {
    /// Mapping version (major in the high nibble; 2.0 is `0x20`).
    pub version: u8,
    /// The most data bytes one ReadBinary returns (MLe).
    pub max_read: u16,
    /// The most data bytes one UpdateBinary takes (MLc).
    pub max_write: u16,
    /// The NDEF file's ISO file id.
    pub ndef_file: [u8; 2],
    /// The NDEF file's size (NLEN field included).
    pub ndef_size: u16,
    /// Read access byte (`00` granted).
    pub read_access: u8,
    /// Write access byte (`00` granted, `FF` never).
    pub write_access: u8,
}

impl CapabilityContainer {
    /// Parses the first 15 bytes of a CC file: CCLEN, version, MLe, MLc, then the NDEF file
    /// control TLV (T = 04, L = 06).
    pub fn parse(cc: &[u8]) -> Result<Self, NfcError> {
        let bad = NfcError::Malformed("capability container");
        if cc.len() < 15 || cc[7] != 0x04 || cc[8] != 0x06 {
            return Err(bad);
        }
        let u16_at = |i: usize| u16::from_be_bytes([cc[i], cc[i + 1]]);
        let cc_len = u16_at(0);
        if cc_len < 15 || cc[2] >> 4 != 2 {
            return Err(bad);
        }
        let c = Self {
            version: cc[2],
            max_read: u16_at(3),
            max_write: u16_at(5),
            ndef_file: [cc[9], cc[10]],
            ndef_size: u16_at(11),
            read_access: cc[13],
            write_access: cc[14],
        };
        // MLe at least 0Fh (T4T), an NDEF file that can hold its own length field.
        if c.max_read < 0x0F || c.ndef_size < 2 {
            return Err(bad);
        }
        Ok(c)
    }
}

/// One NDEF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Type name format (1 well-known, 2 media type, 3 absolute URI, 4 external type).
    pub tnf: u8,
    /// The record type.
    pub record_type: Vec<u8>,
    /// The record id, if present.
    pub id: Vec<u8>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Parses an NDEF message into its records (short and normal records, IDs; chunked records
/// are refused). The first record must have MB set and the last ME.
pub fn parse_message(mut m: &[u8]) -> Result<Vec<Record>, NfcError> {
    let mut records = Vec::new();
    let bad = |what| Err(NfcError::Malformed(what));
    loop {
        let Some((&header, rest)) = m.split_first() else {
            return bad("NDEF message ends without a last record");
        };
        let (mb, me, cf, sr, il) = (
            header & 0x80 != 0,
            header & 0x40 != 0,
            header & 0x20 != 0,
            header & 0x10 != 0,
            header & 0x08 != 0,
        );
        if mb != records.is_empty() {
            return bad("NDEF message-begin flag");
        }
        if cf {
            return bad("chunked NDEF record");
        }
        let take = |n: usize, input: &mut &[u8]| -> Result<Vec<u8>, NfcError> {
            if input.len() < n {
                return Err(NfcError::Malformed("NDEF record shorter than its lengths"));
            }
            let (a, b) = input.split_at(n);
            *input = b;
            Ok(a.to_vec())
        };
        let mut input = rest;
        let type_len = usize::from(take(1, &mut input)?[0]);
        let payload_len = if sr {
            usize::from(take(1, &mut input)?[0])
        } else {
            let b = take(4, &mut input)?;
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        };
        let id_len = if il {
            usize::from(take(1, &mut input)?[0])
        } else {
            0
        };
        let record_type = take(type_len, &mut input)?;
        let id = take(id_len, &mut input)?;
        let payload = take(payload_len, &mut input)?;
        records.push(Record {
            tnf: header & 0x07,
            record_type,
            id,
            payload,
        });
        m = input;
        if me {
            return if m.is_empty() {
                Ok(records)
            } else {
                bad("bytes after the last NDEF record")
            };
        }
    }
}

/// The SUN parameters in a record payload or URL: `e=` (or `picc_data=`) and `c=` (or
/// `cmac=`), as hex text; `None` if either is missing.
pub fn sun_parameters(text: &str) -> Option<(String, String)> {
    let query = text.rsplit_once('?').map_or(text, |(_, q)| q);
    let mut picc = None;
    let mut mac = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("e" | "picc_data", v)) => picc = Some(v.to_string()),
            Some(("c" | "cmac", v)) => mac = Some(v.to_string()),
            _ => {}
        }
    }
    picc.zip(mac)
}

fn iso(t: &mut dyn Transport, apdu: &[u8]) -> Result<Vec<u8>, TagError> {
    let r = t.transmit(apdu)?;
    if r.len() < 2 {
        return Err(NfcError::Malformed("response shorter than a status word").into());
    }
    let (data, sw) = r.split_at(r.len() - 2);
    if sw != [0x90, 0x00] {
        return Err(NfcError::Card(Status::from_sw(sw[0], sw[1])).into());
    }
    Ok(data.to_vec())
}

fn read_binary(t: &mut dyn Transport, offset: usize, len: usize) -> Result<Vec<u8>, TagError> {
    let [hi, lo] = u16::try_from(offset)
        .map_err(|_| NfcError::Malformed("NDEF offset"))?
        .to_be_bytes();
    // Le = 00 asks for 256 bytes.
    let le = u8::try_from(len % 256).map_err(|_| NfcError::Malformed("read length"))?;
    let data = iso(t, &[0x00, 0xB0, hi, lo, le])?;
    if data.len() != len {
        return Err(NfcError::Malformed("ReadBinary returned another length than asked").into());
    }
    Ok(data)
}

/// What the NDEF read procedure found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdefRead {
    /// The capability container.
    pub cc: CapabilityContainer,
    /// The NDEF message (without its NLEN field; empty when the tag holds none).
    pub message: Vec<u8>,
}

/// The NFC Forum Type 4 Tag NDEF read procedure, as a phone performs it: select the NDEF
/// application (`00 A4 04 00 07 D2760000850101 00`), select the CC file (`E103`), read 15
/// bytes of it, select the NDEF file the CC names, read the 2-byte NLEN, then read the message
/// in pieces of at most MLe bytes. Every read gives explicit offset and length.
pub fn read(t: &mut dyn Transport) -> Result<NdefRead, TagError> {
    iso(
        t,
        &[
            0x00, 0xA4, 0x04, 0x00, 0x07, 0xD2, 0x76, 0x00, 0x00, 0x85, 0x01, 0x01, 0x00,
        ],
    )?;
    iso(t, &[0x00, 0xA4, 0x00, 0x0C, 0x02, 0xE1, 0x03])?;
    let cc = CapabilityContainer::parse(&read_binary(t, 0, 15)?)?;
    if cc.read_access != 0x00 {
        return Err(NfcError::Malformed("the NDEF file is not readable (CC read access)").into());
    }
    let [f0, f1] = cc.ndef_file;
    iso(t, &[0x00, 0xA4, 0x00, 0x0C, 0x02, f0, f1])?;
    let nlen = read_binary(t, 0, 2)?;
    let nlen = usize::from(u16::from_be_bytes([nlen[0], nlen[1]]));
    if nlen + 2 > usize::from(cc.ndef_size) {
        return Err(NfcError::Malformed("NLEN larger than the NDEF file").into());
    }
    let chunk = usize::from(cc.max_read.min(255));
    let mut message = Vec::with_capacity(nlen);
    while message.len() < nlen {
        let n = chunk.min(nlen - message.len());
        message.extend(read_binary(t, 2 + message.len(), n)?);
    }
    Ok(NdefRead { cc, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_factory_cc_parses() {
        let cc = [
            0x00, 0x17, 0x20, 0x01, 0x00, 0x00, 0xFF, 0x04, 0x06, 0xE1, 0x04, 0x01, 0x00, 0x00,
            0x00,
        ];
        let c = CapabilityContainer::parse(&cc).unwrap();
        assert_eq!(
            (c.max_read, c.max_write, c.ndef_file, c.ndef_size),
            (256, 255, [0xE1, 0x04], 256)
        );
        assert!(CapabilityContainer::parse(&cc[..14]).is_err());
        let mut v3 = cc;
        v3[2] = 0x30;
        assert!(CapabilityContainer::parse(&v3).is_err());
    }

    #[test]
    fn records_parse_and_malformed_ones_are_refused() {
        // A URI record (short), then an external-type record with an id.
        let mut m = vec![0x91, 0x01, 0x03, b'U', 0x04, b'a', b'b'];
        m.extend([0x5C, 0x03, 0x02, 0x01, b'x', b':', b'y', 0x07, 0x41, 0x42]);
        let r = parse_message(&m).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].tnf, r[0].record_type.as_slice()), (1, &b"U"[..]));
        assert_eq!(r[0].payload, [0x04, b'a', b'b']);
        assert_eq!((r[1].tnf, r[1].id.as_slice()), (4, &[0x07][..]));
        assert_eq!(r[1].payload, b"AB");
        assert!(parse_message(&m[..m.len() - 1]).is_err(), "truncated");
        assert!(parse_message(&m[7..]).is_err(), "no message-begin");
        let mut extra = m.clone();
        extra.push(0);
        assert!(parse_message(&extra).is_err(), "trailing bytes");
        assert!(parse_message(&[]).is_err());
    }

    #[test]
    fn sun_parameters_come_from_a_payload_or_a_url() {
        assert_eq!(
            sun_parameters("e=AB&c=CD"),
            Some(("AB".into(), "CD".into()))
        );
        assert_eq!(
            sun_parameters("https://x.invalid/t?picc_data=11&enc=22&cmac=33"),
            Some(("11".into(), "33".into()))
        );
        assert_eq!(sun_parameters("e=AB"), None);
    }
}
