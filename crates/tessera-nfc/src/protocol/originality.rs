//! The originality signature (`Read_Sig`, PROTOCOL.md §5): NXP's ECDSA signature over secp224r1
//! of the card's raw 7-byte UID (no hash), checked against NXP's published public key. It says
//! the chip came from NXP; it is a static value, so it proves nothing about *this* card being
//! present (a clone can replay it) — Tessera shows it as information only.

use p224::elliptic_curve::Curve;
use p224::elliptic_curve::ff::PrimeField as _;
use p224::elliptic_curve::ops::Reduce;
use p224::elliptic_curve::point::AffineCoordinates as _;
use p224::elliptic_curve::sec1::FromEncodedPoint as _;
use p224::{AffinePoint, EncodedPoint, FieldBytes, NistP224, ProjectivePoint, Scalar};

/// NXP's NTAG 424 DNA originality public key (SEC1 uncompressed).
pub const NXP_PUBLIC_KEY: [u8; 57] = [
    0x04, 0x8A, 0x9B, 0x38, 0x0A, 0xF2, 0xEE, 0x1B, 0x98, 0xDC, 0x41, 0x7F, 0xEC, 0xC2, 0x63, 0xF8,
    0x44, 0x9C, 0x76, 0x25, 0xCE, 0xCE, 0x82, 0xD9, 0xB9, 0x16, 0xC9, 0x92, 0xDA, 0x20, 0x9D, 0x68,
    0x42, 0x2B, 0x81, 0xEC, 0x20, 0xB6, 0x5A, 0x66, 0xB5, 0x10, 0x2A, 0x61, 0x59, 0x6A, 0xF3, 0x37,
    0x92, 0x00, 0x59, 0x93, 0x16, 0xA0, 0x0A, 0x14, 0x10,
];

/// The `Read_Sig` command (address 0): `90 3C 00 00 01 00 00`; the card answers the 56-byte
/// `r ‖ s` with status `91 90`.
pub const READ_SIG: [u8; 7] = [0x90, 0x3C, 0x00, 0x00, 0x01, 0x00, 0x00];

fn scalar(bytes: &[u8]) -> Option<Scalar> {
    let repr = FieldBytes::clone_from_slice(bytes);
    let s: Option<Scalar> = Scalar::from_repr(repr).into();
    s.filter(|s| !bool::from(s.is_zero()))
}

/// Whether `signature` (`r ‖ s`, 56 bytes) is `public_key`'s ECDSA signature of `uid`, the
/// message taken as an integer as it is (the card signs the UID without hashing it).
pub fn verify_with(public_key: &[u8], uid: &[u8; 7], signature: &[u8]) -> bool {
    if signature.len() != 56 {
        return false;
    }
    let Some(q) = EncodedPoint::from_bytes(public_key)
        .ok()
        .and_then(|p| Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&p)))
    else {
        return false;
    };
    let (Some(r), Some(s)) = (scalar(&signature[..28]), scalar(&signature[28..])) else {
        return false;
    };
    let mut e_bytes = [0u8; 28];
    e_bytes[21..].copy_from_slice(uid);
    let Some(e) = Option::<Scalar>::from(Scalar::from_repr(e_bytes.into())) else {
        return false;
    };
    let Some(w) = Option::<Scalar>::from(s.invert()) else {
        return false;
    };
    let point =
        (ProjectivePoint::GENERATOR * (e * w) + ProjectivePoint::from(q) * (r * w)).to_affine();
    if bool::from(point.is_identity()) {
        return false;
    }
    <Scalar as Reduce<<NistP224 as Curve>::Uint>>::reduce_bytes(&point.x()) == r
}

/// Whether `signature` is NXP's originality signature of `uid`.
pub fn verify(uid: &[u8; 7], signature: &[u8]) -> bool {
    verify_with(&NXP_PUBLIC_KEY, uid, signature)
}
