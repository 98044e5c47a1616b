//! The primitives of NTAG 424 DNA secure messaging (`docs/ntag424.md` §primitives): AES-128,
//! AES-CMAC (RFC 4493), the truncated MACt, ISO/IEC 9797-1 padding method 2 and CRC32NK.

use aes::Aes128;
use aes::cipher::{
    BlockDecryptMut as _, BlockEncrypt as _, BlockEncryptMut as _, KeyInit as _, KeyIvInit as _,
};
use cmac::{Cmac, Mac as _};

use crate::NfcError;

/// An AES-128 key.
pub type Key = [u8; 16];

/// AES-CMAC (RFC 4493).
pub fn cmac(key: &Key, message: &[u8]) -> [u8; 16] {
    // A 16-byte key is always a valid AES-128 key.
    let mut mac = <Cmac<Aes128> as cmac::Mac>::new(key.into());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// MACt: the eight odd-indexed bytes of a CMAC (bytes 1, 3, …, 15).
pub fn truncate(full: &[u8; 16]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = full[2 * i + 1];
    }
    out
}

/// MACt(key, message).
pub fn mact(key: &Key, message: &[u8]) -> [u8; 8] {
    truncate(&cmac(key, message))
}

/// ISO/IEC 9797-1 padding method 2: `80` then zeros to a multiple of 16 (a full block if the
/// input already is one).
pub fn pad(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.push(0x80);
    while !out.len().is_multiple_of(16) {
        out.push(0);
    }
    out
}

/// Removes method-2 padding; refuses anything else.
pub fn unpad(data: &[u8]) -> Result<&[u8], NfcError> {
    if data.is_empty() || !data.len().is_multiple_of(16) {
        return Err(NfcError::Malformed("padded data length"));
    }
    let end = data
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(NfcError::Malformed("padding"))?;
    if data[end] != 0x80 || data.len() - end > 16 {
        return Err(NfcError::Malformed("padding"));
    }
    Ok(&data[..end])
}

/// CRC32NK: CRC-32/ISO-HDLC without the final XOR (JAMCRC), as ChangeKey uses it.
pub fn crc32nk(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xFFFF_FFFF;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// AES-128 of one block.
pub fn encrypt_block(key: &Key, block: &[u8; 16]) -> [u8; 16] {
    let cipher = Aes128::new(key.into());
    let mut b = (*block).into();
    cipher.encrypt_block(&mut b);
    b.into()
}

/// AES-128-CBC encryption of whole blocks.
pub fn cbc_encrypt(key: &Key, iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, NfcError> {
    if !data.len().is_multiple_of(16) {
        return Err(NfcError::Malformed("CBC input length"));
    }
    let mut enc = cbc::Encryptor::<Aes128>::new(key.into(), iv.into());
    let mut out = data.to_vec();
    for chunk in out.chunks_exact_mut(16) {
        enc.encrypt_block_mut(chunk.into());
    }
    Ok(out)
}

/// AES-128-CBC decryption of whole blocks.
pub fn cbc_decrypt(key: &Key, iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, NfcError> {
    if !data.len().is_multiple_of(16) {
        return Err(NfcError::Malformed("CBC input length"));
    }
    let mut dec = cbc::Decryptor::<Aes128>::new(key.into(), iv.into());
    let mut out = data.to_vec();
    for chunk in out.chunks_exact_mut(16) {
        dec.decrypt_block_mut(chunk.into());
    }
    Ok(out)
}
