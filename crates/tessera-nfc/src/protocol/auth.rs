//! AuthenticateEV2First / AuthenticateEV2NonFirst (AES) and the session keys they derive.

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::apdu::{self, Status};
use super::crypto::{Key, cbc_decrypt, cbc_encrypt, cmac};
use super::session::Session;
use crate::NfcError;

const ZERO_IV: [u8; 16] = [0; 16];

fn rotate_left(b: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..15].copy_from_slice(&b[1..]);
    out[15] = b[0];
    out
}

/// `(KSesAuthENC, KSesAuthMAC)` from the static key and both random numbers.
pub fn session_keys(
    key: &Key,
    rnd_a: &[u8; 16],
    rnd_b: &[u8; 16],
) -> (Zeroizing<Key>, Zeroizing<Key>) {
    let mut tail = [0u8; 26];
    tail[..2].copy_from_slice(&rnd_a[..2]);
    for i in 0..6 {
        tail[2 + i] = rnd_a[2 + i] ^ rnd_b[i];
    }
    tail[8..18].copy_from_slice(&rnd_b[6..16]);
    tail[18..26].copy_from_slice(&rnd_a[8..16]);
    let sv = |label: [u8; 6]| {
        let mut v = [0u8; 32];
        v[..6].copy_from_slice(&label);
        v[6..].copy_from_slice(&tail);
        v
    };
    (
        Zeroizing::new(cmac(key, &sv([0xA5, 0x5A, 0x00, 0x01, 0x00, 0x80]))),
        Zeroizing::new(cmac(key, &sv([0x5A, 0xA5, 0x00, 0x01, 0x00, 0x80]))),
    )
}

/// An authentication in progress.
pub struct Authentication {
    key: Zeroizing<Key>,
    key_no: u8,
    /// `None` for EV2First; the running session's TI and counter for NonFirst.
    kept: Option<([u8; 4], u16)>,
}

/// Step two of an authentication: waiting for the card's last answer.
pub struct AuthenticationReply {
    key: Zeroizing<Key>,
    rnd_a: [u8; 16],
    rnd_b: [u8; 16],
    kept: Option<([u8; 4], u16)>,
}

impl Authentication {
    /// AuthenticateEV2First with key `key_no` (starts a new session: TI and CmdCtr reset).
    pub fn first(key: &Key, key_no: u8) -> (Self, Vec<u8>) {
        (
            Self {
                key: Zeroizing::new(*key),
                key_no,
                kept: None,
            },
            // 90 71 00 00 02 KeyNo LenCap=00 00: always valid.
            vec![0x90, 0x71, 0x00, 0x00, 0x02, key_no, 0x00, 0x00],
        )
    }

    /// AuthenticateEV2NonFirst with key `key_no` inside `session` (TI and CmdCtr kept).
    pub fn non_first(key: &Key, key_no: u8, session: &Session) -> (Self, Vec<u8>) {
        (
            Self {
                key: Zeroizing::new(*key),
                key_no,
                kept: Some((session.ti(), session.cmd_ctr())),
            },
            vec![0x90, 0x77, 0x00, 0x00, 0x01, key_no, 0x00],
        )
    }

    /// The key number being authenticated.
    pub fn key_no(&self) -> u8 {
        self.key_no
    }

    /// Takes the card's encrypted RndB and the PCD's fresh RndA (from the caller's RNG); returns
    /// the second command.
    pub fn challenge(
        self,
        r_apdu: &[u8],
        rnd_a: [u8; 16],
    ) -> Result<(AuthenticationReply, Vec<u8>), NfcError> {
        let data = apdu::expect(r_apdu, Status::AdditionalFrame)?;
        if data.len() != 16 {
            return Err(NfcError::Malformed("encrypted RndB length"));
        }
        let rnd_b: [u8; 16] = cbc_decrypt(&self.key, &ZERO_IV, data)?
            .try_into()
            .map_err(|_| NfcError::Malformed("RndB"))?;
        let mut plain = Vec::with_capacity(32);
        plain.extend_from_slice(&rnd_a);
        plain.extend_from_slice(&rotate_left(&rnd_b));
        let enc = cbc_encrypt(&self.key, &ZERO_IV, &plain)?;
        let command = apdu::native(0xAF, &enc)?;
        Ok((
            AuthenticationReply {
                key: self.key,
                rnd_a,
                rnd_b,
                kept: self.kept,
            },
            command,
        ))
    }
}

impl AuthenticationReply {
    /// Checks the card's proof (its rotation of RndA) and returns the session.
    pub fn finish(self, r_apdu: &[u8]) -> Result<Session, NfcError> {
        let data = apdu::expect(r_apdu, Status::Ok)?;
        let plain = Zeroizing::new(cbc_decrypt(&self.key, &ZERO_IV, data)?);
        let (ti, rnd_a_rot, cmd_ctr) = match self.kept {
            None => {
                if plain.len() != 32 {
                    return Err(NfcError::Malformed("EV2First answer length"));
                }
                let mut ti = [0u8; 4];
                ti.copy_from_slice(&plain[..4]);
                (ti, &plain[4..20], 0)
            }
            Some((ti, ctr)) => {
                if plain.len() != 16 {
                    return Err(NfcError::Malformed("EV2NonFirst answer length"));
                }
                (ti, &plain[..16], ctr)
            }
        };
        let expected = rotate_left(&self.rnd_a);
        if !bool::from(rnd_a_rot.ct_eq(&expected)) {
            return Err(NfcError::CardNotAuthentic);
        }
        let (enc, mac) = session_keys(&self.key, &self.rnd_a, &self.rnd_b);
        Ok(Session::new(ti, cmd_ctr, enc, mac))
    }
}
