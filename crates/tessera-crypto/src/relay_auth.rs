//! The proof a device gives the relay when it registers or logs in (`docs/relay-protocol.md`
//! §Authentication): a hybrid signature by the device's auth key over the connection's challenge,
//! the relay's pin, the account and the device.

use rand::{CryptoRng, Rng};

use crate::CryptoError;
use crate::hybrid::{HybridPublicKey, HybridSignature, HybridSigningKey};
use crate::identity::{AccountId, AccountIdentity, AccountPublic};

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

/// Signature label of account deletion requests.
pub const ACCOUNT_DELETION_LABEL: &str = "tessera v1 delete account";

fn deletion_message(nonce: &[u8; 32], pin: &[u8; 32], account_id: &AccountId) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + 32 + 32);
    m.extend_from_slice(nonce);
    m.extend_from_slice(pin);
    m.extend_from_slice(&account_id.0);
    m
}

/// Signs a request to delete the account at the relay (`docs/relay-protocol.md`,
/// `DeleteAccount`) with the **account identity** (not a device key: a device's login is not
/// enough to end the account). `nonce` is the challenge of the connection the request travels
/// on, `pin` the relay's, so the proof is good for that one connection to that one relay.
pub fn sign_account_deletion<R: Rng + CryptoRng>(
    identity: &AccountIdentity,
    nonce: &[u8; 32],
    pin: &[u8; 32],
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    let account_id = identity.public().account_id();
    Ok(identity
        .sign(
            ACCOUNT_DELETION_LABEL,
            &deletion_message(nonce, pin, &account_id),
            rng,
        )?
        .to_bytes())
}

/// Checks an account deletion proof against the account's public identity.
pub fn verify_account_deletion(
    account: &AccountPublic,
    nonce: &[u8; 32],
    pin: &[u8; 32],
    proof: &[u8],
) -> Result<(), CryptoError> {
    let signature = HybridSignature::from_bytes(proof)?;
    account.verify(
        ACCOUNT_DELETION_LABEL,
        &deletion_message(nonce, pin, &account.account_id()),
        &signature,
        "account deletion proof",
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

    #[test]
    fn a_deletion_proof_needs_the_account_identity_and_is_bound_to_its_connection() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let alice = AccountIdentity::generate(&mut rng);
        let bob = AccountIdentity::generate(&mut rng);
        let (nonce, pin) = ([1u8; 32], [2u8; 32]);
        let proof = sign_account_deletion(&alice, &nonce, &pin, &mut rng).expect("sign");
        assert!(verify_account_deletion(&alice.public(), &nonce, &pin, &proof).is_ok());
        // Another connection, another relay, another account, a damaged proof: refused.
        assert!(verify_account_deletion(&alice.public(), &[9; 32], &pin, &proof).is_err());
        assert!(verify_account_deletion(&alice.public(), &nonce, &[9; 32], &proof).is_err());
        assert!(verify_account_deletion(&bob.public(), &nonce, &pin, &proof).is_err());
        assert!(verify_account_deletion(&alice.public(), &nonce, &pin, &proof[1..]).is_err());
        // A login proof with the same inputs is not a deletion proof (the labels differ).
        let device = HybridSigningKey::generate(&mut rng);
        let login = sign_relay_login(
            &device,
            &nonce,
            &pin,
            &alice.public().account_id(),
            1,
            &mut rng,
        )
        .expect("sign");
        assert!(verify_account_deletion(&alice.public(), &nonce, &pin, &login).is_err());
    }
}
