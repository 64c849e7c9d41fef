//! RS256 signature verification: RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`, RFC 7518 §3.3;
//! RFC 8017 §8.2.2 and EMSA-PKCS1-v1_5 §9.2), the only algorithm GitLab uses for its tokens
//! (docs/gitlab-contract.md#jwt-rules).
//!
//! Why not the `rsa` crate: GitLab mints a fresh token per request, so this runs on every
//! request inside Envoy's V8. There the `rsa` 0.9 crate (num-bigint-dig) takes ~840 µs per
//! 2048-bit verification; this module, built on RustCrypto `crypto-bigint` Montgomery arithmetic,
//! takes ~150 µs (bench/rsa-verify/README.md; ring 0.17 takes ~380 µs). A Montgomery context is
//! built once per key; then `s^e mod n` is a left-to-right square-and-multiply over the public
//! exponent (16 squarings and one multiplication for e = 65537). Every input here is public
//! (key, signature, digest), so variable time is fine. No big-integer arithmetic is written
//! here; this file only glues `crypto-bigint` to the PKCS#1 v1.5 encoding check.
//!
//! The check is the `rsa` crate's, byte for byte (differential tests below):
//! 1. the signature is exactly `k` bytes long (`k` = modulus length in bytes),
//! 2. as an integer it is `< n`,
//! 3. `m = s^e mod n`, written as `k` big-endian bytes, equals the whole expected encoding
//!    `0x00 0x01 FF..FF 0x00 || DigestInfo(SHA-256) || digest` (one comparison of the full block,
//!    so there is no parser to confuse).
//!
//! Keys ([`Rs256Key::new`]) follow the `rsa` 0.9 `RsaPublicKey::new` rules plus the key set's
//! minimum size: modulus odd, [`MIN_BITS`]..=[`MAX_BITS`] bits; exponent odd, 3..=2^33-1.

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, MontyForm, MontyMultiplier, Odd};

/// Smallest accepted modulus, in bits.
pub const MIN_BITS: u32 = 2048;
/// Largest accepted modulus, in bits (the `rsa` crate's default limit).
pub const MAX_BITS: u32 = 4096;
/// Largest accepted public exponent (the `rsa` crate's `MAX_PUB_EXPONENT`).
pub const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// DER `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2, note 1):
/// `SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.2.1, NULL }, OCTET STRING (32 bytes) }`.
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// SHA-256 digest length.
const DIGEST_LEN: usize = 32;

/// An RSA public key ready for RS256 verification (its Montgomery context precomputed).
#[derive(Clone)]
pub struct Rs256Key {
    params: BoxedMontyParams,
    /// Public exponent, odd, 3..=[`MAX_EXPONENT`].
    e: u64,
    /// Modulus length in bytes (`k` in RFC 8017).
    k: usize,
    bits: u32,
}

impl std::fmt::Debug for Rs256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rs256Key")
            .field("bits", &self.bits)
            .field("e", &self.e)
            .finish()
    }
}

