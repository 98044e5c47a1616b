//! libsignal devices with in-memory stores, for session tests and benchmarks.

use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use rand_chacha::ChaCha20Rng;
use tessera_crypto::signal::{
    CiphertextMessage, DeviceId, GenericSignedPreKey as _, InMemSignalProtocolStore, KeyPair,
    KyberPreKeyRecord, KyberPreKeyStore as _, PreKeyBundle, PreKeyRecord, PreKeySignalMessage,
    PreKeyStore as _, ProtocolAddress, SignalMessage, SignalProtocolError, SignedPreKeyRecord,
    SignedPreKeyStore as _, Timestamp, kem, message_decrypt, message_encrypt,
    process_prekey_bundle,
};
use tessera_crypto::{
    AccountPublic, OneTimePrekeyBatch, OneTimePrekeyProof, PrekeySignature, PrekeyStatement,
    verified_bundle,
};

use super::{NOW, Person};

/// What the relay hands out for one device: the signed statement and one one-time prekey.
pub struct Published {
    pub statement: PrekeyStatement,
    pub signature: PrekeySignature,
    pub spk_sig: Vec<u8>,
    pub kyber_sig: Vec<u8>,
    pub proof: OneTimePrekeyProof,
}

impl Published {
    /// Verifies everything (ML-DSA-87 statement, Merkle proof) and builds the libsignal bundle.
    pub fn verify(&self, account: &AccountPublic) -> PreKeyBundle {
        verified_bundle(
            account,
            &self.statement,
            &self.signature,
            &self.spk_sig,
            &self.kyber_sig,
            Some(&self.proof),
        )
        .unwrap()
    }
}

pub fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A device with its own libsignal store.
pub struct Device {
    pub person: Person,
    pub store: InMemSignalProtocolStore,
    pub address: ProtocolAddress,
}

impl Device {
    pub fn new(r: &mut ChaCha20Rng, name: &str) -> Self {
        let person = Person::new(r, 1);
        let store = InMemSignalProtocolStore::new(person.identity.signal_identity().unwrap(), 1000)
            .unwrap();
        let address = ProtocolAddress::new(name.to_string(), DeviceId::new(1).unwrap());
        Self {
            person,
            store,
            address,
        }
    }

    /// Publishes prekeys (stored locally) and returns what the relay would hand a peer that
    /// fetched one-time prekey `index`.
    pub fn publish(&mut self, r: &mut ChaCha20Rng, index: usize) -> Published {
        let signal = self.person.identity.signal_identity().unwrap();
        let spk = KeyPair::generate(r);
        let kyber = kem::KeyPair::generate(kem::KeyType::Kyber1024, r);
        let spk_sig = signal
            .private_key()
            .calculate_signature(&spk.public_key.serialize(), r)
            .unwrap();
        let kyber_sig = signal
            .private_key()
            .calculate_signature(&kyber.public_key.serialize(), r)
            .unwrap();
        let one_time: Vec<_> = (0..8u32).map(|i| (i + 1, KeyPair::generate(r))).collect();
        for (id, pair) in &one_time {
            self.store
                .save_pre_key((*id).into(), &PreKeyRecord::new((*id).into(), pair))
                .now_or_never()
                .unwrap()
                .unwrap();
        }
        self.store
            .save_signed_pre_key(
                1.into(),
                &SignedPreKeyRecord::new(
                    1.into(),
                    Timestamp::from_epoch_millis(NOW),
                    &spk,
                    &spk_sig,
                ),
            )
            .now_or_never()
            .unwrap()
            .unwrap();
        self.store
            .save_kyber_pre_key(
                1.into(),
                &KyberPreKeyRecord::new(
                    1.into(),
                    Timestamp::from_epoch_millis(NOW),
                    &kyber,
                    &kyber_sig,
                ),
            )
            .now_or_never()
            .unwrap()
            .unwrap();
        let batch =
            OneTimePrekeyBatch::new(one_time.iter().map(|(id, p)| (*id, p.public_key)).collect())
                .unwrap();
        let statement = PrekeyStatement {
            account_id: self.person.identity.public().account_id(),
            device_id: 1,
            registration_id: 1000,
            signed_prekey_id: 1,
            signed_prekey: spk.public_key,
            kyber_prekey_id: 1,
            kyber_prekey: kyber.public_key.serialize().to_vec(),
            batch_id: 1,
            batch_size: batch.len() as u32,
            batch_root: batch.root(),
        };
        let sig = statement.sign(&self.person.identity, r).unwrap();
        let proof = batch.proof(index).unwrap();
        Published {
            statement,
            signature: sig,
            spk_sig: spk_sig.to_vec(),
            kyber_sig: kyber_sig.to_vec(),
            proof,
        }
    }

    /// As `publish`, then verified the way a peer does.
    pub fn publish_and_fetch(&mut self, r: &mut ChaCha20Rng, index: usize) -> PreKeyBundle {
        let p = self.publish(r, index);
        p.verify(&self.person.identity.public())
    }

    pub fn encrypt(
        &mut self,
        to: &ProtocolAddress,
        text: &[u8],
        r: &mut ChaCha20Rng,
    ) -> CiphertextMessage {
        message_encrypt(
            text,
            to,
            &mut self.store.session_store,
            &mut self.store.identity_store,
            at(NOW),
            r,
        )
        .now_or_never()
        .unwrap()
        .unwrap()
    }

    pub fn decrypt(
        &mut self,
        from: &ProtocolAddress,
        msg: &CiphertextMessage,
        r: &mut ChaCha20Rng,
    ) -> Result<Vec<u8>, SignalProtocolError> {
        let s = &mut self.store;
        message_decrypt(
            msg,
            from,
            &mut s.session_store,
            &mut s.identity_store,
            &mut s.pre_key_store,
            &s.signed_pre_key_store,
            &mut s.kyber_pre_key_store,
            r,
        )
        .now_or_never()
        .unwrap()
    }
}

pub fn start(alice: &mut Device, bob: &mut Device, r: &mut ChaCha20Rng) {
    // Bob is offline: Alice only has the bundle the relay handed her.
    let bundle = bob.publish_and_fetch(r, 3);
    process_prekey_bundle(
        &bob.address,
        &mut alice.store.session_store,
        &mut alice.store.identity_store,
        &bundle,
        at(NOW),
        r,
    )
    .now_or_never()
    .unwrap()
    .unwrap();
}

pub fn reparse(msg: &CiphertextMessage) -> CiphertextMessage {
    // What arrives from the network is bytes; parse them back the way the receiver will.
    match msg {
        CiphertextMessage::PreKeySignalMessage(m) => CiphertextMessage::PreKeySignalMessage(
            PreKeySignalMessage::try_from(m.serialized()).unwrap(),
        ),
        CiphertextMessage::SignalMessage(m) => {
            CiphertextMessage::SignalMessage(SignalMessage::try_from(m.serialized()).unwrap())
        }
        _ => panic!("unexpected message type"),
    }
}
