//! Strict big-endian readers and writers for the formats in this crate.

use crate::CryptoError;

/// Reads fields from a byte slice; every read checks the remaining length.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CryptoError> {
        if self.bytes.len() < n {
            return Err(CryptoError::BadLength { what: self.what });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CryptoError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, CryptoError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CryptoError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CryptoError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), CryptoError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(CryptoError::BadLength { what: self.what })
        }
    }
}

/// `u8 len(label) || label || data`: the domain-separated message both signature halves sign.
pub(crate) fn labelled(label: &str, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + label.len() + data.len());
    // Labels are short constants in this crate; a longer one is a programming error caught by
    // the tests, and is truncated rather than panicking in release code.
    m.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
    m.extend_from_slice(label.as_bytes());
    m.extend_from_slice(data);
    m
}
