//! Helpers shared by the fuzz targets in `fuzz_targets/`: input splitting, the checks several
//! targets make on GitLab answers, a class-preserving "rotation" of secrets for the
//! no-secret-in-output differential checks, an event-stream frame encoder, and RS256 signing
//! with the PEM fixtures of `src/auth/testdata`.
//!
//! Inputs are plain byte strings (no `arbitrary`), so seeds are easy to write by hand or with
//! `seeds.py`: most targets split their input into fields at NUL bytes, the last field taking
//! the rest.

use serde_json::Value;

/// `data` split at the first `n - 1` NUL bytes (fewer fields when there are fewer NULs).
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |b| *b == 0).collect()
}

/// Field `i`, or empty.
pub fn field<'a>(f: &[&'a [u8]], i: usize) -> &'a [u8] {
    f.get(i).copied().unwrap_or(&[])
}

/// UTF-8 text of a field (invalid sequences replaced).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Control fields are hex text (pairs of hex digits; anything else is skipped), so they can
/// hold zero bytes between NUL separators and seeds stay readable.
pub fn hex(b: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = b
        .iter()
        .filter_map(|c| (*c as char).to_digit(16).map(|d| d as u8))
        .collect();
    digits.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// Bit `i` of the first byte of `control`.
pub fn bit(control: &[u8], i: u32) -> bool {
    control.first().is_some_and(|b| b >> i & 1 == 1)
}

/// Big-endian number from up to 8 bytes of `b` starting at `at` (missing bytes are zero).
pub fn number(b: &[u8], at: usize, len: usize) -> u64 {
    (0..len.min(8)).fold(0u64, |acc, i| {
        acc << 8 | u64::from(b.get(at + i).copied().unwrap_or(0))
    })
}

/// The body of a GitLab error answer must be a JSON object `{"detail": ...}` whose detail is a
/// string or a list of FastAPI validation issues; returns the parsed value.
pub fn assert_detail_body(status: u16, body: &str) -> Value {
    assert!(
        (400..600).contains(&status),
        "error status {status}: {body}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(obj.len(), 1, "{body}");
    match obj.get("detail") {
        Some(Value::String(_)) => {}
        Some(Value::Array(issues)) => {
            for i in issues {
                assert!(i["type"].is_string() && i["loc"].is_array() && i["msg"].is_string());
                assert!(
                    i.get("input").is_none(),
                    "validation issues never echo input"
                );
            }
        }
        _ => panic!("no detail: {body}"),
    }
    v
}

/// A GitLab error as the host sends it: 4xx/5xx, `{"detail":...}` and `content-type: application/json`.
pub fn assert_gitlab_error(e: &duo_bedrock_filter::gitlab::GitlabError) {
    assert_detail_body(e.status, &e.body);
    assert_eq!(e.header("content-type"), Some("application/json"), "{e:?}");
}

/// An authentication failure body: `{"error": "<message>"}`, nothing else.
pub fn assert_auth_error_body(body: &str) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert!(obj.len() == 1 && obj["error"].is_string(), "{body}");
}

/// A different secret of the same shape: ASCII letters and digits rotated within their class
/// (length, printability and whitespace kept), so code that validates the shape of a secret
/// takes the same path for both. Output that mentions a secret differs between the two.
pub fn rotate(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' => char::from(b'a' + (c as u8 - b'a' + 13) % 26),
            'A'..='Z' => char::from(b'A' + (c as u8 - b'A' + 13) % 26),
            '0'..='9' => char::from(b'0' + (c as u8 - b'0' + 5) % 10),
            other => other,
        })
        .collect()
}

