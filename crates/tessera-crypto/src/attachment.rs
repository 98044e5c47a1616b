//! The attachment format (`docs/attachments.md`): a file encrypted under a fresh key in
//! 64 KiB chunks, each sealed with its counter and a last-chunk flag in the nonce, so that
//! truncation, reordering, duplication and splicing all fail; padded so the relay learns only a
//! size bucket. Push-based and without I/O: the caller feeds bytes as they come and never holds
//! the whole file.

use chacha20poly1305::aead::{AeadInPlace as _, KeyInit as _};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use rand::{CryptoRng, RngCore};
use zeroize::{Zeroize as _, Zeroizing};

/// Plaintext bytes per chunk (the last may be shorter).
pub const CHUNK_LEN: usize = 64 * 1024;
/// Bytes an encrypted chunk adds (the Poly1305 tag).
pub const CHUNK_TAG_LEN: usize = 16;
/// An encrypted full chunk.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + CHUNK_TAG_LEN;
/// The least a file is padded to.
pub const MIN_PADDED_LEN: u64 = 1024;
/// The largest file the format carries (the relay's limit is lower; 2 GiB by default).
pub const MAX_FILE_LEN: u64 = 1 << 40;

const PAYLOAD_KEY_CONTEXT: &str = "tessera 2026 attachment payload key";

/// What went wrong opening an attachment. None of it says anything about the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// Chunk `0` did not authenticate: changed, reordered, duplicated, from another file, or a
    /// chunk that is not the last one presented as the last.
    #[error("attachment chunk {0} does not authenticate")]
    Chunk(u64),
    /// The blob ended before its last chunk.
    #[error("the attachment is truncated")]
    Truncated,
    /// More bytes than the attachment has.
    #[error("the attachment is longer than its size says")]
    TooLong,
    /// The blob's digest is not the one in the message.
    #[error("the attachment's digest does not match")]
    Digest,
    /// The padding after the file is not zeros.
    #[error("the attachment's padding is not zeros")]
    Padding,
    /// The sender fed a different number of bytes than it declared.
    #[error("the file's length changed while it was being encrypted")]
    LengthChanged,
    /// The file is larger than the format carries.
    #[error("the file is too large")]
    TooLarge,
}

/// An attachment's own key, carried inside the session with the attachment message.
pub struct FileKey(Zeroizing<[u8; 32]>);

impl FileKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut k[..]);
        Self(k)
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Its 32 bytes (to put in the attachment message).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        let mut payload = blake3::derive_key(PAYLOAD_KEY_CONTEXT, &self.0[..]);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&payload));
        payload.zeroize();
        cipher
    }
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(…)")
    }
}

/// The length a file of `len` bytes is padded to: at least [`MIN_PADDED_LEN`], then Padmé
/// (the low `⌊log2 E⌋ + 1` bits of the length rounded up, E = ⌊log2 L⌋): at most about 12 %
/// more, and a length leaks O(log log L) bits.
pub fn padded_len(len: u64) -> u64 {
    let l = len.max(MIN_PADDED_LEN);
    let e = 63 - u64::from(l.leading_zeros());
    let s = 64 - u64::from(e.leading_zeros());
    let zeros = e - s;
    let mask = (1u64 << zeros) - 1;
    (l + mask) & !mask
}

/// How many chunks a file of `len` bytes has.
pub fn chunk_count(len: u64) -> u64 {
    padded_len(len).div_ceil(CHUNK_LEN as u64)
}

/// The size of the encrypted blob of a file of `len` bytes.
pub fn blob_len(len: u64) -> u64 {
    padded_len(len) + chunk_count(len) * CHUNK_TAG_LEN as u64
}

fn nonce(counter: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    *Nonce::from_slice(&n)
}

/// Encrypts a file of a declared length as it is fed.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    len: u64,
    fed: u64,
    counter: u64,
    chunks: u64,
    buf: Zeroizing<Vec<u8>>,
    digest: blake3::Hasher,
}

