//! ISO 7816-4 framing of native NTAG 424 DNA commands and typed status words.

use crate::NfcError;

/// A status word the card answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// `91 00` / `90 00`: success.
    Ok,
    /// `91 AF`: more frames follow.
    AdditionalFrame,
    /// `91 90`: Read_Sig success.
    SignatureOk,
    /// `91 1C`: command not supported.
    IllegalCommand,
    /// `91 1E`: CRC or MAC mismatch, or bad padding.
    IntegrityError,
    /// `91 40`: no such key.
    NoSuchKey,
    /// `91 7E`: command length invalid.
    LengthError,
    /// `91 9D`: not allowed in this state (e.g. a key-protected file without authentication).
    PermissionDenied,
    /// `91 9E`: parameter invalid.
    ParameterError,
    /// `91 AD`: authentication delayed after failed attempts.
    AuthenticationDelay,
    /// `91 AE`: wrong key, or authentication state does not allow the command.
    AuthenticationError,
    /// `91 BE`: beyond the end of the file.
    BoundaryError,
    /// `91 CA`: a chained command was not completed.
    CommandAborted,
    /// `91 EE`: memory failure.
    MemoryError,
    /// `91 F0`: no such file.
    FileNotFound,
    /// `6A 82`: application or file not found (ISO).
    IsoNotFound,
    /// `69 82`: security status not satisfied (ISO).
    IsoSecurity,
    /// Any other status word.
    Other(u8, u8),
}

impl Status {
    /// Classifies `SW1 SW2`.
    pub fn from_sw(sw1: u8, sw2: u8) -> Self {
        match (sw1, sw2) {
            (0x91, 0x00) | (0x90, 0x00) => Self::Ok,
            (0x91, 0xAF) => Self::AdditionalFrame,
            (0x91, 0x90) => Self::SignatureOk,
            (0x91, 0x1C) => Self::IllegalCommand,
            (0x91, 0x1E) => Self::IntegrityError,
            (0x91, 0x40) => Self::NoSuchKey,
            (0x91, 0x7E) => Self::LengthError,
            (0x91, 0x9D) => Self::PermissionDenied,
            (0x91, 0x9E) => Self::ParameterError,
            (0x91, 0xAD) => Self::AuthenticationDelay,
            (0x91, 0xAE) => Self::AuthenticationError,
            (0x91, 0xBE) => Self::BoundaryError,
            (0x91, 0xCA) => Self::CommandAborted,
            (0x91, 0xEE) => Self::MemoryError,
            (0x91, 0xF0) => Self::FileNotFound,
            (0x6A, 0x82) => Self::IsoNotFound,
            (0x69, 0x82) => Self::IsoSecurity,
            (a, b) => Self::Other(a, b),
        }
    }

    /// The two bytes.
    pub fn to_sw(self) -> [u8; 2] {
        match self {
            Self::Ok => [0x91, 0x00],
            Self::AdditionalFrame => [0x91, 0xAF],
            Self::SignatureOk => [0x91, 0x90],
            Self::IllegalCommand => [0x91, 0x1C],
            Self::IntegrityError => [0x91, 0x1E],
            Self::NoSuchKey => [0x91, 0x40],
            Self::LengthError => [0x91, 0x7E],
            Self::PermissionDenied => [0x91, 0x9D],
            Self::ParameterError => [0x91, 0x9E],
            Self::AuthenticationDelay => [0x91, 0xAD],
            Self::AuthenticationError => [0x91, 0xAE],
            Self::BoundaryError => [0x91, 0xBE],
            Self::CommandAborted => [0x91, 0xCA],
            Self::MemoryError => [0x91, 0xEE],
            Self::FileNotFound => [0x91, 0xF0],
            Self::IsoNotFound => [0x6A, 0x82],
            Self::IsoSecurity => [0x69, 0x82],
            Self::Other(a, b) => [a, b],
        }
    }
}

/// A native command wrapped for PC/SC: `90 INS 00 00 [Lc data] 00`.
pub fn native(ins: u8, data: &[u8]) -> Result<Vec<u8>, NfcError> {
    let lc = u8::try_from(data.len())
        .map_err(|_| NfcError::Malformed("command longer than 255 bytes"))?;
    let mut out = vec![0x90, ins, 0x00, 0x00];
    if !data.is_empty() {
        out.push(lc);
        out.extend_from_slice(data);
    }
    out.push(0x00);
    Ok(out)
}

/// ISOSelectFile of the NDEF application by DF name (no FCI returned).
pub fn select_ndef_application() -> Vec<u8> {
    vec![
        0x00, 0xA4, 0x04, 0x0C, 0x07, 0xD2, 0x76, 0x00, 0x00, 0x85, 0x01, 0x01, 0x00,
    ]
}

/// Splits an R-APDU into data and status.
pub fn split(r_apdu: &[u8]) -> Result<(&[u8], Status), NfcError> {
    if r_apdu.len() < 2 {
        return Err(NfcError::Malformed("response shorter than a status word"));
    }
    let (data, sw) = r_apdu.split_at(r_apdu.len() - 2);
    Ok((data, Status::from_sw(sw[0], sw[1])))
}

/// Data of a response that must be `expected`; any other status is [`NfcError::Card`].
pub fn expect(r_apdu: &[u8], expected: Status) -> Result<&[u8], NfcError> {
    let (data, status) = split(r_apdu)?;
    if status == expected {
        Ok(data)
    } else {
        Err(NfcError::Card(status))
    }
}
