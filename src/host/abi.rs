//! The hostcalls the filter makes per request and per callout, without panics.
//!
//! proxy-wasm 0.2.5's wrappers (`proxy_wasm::hostcalls`) `panic!` on any status they do not
//! expect (Envoy answers `BadArgument` or `NotFound` when a map or buffer is not available in
//! the current callback) and `unwrap()` the UTF-8 conversion of header maps; a panic kills the
//! VM for every request on that worker. These wrappers call the same ABI functions (proxy-wasm
//! ABI 0.2.1, which the SDK's own `extern` blocks declare) and turn every status into a value.
//! Header maps are decoded by [`crate::wire`], which never panics and reads bytes as the
//! gateway's framework does. `clippy.toml` forbids the SDK's panicking variants, so they
//! cannot come back by accident.

use crate::wire::{decode_header_map, encode_header_map, HeaderPairs};
use proxy_wasm::types::{BufferType, MapType, StreamType};
use std::ptr::{null, null_mut};

/// `WasmResult::Ok`. Statuses are read as plain integers: a value the SDK's `Status` enum does
/// not list must not become an invalid enum.
const OK: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_set_header_map_pairs(map_type: MapType, map_data: *const u8, map_size: usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: StreamType) -> u32;
}

/// Takes ownership of memory the host allocated through the SDK's `proxy_on_memory_allocate`
/// (a boxed slice of exactly `size` bytes).
///
/// # Safety
/// `data` must be null or a pointer the host returned from a successful hostcall with `size`.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// A whole header map (request, response, trailers, callout answer). Empty when the host has
/// none in this callback or sent something malformed.
pub fn header_map(map: MapType) -> HeaderPairs {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers to locals; on Ok the host filled them with its allocation.
    let bytes = unsafe {
        match proxy_get_header_map_pairs(map, &mut data, &mut size) {
            OK => take(data, size),
            _ => return Vec::new(),
        }
    };
    decode_header_map(&bytes).unwrap_or_else(|| {
        log::warn!(
            "the host sent a malformed header map ({} bytes)",
            bytes.len()
        );
        Vec::new()
    })
}

/// One header's value as text (latin-1, as [`crate::wire::latin1`]); `None` when absent.
pub fn header(map: MapType, name: &str) -> Option<String> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as in `header_map`.
    let bytes = unsafe {
        match proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) {
            OK => take(data, size),
            _ => return None,
        }
    };
    Some(crate::wire::latin1(&bytes))
}

/// Replaces a whole header map. False when the host refused.
pub fn set_header_map(map: MapType, pairs: &[(&str, &str)]) -> bool {
    let bytes = encode_header_map(pairs);
    // SAFETY: the pointer and length describe `bytes`, alive for the call.
    unsafe { proxy_set_header_map_pairs(map, bytes.as_ptr(), bytes.len()) == OK }
}

/// Up to `max` bytes of a buffer from `start`; `None` when the host has no such buffer now.
pub fn buffer(kind: BufferType, start: usize, max: usize) -> Option<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as in `header_map`.
    unsafe {
        match proxy_get_buffer_bytes(kind, start, max, &mut data, &mut size) {
            OK => Some(take(data, size)),
            _ => None,
        }
    }
}

/// Replaces `size` bytes of a buffer from `start` with `value`. False when the host refused.
pub fn set_buffer(kind: BufferType, start: usize, size: usize, value: &[u8]) -> bool {
    // SAFETY: the pointer and length describe `value`, alive for the call.
    unsafe { proxy_set_buffer_bytes(kind, start, size, value.as_ptr(), value.len()) == OK }
}

fn property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

/// A host property (`["response", "code_details"]`, dynamic metadata, ...); `None` when unset.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let path = property_path(path);
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as in `header_map`.
    unsafe {
        match proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) {
            OK if !data.is_null() => Some(take(data, size)),
            _ => None,
        }
    }
}

/// Sets a property of this request (Envoy keeps it as filter state `wasm.<path>`).
pub fn set_property(path: &[&str], value: &[u8]) -> bool {
    let path = property_path(path);
    // SAFETY: both pointers describe live slices for the duration of the call.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) == OK }
}

/// A local reply. False when the host refused (for instance, the answer already started).
pub fn send_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let headers = encode_header_map(headers);
    // SAFETY: every pointer describes a live slice for the duration of the call.
    unsafe {
        proxy_send_local_response(
            u32::from(status),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        ) == OK
    }
}

/// Resumes a request paused in an earlier callback.
pub fn resume_request() -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_continue_stream(StreamType::HttpRequest) == OK }
}