impl Sealer {
    /// A sealer for a file of exactly `len` bytes.
    pub fn new(key: &FileKey, len: u64) -> Result<Self, AttachmentError> {
        if len > MAX_FILE_LEN {
            return Err(AttachmentError::TooLarge);
        }
        Ok(Self {
            cipher: key.cipher(),
            len,
            fed: 0,
            counter: 0,
            chunks: chunk_count(len),
            buf: Zeroizing::new(Vec::with_capacity(CHUNK_LEN)),
            digest: blake3::Hasher::new(),
        })
    }

    /// Takes the next bytes of the file; returns the encrypted chunks they completed (every
    /// chunk but the last; [`Sealer::finish`] seals that one).
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<u8>, AttachmentError> {
        if self.fed + data.len() as u64 > self.len {
            return Err(AttachmentError::LengthChanged);
        }
        self.fed += data.len() as u64;
        let mut out = Vec::new();
        while !data.is_empty() {
            let take = (CHUNK_LEN - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            // A full chunk is sealed once more follows: the last one waits for `finish`.
            if self.buf.len() == CHUNK_LEN && self.counter + 1 < self.chunks {
                self.seal_buffer(false, &mut out);
            }
        }
        Ok(out)
    }

    fn seal_buffer(&mut self, last: bool, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        // Encrypting in place cannot fail for a buffer of at most one chunk.
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(self.counter, last), &[], &mut out[start..])
            .unwrap_or_default();
        out.extend_from_slice(&tag);
        self.digest.update(&out[start..]);
        self.counter += 1;
    }

    /// Pads, seals what is left, and returns it with the digest of the whole blob.
    pub fn finish(mut self) -> Result<(Vec<u8>, [u8; 32]), AttachmentError> {
        if self.fed != self.len {
            return Err(AttachmentError::LengthChanged);
        }
        let mut out = Vec::new();
        let mut padding = padded_len(self.len) - self.len;
        while self.counter < self.chunks {
            let room = (CHUNK_LEN - self.buf.len()) as u64;
            let add = room.min(padding) as usize;
            let filled = self.buf.len() + add;
            self.buf.resize(filled, 0);
            padding -= add as u64;
            let last = self.counter + 1 == self.chunks;
            self.seal_buffer(last, &mut out);
        }
        Ok((out, *self.digest.finalize().as_bytes()))
    }
}

/// Decrypts a blob as it is fed, for a file of the length and digest the message gave.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    len: u64,
    digest: [u8; 32],
    hasher: blake3::Hasher,
    counter: u64,
    chunks: u64,
    /// Plaintext bytes released so far.
    released: u64,
    buf: Vec<u8>,
}

impl Opener {
    /// An opener for the blob of a file of `len` bytes whose blob digest is `digest`.
    pub fn new(key: &FileKey, len: u64, digest: [u8; 32]) -> Result<Self, AttachmentError> {
        if len > MAX_FILE_LEN {
            return Err(AttachmentError::TooLarge);
        }
        Ok(Self {
            cipher: key.cipher(),
            len,
            digest,
            hasher: blake3::Hasher::new(),
            counter: 0,
            chunks: chunk_count(len),
            released: 0,
            buf: Vec::with_capacity(SEALED_CHUNK_LEN),
        })
    }

