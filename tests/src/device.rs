//! Test devices: real account identities, device certificates, login proofs and prekeys,
//! speaking to the real relay through `tessera-net`'s client.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use tessera_crypto::signal::{KeyPair, kem};
use tessera_crypto::{
    AccountIdentity, AccountPublic, DeviceCertificate, DeviceCertificateFields, EnvelopeKeyPair,
    HybridSigningKey, OneTimePrekeyBatch, PrekeyStatement, SignedPrekeys,
};
use tessera_net::{Pushes, RelayClient, Transport};
use tessera_proto::{RelayAddress, WirePrekey};

const DAY_MS: u64 = 86_400_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A deterministic RNG for test keys.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// An account with its keys.
pub struct TestAccount {
    /// The identity.
    pub identity: AccountIdentity,
    /// Its public keys.
    pub public: AccountPublic,
}

impl TestAccount {
    /// A new account.
    pub fn new(rng: &mut ChaCha20Rng) -> Self {
        let identity = AccountIdentity::generate(rng);
        let public = identity.public();
        Self { identity, public }
    }

    /// A device of this account with a certificate valid from yesterday for 30 days.
    pub fn device(&self, device_id: u32, rng: &mut ChaCha20Rng) -> TestDevice {
        let auth = HybridSigningKey::generate(rng);
        let envelope = EnvelopeKeyPair::generate(rng);
        let now = now_ms();
        let certificate = DeviceCertificate::issue(
            &self.identity,
            DeviceCertificateFields {
                device_id,
                serial: 1,
                auth_key: auth.public().clone(),
                envelope_key: envelope.public().clone(),
                not_before: now - DAY_MS,
                not_after: now + 30 * DAY_MS,
            },
            rng,
        )
        .unwrap();
        TestDevice {
            account: self.public.clone(),
            identity: self.identity.clone(),
            auth,
            certificate,
            device_id,
        }
    }
}

/// One device of an account.
pub struct TestDevice {
    /// The account's public keys.
    pub account: AccountPublic,
    /// The account identity (to sign prekeys).
    pub identity: AccountIdentity,
    /// The device's relay-auth key.
    pub auth: HybridSigningKey,
    /// Its certificate.
    pub certificate: DeviceCertificate,
    /// Its number.
    pub device_id: u32,
}

impl TestDevice {
    /// A new account with one device (number 1).
    pub fn new(seed: u64) -> Self {
        let mut r = rng(seed);
        TestAccount::new(&mut r).device(1, &mut r)
    }

    /// Connects and registers (or re-registers) this device.
    pub async fn register(&self, addr: &RelayAddress) -> (RelayClient, Pushes) {
        let (client, pushes) = RelayClient::connect(addr, &Transport::Direct)
            .await
            .unwrap();
        client
            .register(
                &self.account,
                &self.certificate,
                &self.auth,
                &mut rand::rng(),
            )
            .await
            .unwrap();
        (client, pushes)
    }

    /// Connects and logs in.
    pub async fn login(&self, addr: &RelayAddress) -> (RelayClient, Pushes) {
        let (client, pushes) = RelayClient::connect(addr, &Transport::Direct)
            .await
            .unwrap();
        client
            .login(
                &self.account.account_id(),
                self.device_id,
                &self.auth,
                &mut rand::rng(),
            )
            .await
            .unwrap();
        (client, pushes)
    }

    /// Signed prekeys with a batch of `n` one-time prekeys (ids from 1000).
    pub fn prekeys(&self, n: u32, rng: &mut ChaCha20Rng) -> (SignedPrekeys, Vec<WirePrekey>) {
        let signal = self.identity.signal_identity().unwrap();
        let spk = KeyPair::generate(rng);
        let kyber = kem::KeyPair::generate(kem::KeyType::Kyber1024, rng);
        let sig = |bytes: &[u8], rng: &mut ChaCha20Rng| -> [u8; 64] {
            (*signal
                .private_key()
                .calculate_signature(bytes, rng)
                .unwrap())
            .try_into()
            .unwrap()
        };
        let spk_sig = sig(&spk.public_key.serialize(), rng);
        let kyber_sig = sig(&kyber.public_key.serialize(), rng);
        let one_time: Vec<(u32, KeyPair)> =
            (0..n).map(|i| (1000 + i, KeyPair::generate(rng))).collect();
        let (batch_size, batch_root) = if n == 0 {
            (0, [0; 32])
        } else {
            let batch = OneTimePrekeyBatch::new(
                one_time.iter().map(|(id, k)| (*id, k.public_key)).collect(),
            )
            .unwrap();
            (n, batch.root())
        };
        let statement = PrekeyStatement {
            account_id: self.account.account_id(),
            device_id: self.device_id,
            registration_id: 4242,
            signed_prekey_id: 1,
            signed_prekey: spk.public_key,
            kyber_prekey_id: 1,
            kyber_prekey: kyber.public_key.serialize().to_vec(),
            batch_id: 1,
            batch_size,
            batch_root,
        };
        let signature = statement.sign(&self.identity, rng).unwrap();
        let wire = one_time
            .iter()
            .map(|(id, k)| WirePrekey {
                id: *id,
                public: k.public_key.serialize().to_vec(),
            })
            .collect();
        (
            SignedPrekeys {
                statement,
                signature,
                signed_prekey_signature: spk_sig,
                kyber_prekey_signature: kyber_sig,
            },
            wire,
        )
    }
}
