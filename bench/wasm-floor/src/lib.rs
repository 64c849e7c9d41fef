//! A proxy-wasm filter with the real filter's Envoy round trips and none of its work: the
//! `make bench` row "proxy-wasm floor" (see Cargo.toml). Errors are ignored: it only measures.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor;

impl Context for Floor {}

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
