//! Keeps the GitLab key set fresh for every VM: one fetch serves all workers.
//!
//! Per OIDC provider, a [`Shared`] value `duo_bedrock.jwks.<provider>` holds the canonical
//! JWKS JSON and its schedule, and a lease says who fetches now.
//!
//! Every root context ticks; a tick re-reads the records (cheap, and only on ticks, never per
//! request), and when a provider is due and its lease is free it claims the lease and fetches
//! `GET /.well-known/openid-configuration` → `jwks_uri` → JWKS with `dispatch_http_call`
//! (docs/gitlab-contract.md#key-sources; the gateway's `urljoin(base, "/.well-known/...")` drops
//! any base path). A failed fetch keeps the last good keys and retries with backoff. An unknown
//! `kid` asks for an early refresh, rate-limited across all VMs through the record's `forced_at`.

use super::abi;
use super::shared::{Shared, LEASE_SECS};
use super::vm::Vm;
use crate::auth::keys::{
    http_target, jwks_uri_from_discovery, max_age, merge_jwks_json, KeySet, MAX_DOCUMENT_BYTES,
};
use crate::config::OidcProvider;
use crate::gitlab::errors::EnvoyFailure;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Refresh at least this often, whatever `Cache-Control: max-age` says.
const MAX_REFRESH_SECS: u64 = 3600;
/// At most one unknown-`kid` refresh per provider in this many seconds (≤ 4 per minute).
const FORCED_REFRESH_INTERVAL_SECS: u64 = 15;
/// Per-call timeout, as the gateway's (10 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

fn shared(p: &OidcProvider) -> Shared {
    Shared::new(format!("duo_bedrock.jwks.{}", p.name))
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Discovery,
    Keys,
}

/// The fetches this root context has in flight, by `dispatch_http_call` token.
#[derive(Default)]
pub struct Fetcher {
    /// token → (provider index, stage, started at).
    in_flight: HashMap<u32, (usize, Stage, u64)>,
    /// Shared-data CAS of each provider's record as last merged into the VM's key set.
    seen: Vec<Option<u32>>,
    docs: Vec<Option<String>>,
    /// False until the first key set (possibly only the local keys) was built.
    built: bool,
}

impl Fetcher {
    /// One tick: pick up keys other VMs fetched, start fetches that are due.
    pub fn tick(&mut self, vm: &mut Vm, now: u64) {
        self.sync(vm);
        // A call the host never answered (it should, after CALL_TIMEOUT) must not block refreshes.
        self.in_flight
            .retain(|_, (_, _, started)| now.saturating_sub(*started) < LEASE_SECS);
        let providers = vm.config.providers.clone();
        let mut any_in_flight = false;
        for (i, p) in providers.iter().enumerate() {
            let mine = self.in_flight.values().any(|(j, _, _)| *j == i);
            if !mine {
                let value = shared(p);
                if value.due(now) && value.claim_lease(now) {
                    let to = Target {
                        cluster: &p.cluster,
                        authority: &p.authority,
                        path: DISCOVERY_PATH,
                    };
                    self.start(vm, i, Stage::Discovery, to, now);
                }
            }
            any_in_flight |=
                self.in_flight.values().any(|(j, _, _)| *j == i) || shared(p).lease_held(now);
        }
        vm.fetch_in_flight = any_in_flight;
    }
}

/// Asks every provider for an early refresh after an unknown `kid`. True when one was
/// scheduled or is already under way, i.e. when waiting can help. Any context may call it:
/// it only writes shared data; the root contexts' ticks do the fetching.
pub fn request_refresh(vm: &mut Vm, now: u64) -> bool {
    let mut helps = false;
    for p in &vm.config.providers {
        let value = shared(p);
        let scheduled = value.update(|r| {
            if now.saturating_sub(r.forced_at) < FORCED_REFRESH_INTERVAL_SECS
                || r.next_refresh_at <= now
            {
                return false;
            }
            r.forced_at = now;
            r.next_refresh_at = now;
            true
        });
        helps |= scheduled || value.due(now) || value.lease_held(now);
    }
    if helps {
        vm.fetch_in_flight = true;
    }
    helps
}

/// Where one call of a fetch goes.
struct Target<'a> {
    cluster: &'a str,
    authority: &'a str,
    path: &'a str,
}

impl Fetcher {
    fn start(&mut self, vm: &mut Vm, i: usize, stage: Stage, to: Target, now: u64) {
        let headers = vec![
            (":method", "GET"),
            (":path", to.path),
            (":authority", to.authority),
            ("accept", "application/json"),
            ("user-agent", "duo-bedrock-filter"),
        ];
        match hostcalls::dispatch_http_call(to.cluster, headers, None, vec![], CALL_TIMEOUT) {
            Ok(token) => {
                self.in_flight.insert(token, (i, stage, now));
            }
            Err(e) => {
                if let Some(p) = vm.config.providers.get(i).cloned() {
                    self.failed(
                        vm,
                        &p,
                        now,
                        &match e {
                            // Envoy could not even start the call: with a DNS cluster, no
                            // address is known for the host (the lookup failed).
                            proxy_wasm::types::Status::InternalFailure => format!(
                                "{}: DNS lookup failed or gave no address for {}; nothing was \
                                 sent (Envoy cluster '{}')",
                                p.base_url, to.authority, to.cluster
                            ),
                            other => {
                                format!("cannot call Envoy cluster '{}': {other:?}", to.cluster)
                            }
                        },
                    );
                }
            }
        }
    }