/// `NAME=VALUE` lines (the value may contain `=`; lines without `=` are skipped).
pub fn env_lines(b: &[u8]) -> Vec<(String, String)> {
    text(b)
        .split('\n')
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A lookup over `vars` (first occurrence wins), as `Config::load` and `source_from_env` take it.
pub fn env_fn(vars: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

// ---------------------------------------------------------------------------------------------
// Event-stream frames (application/vnd.amazon.eventstream), as Bedrock sends them.

/// One header value of an event-stream frame.
pub enum Hv<'a> {
    Str(&'a str),
    I32(i32),
}

/// Encodes one frame with correct prelude and message CRCs. Header names and string values
/// longer than the format allows are cut.
pub fn encode_frame(headers: &[(&str, Hv)], payload: &[u8]) -> Vec<u8> {
    let mut hb = Vec::new();
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(255)];
        hb.push(name.len() as u8);
        hb.extend_from_slice(name);
        match value {
            Hv::Str(s) => {
                let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
                hb.push(7);
                hb.extend_from_slice(&(s.len() as u16).to_be_bytes());
                hb.extend_from_slice(s);
            }
            Hv::I32(n) => {
                hb.push(4);
                hb.extend_from_slice(&n.to_be_bytes());
            }
        }
    }
    raw_frame(&hb, payload)
}

/// A frame around an already encoded header block.
pub fn raw_frame(header_block: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = 12 + header_block.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(header_block.len() as u32).to_be_bytes());
    let pc = crc32fast::hash(&out);
    out.extend_from_slice(&pc.to_be_bytes());
    out.extend_from_slice(header_block);
    out.extend_from_slice(payload);
    let mc = crc32fast::hash(&out);
    out.extend_from_slice(&mc.to_be_bytes());
    out
}

