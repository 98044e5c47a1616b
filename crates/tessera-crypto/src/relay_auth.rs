//! The proof a device gives the relay when it registers or logs in (`docs/relay-protocol.md`
//! §Authentication): a hybrid signature by the device's auth key over the connection's challenge,
//! the relay's pin, the account and the device.

use rand::{CryptoRng, Rng};

use crate::CryptoError;
use crate::hybrid::{HybridPublicKey, HybridSignature, HybridSigningKey};
use crate::identity::AccountId;

/// Signature label of relay login proofs.
pub const RELAY_LOGIN_LABEL: &str = "tessera v1 relay login";

fn message(nonce: &[u8; 32], pin: &[u8; 32], account_id: &AccountId, device_id: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + 32 + 32 + 4);
    m.extend_from_slice(nonce);
    m.extend_from_slice(pin);
    m.extend_from_slice(&account_id.0);
    m.extend_from_slice(&device_id.to_be_bytes());
    m
}

/// Signs a login proof with the device's auth key. `pin` is the SHA-256 of the relay's key as
/// the client saw it in the TLS handshake.
pub fn sign_relay_login<R: Rng + CryptoRng>(
    auth_key: &HybridSigningKey,
    nonce: &[u8; 32],
    pin: &[u8; 32],
    account_id: &AccountId,
    device_id: u32,
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    Ok(auth_key
        .sign(
            RELAY_LOGIN_LABEL,
            &message(nonce, pin, account_id, device_id),
            rng,
        )?
        .to_bytes())
}

/// Checks a login proof against the device's auth key (from its certificate).
pub fn verify_relay_login(
    auth_key: &HybridPublicKey,
    nonce: &[u8; 32],
    pin: &[u8; 32],
    account_id: &AccountId,
    device_id: u32,
    proof: &[u8],
) -> Result<(), CryptoError> {
    let signature = HybridSignature::from_bytes(proof)?;
    auth_key.verify(
        RELAY_LOGIN_LABEL,
        &message(nonce, pin, account_id, device_id),
        &signature,
        "relay login proof",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn a_proof_verifies_only_for_its_own_inputs() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let key = HybridSigningKey::generate(&mut rng);
        let (nonce, pin, account) = ([1u8; 32], [2u8; 32], AccountId([3u8; 32]));
        let proof = sign_relay_login(&key, &nonce, &pin, &account, 5, &mut rng).expect("sign");
        let public = key.public();
        assert!(verify_relay_login(public, &nonce, &pin, &account, 5, &proof).is_ok());
        for (n, p, a, d) in [
            ([9u8; 32], pin, account, 5),
            (nonce, [9u8; 32], account, 5),
            (nonce, pin, AccountId([9u8; 32]), 5),
            (nonce, pin, account, 6),
        ] {
            assert!(matches!(
                verify_relay_login(public, &n, &p, &a, d, &proof),
                Err(CryptoError::BadSignature { .. })
            ));
        }
        let other = HybridSigningKey::generate(&mut rng);
        assert!(verify_relay_login(other.public(), &nonce, &pin, &account, 5, &proof).is_err());
        assert!(verify_relay_login(public, &nonce, &pin, &account, 5, &proof[1..]).is_err());
    }
}
