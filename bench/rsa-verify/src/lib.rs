//! Times one RS256 signature verification (the public RSA operation plus the EMSA-PKCS1-v1_5
//! check) per candidate and key size. Vectors: `vectors/` (openssl-generated keys, signatures
//! over `vectors/msg`). [`run`] returns a Markdown table of microseconds per verification.
//!
//! Three ways to run it (see README.md): natively and in node (`src/main.rs`, process CPU time),
//! and inside Envoy's own V8 as a proxy-wasm plugin (feature `envoy`, module [`envoy`], wall
//! clock, since Envoy's WASI has no CPU-time clock).

use std::sync::atomic::{AtomicBool, Ordering};

/// `true`: time with the monotonic wall clock instead of process CPU time.
static WALL_CLOCK: AtomicBool = AtomicBool::new(false);

/// Seconds on the selected clock: process CPU time by default (the machine is shared, and time
/// spent descheduled would otherwise count), monotonic wall time when [`WALL_CLOCK`] is set.
fn cpu_now() -> f64 {
    #[cfg(target_os = "wasi")]
    {
        #[link(wasm_import_module = "wasi_snapshot_preview1")]
        extern "C" {
            fn clock_time_get(id: u32, precision: u64, out: *mut u64) -> u16;
        }
        let mut ns = 0u64;
        // WASI preview 1 clock ids: 1 = monotonic, 2 = process CPU time.
        let id = if WALL_CLOCK.load(Ordering::Relaxed) { 1 } else { 2 };
        assert_eq!(unsafe { clock_time_get(id, 1, &mut ns) }, 0);
        ns as f64 * 1e-9
    }
    #[cfg(not(target_os = "wasi"))]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let id = if WALL_CLOCK.load(Ordering::Relaxed) {
            libc::CLOCK_MONOTONIC
        } else {
            libc::CLOCK_PROCESS_CPUTIME_ID
        };
        assert_eq!(unsafe { libc::clock_gettime(id, &mut ts) }, 0);
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    }
}

struct Instant(f64);
impl Instant {
    fn now() -> Self {
        Instant(cpu_now())
    }
    fn elapsed(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64((cpu_now() - self.0).max(0.0))
    }
}

use sha2::{Digest, Sha256};

const MSG: &[u8] = include_bytes!("../vectors/msg");
const VECTORS: [(u32, &[u8], &[u8]); 3] = [
    (2048, include_bytes!("../vectors/n2048.bin"), include_bytes!("../vectors/sig2048.bin")),
    (3072, include_bytes!("../vectors/n3072.bin"), include_bytes!("../vectors/sig3072.bin")),
    (4096, include_bytes!("../vectors/n4096.bin"), include_bytes!("../vectors/sig4096.bin")),
];
const E: u64 = 65537;
/// DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1).
const SHA256_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

fn expected_em(k: usize, digest: &[u8]) -> Vec<u8> {
    let mut em = vec![0xff; k];
    em[0] = 0;
    em[1] = 1;
    let t = SHA256_PREFIX.len() + digest.len();
    em[k - t - 1] = 0;
    em[k - t..k - digest.len()].copy_from_slice(&SHA256_PREFIX);
    em[k - digest.len()..].copy_from_slice(digest);
    em
}

mod cb {
    //! crypto-bigint 0.7 BoxedMontyForm, square-and-multiply over the public exponent.
    use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
    use crypto_bigint::{BoxedUint, MontyForm, MontyMultiplier, Odd};

    pub struct Key {
        pub params: BoxedMontyParams,
        pub k: usize,
        pub e: u64,
    }

    pub fn key(n: &[u8], e: u64) -> Key {
        let n = BoxedUint::from_be_slice_vartime(n);
        let params = BoxedMontyParams::new_vartime(Odd::new(n).unwrap());
        let k = (params.modulus().bit_width() as usize).div_ceil(8);
        Key { params, k, e }
    }

