//! Refreshing AWS credentials (web identity through STS, ECS/EKS container endpoint, EC2 IMDSv2)
//! for every VM: one fetch serves all workers through the [`Shared`] value
//! `duo_bedrock.aws_credentials`.
//!
//! Root contexts tick: a tick picks up credentials another VM fetched, and when they are due
//! (`refresh_at`: well before `Expiration`) and the lease is free, runs the fetch state machine
//! of `bedrock::credentials` with `dispatch_http_call` on the cluster each call names (token
//! files from the launcher, STS, the credentials endpoint; `config::Clusters`). A failed
//! refresh keeps serving with the current credentials until they expire, retries with
//! backoff, and is logged and counted. The secret lives in VM memory and shared data only.

use super::abi;
use super::shared::{Shared, LEASE_SECS};
use super::vm::Vm;
use crate::bedrock::credentials::{
    deserialize_shared, refresh_at, retry_at, serialize_shared, Fetch, Source, Step,
    CALL_TIMEOUT_SECS, MAX_BODY_BYTES,
};
use crate::config::{Clusters, Upstream};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::rc::Rc;
use std::time::Duration;

fn shared() -> Shared {
    Shared::new("duo_bedrock.aws_credentials".into())
}

#[derive(Default)]
pub struct CredentialFetcher {
    /// The fetch this root context runs: (dispatch token, state machine, started at).
    in_flight: Option<(u32, Fetch, u64)>,
    seen: Option<u32>,
}

impl CredentialFetcher {
    pub fn tick(&mut self, vm: &mut Vm, now: u64) {
        let Upstream::Refreshing { source, clusters } = &vm.config.upstream else {
            return;
        };
        let (source, clusters) = (source.clone(), clusters.clone());
        self.sync(vm);
        if self
            .in_flight
            .as_ref()
            .is_some_and(|(_, _, started)| now.saturating_sub(*started) >= LEASE_SECS)
        {
            self.in_flight = None;
        }
        let value = shared();
        if self.in_flight.is_none() && value.due(now) && value.claim_lease(now) {
            let (fetch, step) = Fetch::start(&source, now);
            self.step(vm, &source, &clusters, fetch, step, now);
        }
    }

    pub fn on_response(&mut self, vm: &mut Vm, token: u32, body_size: usize, now: u64) -> bool {
        let Some((expected, mut fetch, _)) = self.in_flight.take() else {
            return false;
        };
        if expected != token {
            self.in_flight = Some((expected, fetch, now));
            return false;
        }
        let Upstream::Refreshing { source, clusters } = &vm.config.upstream else {
            return true;
        };
        let (source, clusters) = (source.clone(), clusters.clone());
        let status = abi::header(MapType::HttpCallResponseHeaders, ":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let body = abi::buffer(
            BufferType::HttpCallResponseBody,
            0,
            body_size.min(MAX_BODY_BYTES),
        )
        .unwrap_or_default();
        let step = fetch.on_response(status, &body, now);
        self.step(vm, &source, &clusters, fetch, step, now);
        true
    }

    fn step(
        &mut self,
        vm: &mut Vm,
        source: &Source,
        clusters: &Clusters,
        fetch: Fetch,
        step: Step,
        now: u64,
    ) {
        match step {
            Step::Call(call) => {
                let Some(cluster) = clusters.name(call.to) else {
                    // Config::load refuses a source without the clusters it needs.
                    self.failed(vm, source, now, &format!("no cluster for {:?}", call.to));
                    return;
                };
                let scheme = if call.scheme_https { "https" } else { "http" };
                let mut headers: Vec<(&str, &str)> = vec![
                    (":method", call.method),
                    (":path", &call.path),
                    (":authority", &call.authority),
                    (":scheme", scheme),
                ];
                headers.extend(call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                match hostcalls::dispatch_http_call(
                    cluster,
                    headers,
                    (!call.body.is_empty()).then_some(call.body.as_slice()),
                    vec![],
                    Duration::from_secs(CALL_TIMEOUT_SECS),
                ) {
                    Ok(token) => self.in_flight = Some((token, fetch, now)),
                    Err(e) => self.failed(
                        vm,
                        source,
                        now,
                        &format!("cannot call cluster '{cluster}': {e:?}"),
                    ),
                }
            }
            Step::Done(fetched) => {
                let payload = String::from_utf8(serialize_shared(&fetched)).unwrap_or_default();
                let next = refresh_at(now, fetched.expires_at);
                if shared().stored(&payload, now, next) {
                    log::info!(
                        "AWS credentials from the {} source loaded (expire in {} s); next refresh in {} s",
                        source.kind(),
                        fetched.expires_at.map_or(0, |t| t.saturating_sub(now)),
                        next.saturating_sub(now)
                    );
                } else {
                    log::warn!("AWS credentials fetched but could not be shared");
                }
                vm.metrics.inc(
                    "credential_refreshes_total",
                    &[("source", source.kind()), ("result", "ok")],
                );
                self.sync(vm);
            }
            Step::Failed(why) => self.failed(vm, source, now, &why),
        }
    }

    fn failed(&mut self, vm: &mut Vm, source: &Source, now: u64, why: &str) {
        self.in_flight = None;
        vm.metrics.inc(
            "credential_refreshes_total",
            &[("source", source.kind()), ("result", "failed")],
        );
        let failures = shared().failed(|n| retry_at(now, n));
        let current = vm.aws.as_ref().filter(|c| !c.is_expired(now));
        log::warn!(
            "AWS credential refresh from the {} source failed ({failures} in a row): {why}; {}",
            source.kind(),
            if current.is_some() {
                "still signing with the current credentials"
            } else {
                "no valid credentials"
            }
        );
    }

    /// Picks up credentials any VM stored.
    pub fn sync(&mut self, vm: &mut Vm) {
        let (record, cas) = shared().read();
        if cas.is_none() || cas == self.seen {
            return;
        }
        self.seen = cas;
        if let Some(fetched) = record.and_then(|r| deserialize_shared(r.payload.as_bytes())) {
            vm.aws = Some(Rc::new(fetched));
            vm.generation += 1;
        }
    }
}