    /// Handles a `dispatch_http_call` answer; false when the token is not ours.
    pub fn on_response(&mut self, vm: &mut Vm, token: u32, body_size: usize, now: u64) -> bool {
        let Some((i, stage, _)) = self.in_flight.remove(&token) else {
            return false;
        };
        let Some(p) = vm.config.providers.get(i).cloned() else {
            return true;
        };
        let headers = abi::header_map(MapType::HttpCallResponseHeaders);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let status = header(":status").unwrap_or("");
        let what = match stage {
            Stage::Discovery => "openid-configuration",
            Stage::Keys => "JWKS",
        };
        if status != "200" {
            let small = abi::buffer(BufferType::HttpCallResponseBody, 0, body_size.min(512))
                .unwrap_or_default();
            let why = if status.is_empty() {
                format!(
                    "{what} fetch from {}: no answer (timeout or connection failure)",
                    p.base_url
                )
            } else if let Some(f) = EnvoyFailure::from_callout_answer(status, &small) {
                format!("{what} fetch: {}", f.describe(&p.base_url))
            } else {
                format!("{what} fetch: {} answered HTTP {status}", p.base_url)
            };
            self.failed(vm, &p, now, &why);
            return true;
        }
        // Bounded before anything is read or parsed: GitLab's documents are a few KiB.
        if body_size > MAX_DOCUMENT_BYTES {
            let why = format!("{what} of {body_size} bytes refused (at most {MAX_DOCUMENT_BYTES})");
            self.failed(vm, &p, now, &why);
            return true;
        }
        let body = abi::buffer(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default();
        match stage {
            Stage::Discovery => {
                match jwks_uri_from_discovery(&body)
                    .and_then(|uri| http_target(&uri).map(|t| (t.authority, t.path)))
                {
                    Ok((authority, path)) => {
                        let cluster = vm
                            .config
                            .providers
                            .iter()
                            .find(|q| q.authority.eq_ignore_ascii_case(&authority))
                            .map(|q| q.cluster.clone())
                            .unwrap_or_else(|| p.cluster.clone());
                        self.start(
                            vm,
                            i,
                            Stage::Keys,
                            Target {
                                cluster: &cluster,
                                authority: &authority,
                                path: &path,
                            },
                            now,
                        );
                    }
                    Err(e) => self.failed(vm, &p, now, &format!("openid-configuration: {e}")),
                }
            }
            Stage::Keys => match merge_jwks_json(&[&body]) {
                Ok(jwks) if KeySet::from_jwks(&[jwks.as_bytes()]).is_ok_and(|k| !k.is_empty()) => {
                    let refresh = max_age(header("cache-control"))
                        .unwrap_or(MAX_REFRESH_SECS)
                        .clamp(1, MAX_REFRESH_SECS);
                    let stored = shared(&p).stored(&jwks, now, now + refresh);
                    vm.metrics.inc(
                        "jwks_refreshes_total",
                        &[("provider", p.name), ("result", "ok")],
                    );
                    if stored {
                        log::info!(
                            "JWKS of {} loaded ({} bytes); next refresh in {refresh} s",
                            p.name,
                            jwks.len()
                        );
                    } else {
                        log::warn!("JWKS of {} fetched but could not be shared", p.name);
                    }
                    self.sync(vm);
                }
                Ok(_) => self.failed(vm, &p, now, "JWKS holds no usable RSA key"),
                Err(e) => self.failed(vm, &p, now, &format!("JWKS: {e}")),
            },
        }
        true
    }

    fn failed(&mut self, vm: &mut Vm, p: &OidcProvider, now: u64, why: &str) {
        vm.metrics.inc(
            "jwks_refreshes_total",
            &[("provider", p.name), ("result", "failed")],
        );
        // 5 s, 10 s, 20 s, 40 s, then every 60 s; the last good keys stay in place.
        let failures = shared(p).failed(|n| now + (5u64 << n.min(4).saturating_sub(1)).min(60));
        log::warn!(
            "GitLab key refresh failed for {} ({}), {failures} in a row: {why}; keeping the last good keys",
            p.name,
            p.base_url
        );
    }

    /// Rebuilds the VM's key set when any provider's shared record changed.
    pub fn sync(&mut self, vm: &mut Vm) {
        let n = vm.config.providers.len();
        self.seen.resize(n, None);
        self.docs.resize(n, None);
        let mut changed = false;
        for (i, p) in vm.config.providers.iter().enumerate() {
            let (record, cas) = shared(p).read();
            if cas.is_none() || cas == self.seen[i] {
                continue;
            }
            self.seen[i] = cas;
            let doc = record.map(|r| r.payload).filter(|j| !j.is_empty());
            if doc != self.docs[i] {
                self.docs[i] = doc;
                changed = true;
            }
        }
        if !changed && self.built {
            return;
        }
        self.built = true;
        let local = vm.config.local_jwks.as_deref().map(str::as_bytes);
        let docs: Vec<&[u8]> = self
            .docs
            .iter()
            .flatten()
            .map(|d| d.as_bytes())
            .chain(local)
            .collect();
        if docs.is_empty() {
            return;
        }
        match KeySet::from_jwks(&docs) {
            Ok(keys) if !keys.is_empty() => {
                vm.keys = Some(Rc::new(keys));
                vm.generation += 1;
                vm.cache.clear();
            }
            Ok(_) => {}
            Err(e) => log::warn!("shared JWKS unusable: {e}"),
        }
    }
}