    pub fn public_op(key: &Key, sig: &[u8]) -> Option<Vec<u8>> {
        let bits = key.params.bits_precision();
        let s = BoxedUint::from_be_slice(sig, bits).ok()?;
        if s >= *key.params.modulus().as_ref() {
            return None;
        }
        let base = BoxedMontyForm::new(s, &key.params);
        let mut acc = base.clone();
        let mut mul = <BoxedMontyForm as MontyForm>::Multiplier::from(&key.params);
        let top = 63 - key.e.leading_zeros();
        for i in (0..top).rev() {
            mul.square_assign(&mut acc);
            if key.e >> i & 1 == 1 {
                mul.mul_assign(&mut acc, &base);
            }
        }
        let out = acc.retrieve().to_be_bytes();
        let skip = out.len() - key.k;
        Some(out[skip..].to_vec())
    }

    pub fn public_op_pow(key: &Key, sig: &[u8]) -> Option<Vec<u8>> {
        let bits = key.params.bits_precision();
        let s = BoxedUint::from_be_slice(sig, bits).ok()?;
        let base = BoxedMontyForm::new(s, &key.params);
        let e = BoxedUint::from(key.e);
        let out = base.pow_bounded_exp(&e, 64 - key.e.leading_zeros()).retrieve().to_be_bytes();
        let skip = out.len() - key.k;
        Some(out[skip..].to_vec())
    }
}

mod fixed {
    //! crypto-bigint 0.7 fixed-width FixedMontyForm<LIMBS> (stack, const generics).
    use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
    use crypto_bigint::{Encoding, Odd, Uint};

    pub struct Key<const L: usize> {
        pub params: FixedMontyParams<L>,
        pub e: u64,
    }

    pub fn key<const L: usize>(n: &[u8], e: u64) -> Key<L>
    where
        Uint<L>: Encoding,
    {
        let n = Uint::<L>::from_be_slice(n);
        Key { params: FixedMontyParams::new_vartime(Odd::new(n).unwrap()), e }
    }

    pub fn public_op<const L: usize>(key: &Key<L>, sig: &[u8]) -> Option<Vec<u8>>
    where
        Uint<L>: Encoding,
    {
        let s = Uint::<L>::from_be_slice(sig);
        if s >= *key.params.modulus().as_ref() {
            return None;
        }
        let base = FixedMontyForm::new(&s, &key.params);
        let mut acc = base;
        let top = 63 - key.e.leading_zeros();
        for i in (0..top).rev() {
            acc = acc.square();
            if key.e >> i & 1 == 1 {
                acc = acc.mul(&base);
            }
        }
        Some(acc.retrieve().to_be_bytes().as_ref().to_vec())
    }
}

/// Microseconds per call: the minimum over rounds (the machine is shared, so the minimum is the
/// least disturbed figure), all candidates interleaved in each round.
struct Case<'a> {
    bits: u32,
    name: &'static str,
    f: Box<dyn FnMut() -> bool + 'a>,
    iters: u32,
    samples: Vec<f64>,
}

fn calibrate(f: &mut dyn FnMut() -> bool) -> u32 {
    let mut iters = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            assert!(f());
        }
        if t.elapsed().as_secs_f64() > 0.1 {
            return iters;
        }
        iters *= 2;
    }
}