impl Rs256Key {
    /// A key from big-endian modulus and exponent (leading zero bytes allowed). `None` unless
    /// the modulus is odd with [`MIN_BITS`]..=[`MAX_BITS`] bits and the exponent is odd in
    /// `3..=MAX_EXPONENT`.
    pub fn new(n: &[u8], e: &[u8]) -> Option<Rs256Key> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        // Bound the length before any arithmetic: at most MAX_BITS / 8 bytes.
        if n.is_empty() || n.len() > (MAX_BITS / 8) as usize || e.len() > 8 {
            return None;
        }
        let mut e_bytes = [0u8; 8];
        e_bytes
            .get_mut(8usize.saturating_sub(e.len())..)?
            .copy_from_slice(e);
        let e = u64::from_be_bytes(e_bytes);
        if !(3..=MAX_EXPONENT).contains(&e) || e % 2 == 0 {
            return None;
        }
        let first = *n.first()?;
        // Bits of the modulus: 8 per byte, minus the leading zero bits of the first byte.
        let bits = u32::try_from(n.len())
            .ok()?
            .checked_mul(8)?
            .checked_sub(first.leading_zeros())?;
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return None;
        }
        let modulus = Odd::new(BoxedUint::from_be_slice_vartime(n)).into_option()?;
        Some(Rs256Key {
            params: BoxedMontyParams::new_vartime(modulus),
            e,
            k: n.len(),
            bits,
        })
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Public exponent.
    pub fn exponent(&self) -> u64 {
        self.e
    }

    /// `true` when `signature` is a valid RSASSA-PKCS1-v1_5 signature of the SHA-256 `digest`
    /// under this key. Never panics, whatever the input.
    pub fn verify(&self, digest: &[u8; DIGEST_LEN], signature: &[u8]) -> bool {
        match self.public_op(signature) {
            Some(em) => em == self.expected_encoding(digest),
            None => false,
        }
    }

    /// RSAVP1 (RFC 8017 §5.2.2) with the length checks of §8.2.2 step 1 and 2: `s^e mod n` as
    /// `k` big-endian bytes, or `None` when the signature is not `k` bytes or not `< n`.
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.k {
            return None;
        }
        let s = BoxedUint::from_be_slice(signature, self.params.bits_precision()).ok()?;
        if s >= *self.params.modulus().as_ref() {
            return None;
        }
        let base = BoxedMontyForm::new(s, &self.params);
        let mut acc = base.clone();
        let mut mul = <BoxedMontyForm as MontyForm>::Multiplier::from(&self.params);
        // Left-to-right binary exponentiation; the top bit is `acc = base` above.
        let top = 63u32.saturating_sub(self.e.leading_zeros());
        for i in (0..top).rev() {
            mul.square_assign(&mut acc);
            if (self.e >> i) & 1 == 1 {
                mul.mul_assign(&mut acc, &base);
            }
        }
        let out = acc.retrieve().to_be_bytes();
        // `out` is the precision rounded up to whole limbs (>= k bytes); the value is < n, so
        // the bytes before the last k are zero.
        let skip = out.len().checked_sub(self.k)?;
        out.get(skip..).map(<[u8]>::to_vec)
    }

    /// EMSA-PKCS1-v1_5 (RFC 8017 §9.2) of `digest` for this key's length `k`:
    /// `0x00 0x01 PS 0x00 T`, PS = `k - 3 - |T|` bytes 0xFF (at least 202 for k >= 256).
    fn expected_encoding(&self, digest: &[u8; DIGEST_LEN]) -> Vec<u8> {
        let t_len = SHA256_DIGEST_INFO.len() + DIGEST_LEN;
        let ps_len = self.k.saturating_sub(t_len + 3);
        let mut em = Vec::with_capacity(self.k);
        em.extend_from_slice(&[0x00, 0x01]);
        em.resize(2 + ps_len, 0xff);
        em.push(0x00);
        em.extend_from_slice(&SHA256_DIGEST_INFO);
        em.extend_from_slice(digest);
        em
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    //! Differential tests: [`Rs256Key`] must give the same answer as the `rsa` 0.9 crate and as
    //! `jsonwebtoken` (rust_crypto) on every case, valid or hostile.

    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey};
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
    use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
    use sha2_010::{Digest, Sha256};

    const PEMS: [(&str, &str); 7] = [
        ("key1 2048", include_str!("testdata/key1_pkcs1.pem")),
        ("key2 2048", include_str!("testdata/key2_pkcs8.pem")),
        ("2050", include_str!("testdata/rsa2050.pem")),
        ("3072", include_str!("testdata/rsa3072.pem")),
        ("4096", include_str!("testdata/rsa4096.pem")),
        ("2048 e=3", include_str!("testdata/rsa2048_e3.pem")),
        ("2048 e=2^33-1", include_str!("testdata/rsa2048_ebig.pem")),
    ];

    struct Fixture {
        name: &'static str,
        private: RsaPrivateKey,
        n: Vec<u8>,
        e: Vec<u8>,
        ours: Rs256Key,
    }

    fn fixtures() -> Vec<Fixture> {
        PEMS.iter()
            .map(|(name, pem)| {
                let private = RsaPrivateKey::from_pkcs1_pem(pem)
                    .or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem))
                    .unwrap();
                let n = private.n().to_bytes_be();
                let e = private.e().to_bytes_be();
                let ours = Rs256Key::new(&n, &e).unwrap();
                Fixture {
                    name,
                    private,
                    n,
                    e,
                    ours,
                }
            })
            .collect()
    }

    /// Deterministic xorshift64* (tests only; no RNG crate needed).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Counts the cases checked, so the test can assert it ran thousands.
    #[derive(Default)]
    struct Tally {
        cases: usize,
        accepted: usize,
    }
    impl Drop for Tally {
        fn drop(&mut self) {
            eprintln!(
                "{} differential cases, {} accepted",
                self.cases, self.accepted
            );
        }
    }

    /// Verify `sig` over `msg` with all three implementations; they must agree. Returns the
    /// common answer.
    fn agree(t: &mut Tally, what: &str, n: &[u8], e: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(msg).into();
        let reference = RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))
            .ok()
            .filter(|k| k.n().bits() >= MIN_BITS as usize);
        let ours = Rs256Key::new(n, e);
        assert_eq!(
            ours.is_some(),
            reference.is_some(),
            "{what}: key acceptance differs"
        );
        let (Some(ours), Some(reference)) = (ours, reference) else {
            t.cases += 1;
            return false;
        };
        let want = reference
            .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, sig)
            .is_ok();
        let got = ours.verify(&digest, sig);
        assert_eq!(got, want, "{what}: rs256 {got}, rsa crate {want}");
        // jsonwebtoken (rust_crypto) takes base64url components and the signing input.
        let dk = DecodingKey::from_rsa_raw_components(n, e);
        let sig_b64 = URL_SAFE_NO_PAD.encode(sig);
        let jwt =
            jsonwebtoken::crypto::verify(&sig_b64, msg, &dk, Algorithm::RS256).unwrap_or(false);
        assert_eq!(got, jwt, "{what}: rs256 {got}, jsonwebtoken {jwt}");
        t.cases += 1;
        t.accepted += usize::from(got);
        got
    }

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn sign(f: &Fixture, msg: &[u8]) -> Vec<u8> {
        let digest = Sha256::digest(msg);
        f.private
            .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
            .unwrap()
    }

    /// The raw RSA private operation `em^d mod n` as k bytes: a "signature" whose public
    /// operation yields exactly `em` (used to craft malformed encodings).
    fn raw_sign(f: &Fixture, em: &[u8]) -> Vec<u8> {
        let m = BigUint::from_bytes_be(em);
        let s = m.modpow(f.private.d(), f.private.n()).to_bytes_be();
        let mut out = vec![0u8; f.n.len() - s.len()];
        out.extend_from_slice(&s);
        out
    }

    fn encoding(k: usize, prefix: &[u8], digest: &[u8]) -> Vec<u8> {
        let mut em = vec![0x00, 0x01];
        em.resize(k - prefix.len() - digest.len() - 1, 0xff);
        em.push(0x00);
        em.extend_from_slice(prefix);
        em.extend_from_slice(digest);
        em
    }

    #[test]
    fn valid_signatures_verify() {
        let mut t = Tally::default();
        for f in &fixtures() {
            for i in 0..4 {
                let msg = format!("eyJhbGciOiJSUzI1NiJ9.payload-{i}-{}", f.name);
                let sig = sign(f, msg.as_bytes());
                assert!(agree(&mut t, f.name, &f.n, &f.e, msg.as_bytes(), &sig));
                // Wrong message.
                assert!(!agree(&mut t, f.name, &f.n, &f.e, b"other", &sig));
            }
            assert_eq!(f.ours.bits() as usize, f.private.n().bits());
        }
        assert_eq!(t.accepted, 4 * PEMS.len());
    }

    #[test]
    fn every_byte_of_the_signature_mutated() {
        let mut t = Tally::default();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for f in &fixtures() {
            let msg = format!("mutate-{}", f.name);
            let sig = sign(f, msg.as_bytes());
            for pos in 0..sig.len() {
                for flip in [0x01u8, 0x80, (rng.next() as u8) | 1] {
                    let mut bad = sig.clone();
                    bad[pos] ^= flip;
                    let what = format!("{} byte {pos} ^ {flip:#x}", f.name);
                    assert!(!agree(&mut t, &what, &f.n, &f.e, msg.as_bytes(), &bad));
                }
            }
        }
        assert!(t.cases > 5000, "{} cases", t.cases);
    }

    #[test]
    fn wrong_keys_and_random_signatures() {
        let mut t = Tally::default();
        let mut rng = Rng(42);
        let fx = fixtures();
        for a in &fx {
            let msg = format!("wrong-key-{}", a.name);
            let sig = sign(a, msg.as_bytes());
            for b in &fx {
                let expect = a.name == b.name;
                let what = format!("signed by {}, checked with {}", a.name, b.name);
                assert_eq!(
                    agree(&mut t, &what, &b.n, &b.e, msg.as_bytes(), &sig),
                    expect
                );
                // Same modulus, another exponent: wrong key too.
                if a.name == b.name {
                    assert!(!agree(
                        &mut t,
                        &what,
                        &b.n,
                        &[0x01, 0x00, 0x03],
                        msg.as_bytes(),
                        &sig
                    ));
                }
            }
            for i in 0..150 {
                let len = match i % 3 {
                    0 => a.n.len(),
                    1 => rng.below(a.n.len() + 16),
                    _ => a.n.len() + 1 + rng.below(4),
                };
                let junk = rng.bytes(len);
                assert!(!agree(&mut t, "random", &a.n, &a.e, msg.as_bytes(), &junk));
            }
        }
        assert!(t.cases > 1000, "{} cases", t.cases);
    }

    #[test]
    fn signature_length_and_range() {
        let mut t = Tally::default();
        for f in &fixtures() {
            let msg = format!("length-{}", f.name);
            let sig = sign(f, msg.as_bytes());
            let k = f.n.len();
            let n_int = BigUint::from_bytes_be(&f.n);
            let be = |x: BigUint| {
                let b = x.to_bytes_be();
                let mut out = vec![0u8; k.saturating_sub(b.len())];
                out.extend_from_slice(&b);
                out
            };
            let mut longer = vec![0u8];
            longer.extend_from_slice(&sig);
            let mut cases: Vec<(&str, Vec<u8>)> = vec![
                ("leading zero added", longer),
                ("first byte dropped", sig[1..].to_vec()),
                ("last byte dropped", sig[..k - 1].to_vec()),
                ("empty", vec![]),
                ("one byte", vec![1]),
                ("zero", vec![0; k]),
                ("one", be(BigUint::from(1u8))),
                ("n - 1", be(&n_int - 1u8)),
                ("n", f.n.clone()),
                ("n + 1", be(&n_int + 1u8)),
                ("all ones", vec![0xff; k]),
                ("2k bytes", [sig.clone(), sig.clone()].concat()),
            ];
            // s + n has the same residue as s: must still be refused (s >= n).
            let plus_n = &BigUint::from_bytes_be(&sig) + &n_int;
            if plus_n.to_bytes_be().len() <= k {
                cases.push(("s + n", be(plus_n)));
            }
            if sig[0] == 0 {
                cases.push(("leading zero stripped", sig[1..].to_vec()));
            }
            for (what, s) in cases {
                let what = format!("{}: {what}", f.name);
                assert!(!agree(&mut t, &what, &f.n, &f.e, msg.as_bytes(), &s));
            }
            assert!(agree(&mut t, f.name, &f.n, &f.e, msg.as_bytes(), &sig));
        }
    }

    #[test]
    fn malformed_encodings_refused() {
        // SHA-1 DigestInfo prefix (OID 1.3.14.3.2.26) and the SHA-256 one without NULL params.
        const SHA1_PREFIX: [u8; 15] = [
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ];
        const SHA256_NO_NULL: [u8; 17] = [
            0x30, 0x2f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x04, 0x20,
        ];
        // SHA-512 OID with a 32-byte digest (length fields fixed up).
        const SHA512_OID_32: [u8; 19] = [
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x20,
        ];
        let mut t = Tally::default();
        for f in &fixtures() {
            let msg = format!("encoding-{}", f.name);
            let d: Vec<u8> = Sha256::digest(msg.as_bytes()).to_vec();
            let k = f.n.len();
            let good = encoding(k, &SHA256_DIGEST_INFO, &d);
            let sha1_digest = vec![0xab; 20];
            let mut cases: Vec<(&str, Vec<u8>)> = vec![
                ("sha-1 DigestInfo", encoding(k, &SHA1_PREFIX, &sha1_digest)),
                (
                    "sha-1 prefix, truncated sha-256 digest",
                    encoding(k, &SHA1_PREFIX, &d[..20]),
                ),
                ("no NULL params", encoding(k, &SHA256_NO_NULL, &d)),
                ("sha-512 OID", encoding(k, &SHA512_OID_32, &d)),
                (
                    "digest of another message",
                    encoding(k, &SHA256_DIGEST_INFO, &[0x5a; 32]),
                ),
                ("raw digest, no DigestInfo", encoding(k, &[], &d)),
            ];
            let mut mutate = |what: &'static str, f: &dyn Fn(&mut Vec<u8>)| {
                let mut em = good.clone();
                f(&mut em);
                cases.push((what, em));
            };
            let sep = k - 19 - 32 - 1;
            mutate("missing 0x00 separator", &|em| em[sep] = 0xff);
            mutate("separator moved left (short padding)", &|em| {
                em[sep - 1] = 0x00
            });
            mutate("short padding, junk before separator", &|em| {
                em[10] = 0x00;
                em[11..sep].fill(0x41);
            });
            mutate("padding only 8 bytes", &|em| {
                em[10] = 0x00;
                em[11..sep].fill(0x00);
            });
            mutate("block type 2", &|em| em[1] = 0x02);
            mutate("block type 0", &|em| em[1] = 0x00);
            mutate("a padding byte 0xfe", &|em| em[k / 2] = 0xfe);
            mutate("last padding byte 0x00", &|em| em[sep - 1] = 0x00);
            mutate("DigestInfo length off", &|em| em[sep + 2] = 0x30);
            mutate("digest last byte", &|em| em[k - 1] ^= 1);
            mutate("digest first byte", &|em| em[k - 32] ^= 1);
            mutate("garbage after digest (shifted)", &|em| {
                em.remove(2);
                em.push(0x00);
            });
            for (what, em) in cases {
                assert_eq!(em.len(), k, "{what}");
                let sig = raw_sign(f, &em);
                let what = format!("{}: {what}", f.name);
                assert!(!agree(&mut t, &what, &f.n, &f.e, msg.as_bytes(), &sig));
            }
            // Control: the correct encoding, signed raw, verifies.
            let sig = raw_sign(f, &good);
            assert!(agree(&mut t, f.name, &f.n, &f.e, msg.as_bytes(), &sig));
        }
    }

    #[test]
    fn key_acceptance_matches_rsa_crate() {
        let mut t = Tally::default();
        let fx = fixtures();
        let n = &fx[0].n;
        let msg = b"keys";
        let sig = sign(&fx[0], msg);
        let mut n_even = n.clone();
        *n_even.last_mut().unwrap() &= 0xfe;
        let mut n_short = n.clone();
        n_short[0] = 0x7f; // 2047 bits
        let mut n_long = vec![0x01];
        n_long.extend_from_slice(&fx[4].n); // 4097 bits
        let exps: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![1],
            vec![2],
            vec![3],
            vec![0x01, 0x00, 0x00],
            vec![0x01, 0x00, 0x01],
            vec![0, 0, 0x01, 0x00, 0x01],
            vec![0x01, 0xff, 0xff, 0xff, 0xff], // 2^33 - 1
            vec![0x02, 0x00, 0x00, 0x00, 0x01], // 2^33 + 1
            vec![0xff; 8],
            vec![0xff; 9],
            vec![0x01; 300],
        ];
        let mut moduli: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0; 300],
            vec![3],
            n.clone(),
            [vec![0, 0, 0], n.clone()].concat(),
            n_even,
            n_short,
            n_long,
            vec![0xff; 512],
            vec![0xff; 513],
            vec![0xff; 256],
        ];
        moduli.extend(fx.iter().map(|f| f.n.clone()));
        for m in &moduli {
            for e in &exps {
                agree(
                    &mut t,
                    &format!("n {} bytes, e {e:02x?}", m.len()),
                    m,
                    e,
                    msg,
                    &sig,
                );
            }
        }
        let mut rng = Rng(7);
        for _ in 0..300 {
            let (m_len, e_len) = (rng.below(600), rng.below(10));
            let m = rng.bytes(m_len);
            let e = rng.bytes(e_len);
            let _ = Rs256Key::new(&m, &e);
            let m_len = 256 + rng.below(256);
            let mut m = rng.bytes(m_len);
            *m.last_mut().unwrap() |= 1;
            m[0] |= 0x80;
            let key = Rs256Key::new(&m, &[1, 0, 1]).unwrap();
            for len in [m.len(), m.len() - 1, m.len() + 1, rng.below(700)] {
                let junk = rng.bytes(len);
                assert!(!key.verify(&[7; 32], &junk));
            }
        }
        assert!(t.cases > 100);
    }

    #[test]
    fn accessors() {
        let fx = fixtures();
        assert_eq!(fx[2].ours.bits(), 2050);
        assert_eq!(fx[5].ours.exponent(), 3);
        assert_eq!(fx[6].ours.exponent(), MAX_EXPONENT);
        assert!(format!("{:?}", fx[0].ours).contains("2048"));
    }
}