    /// Takes the next bytes of the blob; returns the file bytes they completed. Each chunk is
    /// authenticated before any of it is returned; the whole blob's digest is checked by
    /// [`Opener::finish`], so a caller keeps what it got apart until then.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<u8>, AttachmentError> {
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.counter == self.chunks {
                return Err(AttachmentError::TooLong);
            }
            let want = self.sealed_len(self.counter) - self.buf.len();
            let take = want.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.sealed_len(self.counter) {
                self.open_buffer(&mut out)?;
            }
        }
        Ok(out)
    }

    /// The sealed length of chunk `i`.
    fn sealed_len(&self, i: u64) -> usize {
        let padded = padded_len(self.len);
        let before = i * CHUNK_LEN as u64;
        (padded - before).min(CHUNK_LEN as u64) as usize + CHUNK_TAG_LEN
    }

    fn open_buffer(&mut self, out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        self.hasher.update(&self.buf);
        let last = self.counter + 1 == self.chunks;
        let split = self.buf.len() - CHUNK_TAG_LEN;
        let (body, tag) = self.buf.split_at_mut(split);
        let tag = *Tag::from_slice(tag);
        self.cipher
            .decrypt_in_place_detached(&nonce(self.counter, last), &[], body, &tag)
            .map_err(|_| AttachmentError::Chunk(self.counter))?;
        // The file's bytes go out; what lies past the file's length must be zeros.
        let keep = (self.len - self.released).min(body.len() as u64) as usize;
        if body[keep..].iter().any(|b| *b != 0) {
            body.zeroize();
            return Err(AttachmentError::Padding);
        }
        out.extend_from_slice(&body[..keep]);
        body.zeroize();
        self.released += keep as u64;
        self.buf.clear();
        self.counter += 1;
        Ok(())
    }

    /// Checks that the blob was complete and is the one the message named.
    pub fn finish(self) -> Result<(), AttachmentError> {
        if self.counter < self.chunks {
            return Err(AttachmentError::Truncated);
        }
        if *self.hasher.finalize().as_bytes() != self.digest {
            return Err(AttachmentError::Digest);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn random_key(seed: u64) -> FileKey {
        use rand::SeedableRng as _;
        FileKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed))
    }

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn seal(key: &FileKey, data: &[u8], step: usize) -> (Vec<u8>, [u8; 32]) {
        let mut s = Sealer::new(key, data.len() as u64).unwrap();
        let mut blob = Vec::new();
        for part in data.chunks(step.max(1)) {
            blob.extend(s.push(part).unwrap());
        }
        let (rest, digest) = s.finish().unwrap();
        blob.extend(rest);
        (blob, digest)
    }

    fn open(
        key: &FileKey,
        len: u64,
        digest: [u8; 32],
        blob: &[u8],
        step: usize,
    ) -> Result<Vec<u8>, AttachmentError> {
        let mut o = Opener::new(key, len, digest)?;
        let mut out = Vec::new();
        for part in blob.chunks(step.max(1)) {
            out.extend(o.push(part)?);
        }
        o.finish()?;
        Ok(out)
    }

    #[test]
    fn padme_lengths() {
        assert_eq!(padded_len(0), 1024);
        assert_eq!(padded_len(1024), 1024);
        assert_eq!(padded_len(1025), 1088);
        assert_eq!(padded_len(65_536), 65_536);
        assert_eq!(padded_len(1_000_000), 1_015_808);
        for len in [1u64, 5_000, 123_456, 10_000_000, 1 << 31, (1 << 31) + 1] {
            let p = padded_len(len);
            assert!(p >= len && p >= MIN_PADDED_LEN);
            assert!(
                p - len.max(MIN_PADDED_LEN) <= len.max(MIN_PADDED_LEN) / 16,
                "{len}"
            );
        }
        assert_eq!(blob_len(0), 1024 + 16);
        assert_eq!(chunk_count(65_536), 1);
        assert_eq!(chunk_count(65_537), 2);
    }

    #[test]
    fn every_size_round_trips_whatever_the_pieces() {
        let key = random_key(1);
        for len in [
            0usize,
            1,
            1023,
            1024,
            65_535,
            65_536,
            65_537,
            3 * 65_536 + 17,
        ] {
            let data = file(len);
            for (seal_step, open_step) in [(1_000_000, 1_000_000), (7, 65_552), (65_536, 13)] {
                let (blob, digest) = seal(&key, &data, seal_step);
                assert_eq!(blob.len() as u64, blob_len(len as u64), "{len}");
                let back = open(&key, len as u64, digest, &blob, open_step).unwrap();
                assert_eq!(back, data, "{len}");
            }
        }
    }

    #[test]
    fn fail_truncated_reordered_duplicated_spliced_or_changed() {
        let key = random_key(2);
        let len = 3 * CHUNK_LEN as u64 + 100;
        let data = file(len as usize);
        let (blob, digest) = seal(&key, &data, 4096);
        let s = SEALED_CHUNK_LEN;
        let chunks: Vec<&[u8]> = blob.chunks(s).collect();
        assert_eq!(chunks.len(), 4);
        let try_open = |b: &[u8]| open(&key, len, digest, b, 50_000).unwrap_err();

        // The last chunk dropped: the third is not sealed as the last.
        assert_eq!(try_open(&blob[..3 * s]), AttachmentError::Truncated);
        let mut cut = blob[..3 * s].to_vec();
        cut.extend_from_slice(chunks[2]);
        assert_eq!(try_open(&cut), AttachmentError::Chunk(3));
        // Swapped, duplicated.
        let swapped = [chunks[1], chunks[0], chunks[2], chunks[3]].concat();
        assert_eq!(try_open(&swapped), AttachmentError::Chunk(0));
        let doubled = [chunks[0], chunks[0], chunks[2], chunks[3]].concat();
        assert_eq!(try_open(&doubled), AttachmentError::Chunk(1));
        // A chunk from another file (another key) of the same size.
        let (other, _) = seal(&random_key(3), &data, 4096);
        let spliced = [chunks[0], &other[s..2 * s], chunks[2], chunks[3]].concat();
        assert_eq!(try_open(&spliced), AttachmentError::Chunk(1));
        // One bit.
        let mut flipped = blob.clone();
        flipped[s + 5] ^= 1;
        assert_eq!(try_open(&flipped), AttachmentError::Chunk(1));
        // More than there is.
        let mut longer = blob.clone();
        longer.push(0);
        assert_eq!(try_open(&longer), AttachmentError::TooLong);
        // Intact chunks but another digest: a blob swapped at the relay for another one made
        // with the same key is caught at the end.
        assert_eq!(
            open(&key, len, [0; 32], &blob, 9999).unwrap_err(),
            AttachmentError::Digest
        );
        // The wrong key, or the wrong length, fail at the first chunk.
        assert_eq!(
            open(&random_key(4), len, digest, &blob, 9999).unwrap_err(),
            AttachmentError::Chunk(0)
        );
        assert!(open(&key, len - 1, digest, &blob, 9999).is_err());
    }

    #[test]
    fn fail_padding_that_is_not_zeros_and_a_length_that_changes() {
        // A sender that pads with something else: every chunk authenticates, the padding does
        // not pass.
        let key = random_key(5);
        let cipher = key.cipher();
        let mut chunk = vec![7u8; 1024];
        chunk[..10].copy_from_slice(b"0123456789");
        let tag = cipher
            .encrypt_in_place_detached(&nonce(0, true), &[], &mut chunk)
            .unwrap();
        chunk.extend_from_slice(&tag);
        let digest = *blake3::hash(&chunk).as_bytes();
        assert_eq!(
            open(&key, 10, digest, &chunk, 4096).unwrap_err(),
            AttachmentError::Padding
        );

        let mut s = Sealer::new(&key, 10).unwrap();
        assert_eq!(
            s.push(&[0; 11]).unwrap_err(),
            AttachmentError::LengthChanged
        );
        let mut s = Sealer::new(&key, 10).unwrap();
        s.push(&[0; 9]).unwrap();
        assert_eq!(s.finish().unwrap_err(), AttachmentError::LengthChanged);
        assert_eq!(
            Sealer::new(&key, MAX_FILE_LEN + 1).err(),
            Some(AttachmentError::TooLarge)
        );
        assert_eq!(format!("{key:?}"), "FileKey(…)");
    }
}