/// Measure every candidate whose name contains `filter` (all when `None`), `rounds` interleaved
/// rounds; `wall_clock` selects the monotonic clock instead of process CPU time. Returns the
/// lines of a Markdown table (min and median microseconds per verification).
pub fn run(filter: Option<&str>, rounds: usize, wall_clock: bool) -> Vec<String> {
    WALL_CLOCK.store(wall_clock, Ordering::Relaxed);
    let rounds = rounds.max(1);
    let digest = Sha256::digest(MSG);
    let want = |name: &str| filter.is_none_or(|f| name.contains(f));
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |bits: u32, name: &'static str, f: Box<dyn FnMut() -> bool>| {
        if want(name) {
            cases.push(Case { bits, name, f, iters: 0, samples: Vec::new() });
        }
    };
    for (bits, n, sig) in VECTORS {
        let em = expected_em(n.len(), &digest);
        let key = rsa09::RsaPublicKey::new(rsa09::BigUint::from_bytes_be(n), rsa09::BigUint::from(E))
            .unwrap();
        let d = digest;
        add(bits, "rsa 0.9 (num-bigint-dig)", Box::new(move || {
            key.verify(rsa09::Pkcs1v15Sign::new::<Sha256>(), &d, sig).is_ok()
        }));
        let key = rsa010::PublicKey::new(
            crypto_bigint::BoxedUint::from_be_slice_vartime(n),
            crypto_bigint::BoxedUint::from(E),
        )
        .unwrap();
        let mut t = SHA256_PREFIX.to_vec();
        t.extend_from_slice(&digest);
        add(bits, "rsa 0.10 (crypto-bigint)", Box::new(move || {
            key.verify(rsa010::Pkcs1v15Sign::new_unprefixed(), &t, sig).is_ok()
        }));
        let key = cb::key(n, E);
        let em2 = em.clone();
        add(bits, "crypto-bigint 0.7 Boxed square-multiply", Box::new(move || {
            cb::public_op(&key, sig).is_some_and(|m| m == em2)
        }));
        let key = cb::key(n, E);
        let em2 = em.clone();
        add(bits, "crypto-bigint 0.7 Boxed pow_bounded_exp", Box::new(move || {
            cb::public_op_pow(&key, sig).is_some_and(|m| m == em2)
        }));
        add(bits, "crypto-bigint 0.7 Boxed key setup", Box::new(move || {
            std::hint::black_box(cb::key(std::hint::black_box(n), E)).k > 0
        }));
        let em2 = em.clone();
        match bits {
            2048 => {
                let key = fixed::key::<{ crypto_bigint::U2048::LIMBS }>(n, E);
                add(bits, "crypto-bigint 0.7 Fixed square-multiply", Box::new(move || {
                    fixed::public_op(&key, sig).is_some_and(|m| m == em2)
                }));
            }
            3072 => {
                let key = fixed::key::<{ crypto_bigint::U3072::LIMBS }>(n, E);
                add(bits, "crypto-bigint 0.7 Fixed square-multiply", Box::new(move || {
                    fixed::public_op(&key, sig).is_some_and(|m| m == em2)
                }));
            }
            _ => {
                let key = fixed::key::<{ crypto_bigint::U4096::LIMBS }>(n, E);
                add(bits, "crypto-bigint 0.7 Fixed square-multiply", Box::new(move || {
                    fixed::public_op(&key, sig).is_some_and(|m| m == em2)
                }));
            }
        }
        #[cfg(feature = "ring")]
        {
            use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
            add(bits, "ring 0.17", Box::new(move || {
                let e = E.to_be_bytes();
                RsaPublicKeyComponents { n, e: &e[5..] }
                    .verify(&RSA_PKCS1_2048_8192_SHA256, MSG, sig)
                    .is_ok()
            }));
        }
    }
    for c in &mut cases {
        c.iters = calibrate(&mut c.f);
    }
    for _ in 0..rounds {
        for c in &mut cases {
            let t = Instant::now();
            for _ in 0..c.iters {
                assert!((c.f)());
            }
            c.samples.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(c.iters));
        }
    }
    let mut out = vec![
        "| bits | candidate | min µs | median µs |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    for c in &mut cases {
        c.samples.sort_by(f64::total_cmp);
        let med = c.samples[c.samples.len() / 2];
        out.push(format!("| {} | {} | {:.1} | {:.1} |", c.bits, c.name, c.samples[0], med));
    }
    out
}

/// The benchmark as a proxy-wasm plugin: runs once when the VM starts (an Envoy bootstrap
/// `WasmService`, see `envoy.sh`) and logs the table at `warn` level. Plugin configuration
/// (VM configuration, optional): plain text `<candidate-substring or all> <rounds>`.
#[cfg(feature = "envoy")]
pub mod envoy {
    use proxy_wasm::traits::{Context, RootContext};
    use proxy_wasm::types::LogLevel;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Bench) });
    }}

    struct Bench;
    impl Context for Bench {}
    impl RootContext for Bench {
        fn on_vm_start(&mut self, _: usize) -> bool {
            let config = self
                .get_vm_configuration()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let mut words = config.split_whitespace();
            let filter = words.next().filter(|f| *f != "all");
            let rounds = words.next().and_then(|r| r.parse().ok()).unwrap_or(5);
            log::warn!("rsa-verify-bench: start (filter {filter:?}, {rounds} rounds, wall clock)");
            for line in super::run(filter, rounds, true) {
                log::warn!("rsa-verify-bench: {line}");
            }
            log::warn!("rsa-verify-bench: done");
            true
        }
    }
}