/// A Bedrock `chunk` event carrying one Anthropic stream event (JSON text).
pub fn chunk_frame(event_json: &[u8], pad: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(event_json);
    let payload = serde_json::json!({ "bytes": b64, "p": pad }).to_string();
    encode_frame(
        &[
            (":event-type", Hv::Str("chunk")),
            (":content-type", Hv::Str("application/json")),
            (":message-type", Hv::Str("event")),
        ],
        payload.as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// RS256 tokens from the test fixtures.

/// The filter's test key set: `test-key-1` (key 1) and `test-key-2` (key 2), plus an EC key it skips.
pub const JWKS: &str = include_str!("../../src/auth/testdata/jwks.json");
/// Private key of `test-key-1` (PKCS#1).
pub const KEY1_PEM: &str = include_str!("../../src/auth/testdata/key1_pkcs1.pem");
/// Private key of `test-key-2` (PKCS#8).
pub const KEY2_PEM: &str = include_str!("../../src/auth/testdata/key2_pkcs8.pem");

/// A private key ready for RS256 signing: `m^d mod n` by the CRT with crypto-bigint's
/// Montgomery arithmetic. (jsonwebtoken's signer, on num-bigint-dig, took ~40 ms per signature
/// in the instrumented fuzz build, almost all of it in compare-tracing callbacks; this is ~20
/// times faster, and a cache skips signing inputs seen before.)
struct SigningKey {
    k: usize,
    p: crypto_bigint::NonZero<crypto_bigint::BoxedUint>,
    q: crypto_bigint::NonZero<crypto_bigint::BoxedUint>,
    params_p: crypto_bigint::modular::BoxedMontyParams,
    params_q: crypto_bigint::modular::BoxedMontyParams,
    dp: crypto_bigint::BoxedUint,
    dq: crypto_bigint::BoxedUint,
    qinv: crypto_bigint::BoxedUint,
}

impl SigningKey {
    fn from_pem(pem: &str) -> SigningKey {
        use crypto_bigint::modular::BoxedMontyParams;
        use crypto_bigint::{BoxedUint, NonZero, Odd};
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::traits::{PrivateKeyParts, PublicKeyParts};
        let mut key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
            .expect("fixture PEM");
        key.precompute().expect("CRT values");
        let big = |b: &rsa::BigUint| BoxedUint::from_be_slice_vartime(&b.to_bytes_be());
        let (p, q) = (big(&key.primes()[0]), big(&key.primes()[1]));
        let bits = p.bits_precision();
        let fit = |b: BoxedUint| {
            BoxedUint::from_be_slice(&b.to_be_bytes_trimmed_vartime(), bits).expect("fits p")
        };
        let qinv = key.crt_coefficient().expect("qinv");
        SigningKey {
            k: key.n().to_bytes_be().len(),
            params_p: BoxedMontyParams::new_vartime(Odd::new(p.clone()).expect("odd p")),
            params_q: BoxedMontyParams::new_vartime(Odd::new(q.clone()).expect("odd q")),
            dp: fit(big(key.dp().expect("dp"))),
            dq: fit(big(key.dq().expect("dq"))),
            qinv: fit(big(&qinv)),
            p: NonZero::new(p).expect("p"),
            q: NonZero::new(q).expect("q"),
        }
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (deterministic: the same bytes as any other signer).
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use crypto_bigint::modular::BoxedMontyForm;
        use crypto_bigint::{BoxedUint, ConcatenatingMul};
        use sha2::{Digest, Sha256};
        const DIGEST_INFO: [u8; 19] = [
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        let mut em = vec![0xffu8; self.k];
        em[0] = 0;
        em[1] = 1;
        let t = self.k - 32 - DIGEST_INFO.len();
        em[t - 1] = 0;
        em[t..t + DIGEST_INFO.len()].copy_from_slice(&DIGEST_INFO);
        em[t + DIGEST_INFO.len()..].copy_from_slice(&Sha256::digest(message));
        let m = BoxedUint::from_be_slice_vartime(&em);
        // s1 = m^dp mod p, s2 = m^dq mod q, s = s2 + q * (qinv * (s1 - s2) mod p).
        let s1 = BoxedMontyForm::new(m.rem_vartime(&self.p), &self.params_p)
            .pow(&self.dp)
            .retrieve();
        let s2 = BoxedMontyForm::new(m.rem_vartime(&self.q), &self.params_q)
            .pow(&self.dq)
            .retrieve();
        let h = s1
            .sub_mod(&s2.rem_vartime(&self.p), &self.p)
            .mul_mod(&self.qinv, &self.p);
        let s = h
            .concatenating_mul(self.q.as_ref())
            .wrapping_add(&s2)
            .to_be_bytes();
        s[s.len() - self.k..].to_vec()
    }
}

/// The RS256 signature (base64url) of `signing_input` with key 1 (`false`) or key 2 (`true`).
pub fn rs256_sign(signing_input: &[u8], second_key: bool) -> String {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KEYS: OnceLock<(SigningKey, SigningKey)> = OnceLock::new();
    static CACHE: OnceLock<Mutex<HashMap<(Vec<u8>, bool), String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (signing_input.to_vec(), second_key);
    if let Some(sig) = cache.lock().expect("cache").get(&key) {
        return sig.clone();
    }
    let (k1, k2) = KEYS.get_or_init(|| {
        (
            SigningKey::from_pem(KEY1_PEM),
            SigningKey::from_pem(KEY2_PEM),
        )
    });
    let sig = b64url(&if second_key { k2 } else { k1 }.sign(signing_input));
    let mut c = cache.lock().expect("cache");
    if c.len() >= 100_000 {
        c.clear();
    }
    c.insert(key, sig.clone());
    sig
}

/// Base64url without padding.
pub fn b64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_shape() {
        assert_eq!(rotate("aZ09-x y\n"), "nM54-k l\n");
        assert_ne!(rotate("A"), "A");
    }

    #[test]
    fn signatures_match_jsonwebtoken() {
        use jsonwebtoken::{crypto, Algorithm, EncodingKey};
        for (pem, second) in [(KEY1_PEM, false), (KEY2_PEM, true)] {
            let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
            let theirs = crypto::sign(b"header.payload", &key, Algorithm::RS256).unwrap();
            assert_eq!(rs256_sign(b"header.payload", second), theirs);
        }
    }

    #[test]
    fn fields_split() {
        assert_eq!(fields(b"a\0b\0c\0d", 3), vec![&b"a"[..], b"b", b"c\0d"]);
        assert_eq!(number(&[1, 2], 0, 3), 0x010200);
        assert_eq!(hex(b"8f 00-1"), vec![0x8f, 0x00]);
    }
}
