//! A proxy-wasm filter with the real filter's Envoy round trips and none of its work: the
//! `make bench` row "proxy-wasm floor" (see Cargo.toml). Errors are ignored: it only measures.
//!
//! For `BENCH_ROWS=hostcalls`, its plugin configuration `"<kind> <n>"` adds `n` hostcalls of one
//! kind to every request's header callback (`clock`, `header`, `property`, `map`), so the bench
//! can price one hostcall in Envoy's V8 by difference.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::<Root>::default());
}}

#[derive(Clone, Copy, Default)]
enum Extra {
    #[default]
    None,
    Clock,
    Header,
    Property,
    Map,
}

#[derive(Default)]
struct Root {
    extra: (Extra, u32),
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        let mut words = config.split_whitespace();
        let kind = match words.next() {
            Some("clock") => Extra::Clock,
            Some("header") => Extra::Header,
            Some("property") => Extra::Property,
            Some("map") => Extra::Map,
            _ => Extra::None,
        };
        let n = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        self.extra = (kind, n);
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor { extra: self.extra }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor {
    extra: (Extra, u32),
}

impl Context for Floor {}

impl Floor {
    fn extra_hostcalls(&self) {
        let (kind, n) = self.extra;
        for _ in 0..n {
            match kind {
                Extra::None => {}
                Extra::Clock => {
                    let _ = hostcalls::get_current_time();
                }
                Extra::Header => {
                    let _ = hostcalls::get_map_value(MapType::HttpRequestHeaders, "content-type");
                }
                // What the filter reads once per request with jwt_authn in front.
                Extra::Property => {
                    let _ = hostcalls::get_property(vec![
                        "metadata",
                        "filter_metadata",
                        "envoy.filters.http.jwt_authn",
                        "duo_bedrock_verified",
                        "jti",
                    ]);
                }
                Extra::Map => {
                    let _ = hostcalls::get_map(MapType::HttpRequestHeaders);
                }
            }
        }
    }
}

fn rewrite_body(buffer: BufferType, size: usize) {
    let body = hostcalls::get_buffer(buffer, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default();
    let _ = hostcalls::set_buffer(buffer, 0, size, &body);
}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let _ = hostcalls::get_map(MapType::HttpRequestHeaders);
        self.extra_hostcalls();
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        rewrite_body(BufferType::HttpRequestBody, size);
        let headers = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default();
        let _ = hostcalls::set_map(
            MapType::HttpRequestHeaders,
            headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        );
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let _ = hostcalls::get_map(MapType::HttpResponseHeaders);
        let _ = hostcalls::get_property(vec!["response", "code_details"]);
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        rewrite_body(BufferType::HttpResponseBody, size);
        Action::Continue
    }
}
