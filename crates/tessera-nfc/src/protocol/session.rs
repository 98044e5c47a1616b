//! Secure messaging in an authenticated session: command counter, MACs and Full-mode
//! encryption (`docs/ntag424.md` §secure messaging).

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::apdu::{self, Status};
use super::crypto::{Key, cbc_decrypt, cbc_encrypt, crc32nk, encrypt_block, mact, pad, unpad};
use crate::NfcError;

/// How a command's data travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CommMode {
    /// In clear, no MAC.
    Plain,
    /// In clear with a MAC.
    Mac,
    /// Encrypted and MACed.
    Full,
}

/// An authenticated session: transaction id, command counter and the two session keys.
pub struct Session {
    ti: [u8; 4],
    cmd_ctr: u16,
    k_enc: Zeroizing<Key>,
    k_mac: Zeroizing<Key>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cmd_ctr", &self.cmd_ctr)
            .finish_non_exhaustive()
    }
}

/// A command sent in a session, waiting for its response.
#[derive(Debug)]
pub struct Pending {
    mode: CommMode,
}

impl Session {
    /// A session from its parts (as authentication derives them).
    pub fn new(ti: [u8; 4], cmd_ctr: u16, k_enc: Zeroizing<Key>, k_mac: Zeroizing<Key>) -> Self {
        Self {
            ti,
            cmd_ctr,
            k_enc,
            k_mac,
        }
    }

    /// Transaction identifier.
    pub fn ti(&self) -> [u8; 4] {
        self.ti
    }

    /// Current command counter.
    pub fn cmd_ctr(&self) -> u16 {
        self.cmd_ctr
    }

    fn iv(&self, label: [u8; 2], ctr: u16) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..2].copy_from_slice(&label);
        b[2..6].copy_from_slice(&self.ti);
        b[6..8].copy_from_slice(&ctr.to_le_bytes());
        encrypt_block(&self.k_enc, &b)
    }

    /// Builds the C-APDU for `ins` with `header` (always in clear) and `data` in `mode`.
    pub fn command(
        &self,
        ins: u8,
        header: &[u8],
        data: &[u8],
        mode: CommMode,
    ) -> Result<(Vec<u8>, Pending), NfcError> {
        let data = match mode {
            CommMode::Full if !data.is_empty() => cbc_encrypt(
                &self.k_enc,
                &self.iv([0xA5, 0x5A], self.cmd_ctr),
                &pad(data),
            )?,
            _ => data.to_vec(),
        };
        let mut body = header.to_vec();
        body.extend_from_slice(&data);
        if mode != CommMode::Plain {
            let mut input = vec![ins];
            input.extend_from_slice(&self.cmd_ctr.to_le_bytes());
            input.extend_from_slice(&self.ti);
            input.extend_from_slice(header);
            input.extend_from_slice(&data);
            body.extend_from_slice(&mact(&self.k_mac, &input));
        }
        Ok((apdu::native(ins, &body)?, Pending { mode }))
    }

    /// Checks (and in Full mode decrypts) the response to `pending`; advances the counter.
    /// Any status but OK is [`NfcError::Card`] and ends the session's usefulness (re-authenticate).
    pub fn response(&mut self, pending: Pending, r_apdu: &[u8]) -> Result<Vec<u8>, NfcError> {
        let data = apdu::expect(r_apdu, Status::Ok)?;
        let next = self.cmd_ctr.wrapping_add(1);
        let out = match pending.mode {
            CommMode::Plain => data.to_vec(),
            CommMode::Mac | CommMode::Full => {
                if data.len() < 8 {
                    return Err(NfcError::Malformed("response without MAC"));
                }
                let (body, mac) = data.split_at(data.len() - 8);
                let mut input = vec![0x00];
                input.extend_from_slice(&next.to_le_bytes());
                input.extend_from_slice(&self.ti);
                input.extend_from_slice(body);
                if !bool::from(mact(&self.k_mac, &input).ct_eq(mac)) {
                    return Err(NfcError::Integrity);
                }
                if pending.mode == CommMode::Full && !body.is_empty() {
                    let plain = cbc_decrypt(&self.k_enc, &self.iv([0x5A, 0xA5], next), body)?;
                    unpad(&plain)?.to_vec()
                } else {
                    body.to_vec()
                }
            }
        };
        self.cmd_ctr = next;
        Ok(out)
    }

    /// ChangeKey data for a key other than the authenticated one (case 1):
    /// `(new XOR old) || version || CRC32NK(new)`.
    pub fn change_key_other(old: &Key, new: &Key, version: u8) -> Zeroizing<Vec<u8>> {
        let mut d = Zeroizing::new(Vec::with_capacity(21));
        d.extend(old.iter().zip(new).map(|(a, b)| a ^ b));
        d.push(version);
        d.extend_from_slice(&crc32nk(new).to_le_bytes());
        d
    }

    /// ChangeKey data for the authenticated key itself (case 2): `new || version`. The card
    /// answers with a bare `91 00` and the session ends.
    pub fn change_key_same(new: &Key, version: u8) -> Zeroizing<Vec<u8>> {
        let mut d = Zeroizing::new(new.to_vec());
        d.push(version);
        d
    }
}
