//! Incremental decoder for the `application/vnd.amazon.eventstream` body of
//! InvokeModelWithResponseStream.
//!
//! Contract: `docs/bedrock-contract.md#invoke-with-response-stream` (`ResponseStream` members),
//! `#event-stream` (binary framing, CRCs, headers) and `#stream-events` (the
//! `{"bytes": base64, "p": padding}` chunk payload).
//! Frames are decoded and CRC-checked by aws-smithy-eventstream (`read_message_from`, one whole
//! frame at a time); this module adds the framing across arbitrary chunk boundaries (whole frames
//! are read where they lie in the chunk, only a frame cut off by a chunk boundary is copied), an
//! early prelude check (CRC and a size bound, so garbage is rejected after 12 bytes instead of
//! being buffered), and the Bedrock mapping:
//!
//! * `:message-type` `event` + `:event-type` `chunk` → base64 `bytes` → [`parse_event`];
//!   other event types are skipped.
//! * `:message-type` `exception` → [`StreamFrame::Exception`] (`:exception-type`, payload
//!   `message`/`Message`).
//! * `:message-type` `error` → [`StreamFrame::Exception`] (`:error-code`, `:error-message`).
//! * Anything broken (CRC, lengths, headers, JSON, base64, event shape) → one
//!   [`StreamFrame::Malformed`], after which the decoder stays stopped.

use std::borrow::Cow;

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::Message;
use base64::Engine;

use super::lenient::{read, Members, Slot};
use super::stream::{parse_event, StreamEvent};

/// Largest frame accepted (declared total length, prelude and CRCs included). Bedrock chunks
/// carry at most 1,000,000 payload bytes (`PartBody`), base64-encoded.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

const PRELUDE_LEN: usize = 12;
/// Prelude plus the trailing message CRC.
const MIN_FRAME_LEN: usize = 16;

/// One decoded event-stream message, as the filter needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFrame {
    /// An Anthropic stream event from a `chunk`.
    Event(StreamEvent),
    /// A modelled exception (`throttlingException`, `modelStreamErrorException`, …) or an
    /// unmodelled error (`:error-code`).
    Exception { kind: String, message: String },
    /// The stream cannot be decoded any further; the decoder has stopped.
    Malformed(String),
}

/// Buffers larger than this are freed rather than kept for the next frame (a stream's frames
/// are small; one large frame should not cost memory for the rest of the stream).
const KEEP_CAPACITY: usize = 64 * 1024;

/// Stateful decoder: feed it body chunks as they arrive.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    /// The start of a frame that the last chunk cut off (at most one frame, never a whole one).
    pending: Vec<u8>,
    /// The base64-decoded event of the current `chunk`, reused from frame to frame.
    event: Vec<u8>,
    stopped: bool,
}

impl EventStreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `chunk` and returns every frame it completes, in order. After a
    /// [`StreamFrame::Malformed`] every later call returns nothing.
    ///
    /// Whole frames are decoded where they lie in `chunk`; only a frame cut off at either end
    /// of a chunk is copied, into `pending`, until its last byte arrives.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<StreamFrame> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        let mut rest = chunk;
        if !self.pending.is_empty() {
            match self.complete_pending(&mut rest) {
                Ok(false) => return out, // still incomplete; `rest` is used up
                Ok(true) => {
                    let decoded = decode_frame(&self.pending, &mut self.event);
                    if !self.emit(decoded, &mut out) {
                        return out;
                    }
                    self.pending.clear();
                    if self.pending.capacity() > KEEP_CAPACITY {
                        self.pending = Vec::new();
                    }
                }
                Err(why) => {
                    self.emit(Err(why), &mut out);
                    return out;
                }
            }
        }
        loop {
            let total = match check_prelude(rest) {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(why) => {
                    self.emit(Err(why), &mut out);
                    return out;
                }
            };
            let (Some(frame), Some(after)) = (rest.get(..total), rest.get(total..)) else {
                break; // the rest of this frame has not arrived yet
            };
            let decoded = decode_frame(frame, &mut self.event);
            if !self.emit(decoded, &mut out) {
                return out;
            }
            rest = after;
        }
        self.pending.extend_from_slice(rest);
        out
    }

    /// Moves bytes from the front of `rest` to `pending` until it holds the prelude, then the
    /// whole frame and nothing more: `Ok(true)` once it does, `Ok(false)` when `rest` ran out
    /// first.
    fn complete_pending(&mut self, rest: &mut &[u8]) -> Result<bool, String> {
        if !self.fill_pending(rest, PRELUDE_LEN) {
            return Ok(false);
        }
        let Some(total) = check_prelude(&self.pending)? else {
            return Ok(false);
        };
        Ok(self.fill_pending(rest, total))
    }

    /// Appends to `pending` from `rest` up to `len` bytes in all; whether it holds them now.
    fn fill_pending(&mut self, rest: &mut &[u8], len: usize) -> bool {
        let want = len.saturating_sub(self.pending.len()).min(rest.len());
        let (head, tail) = rest.split_at_checked(want).unwrap_or((rest, &[]));
        self.pending.extend_from_slice(head);
        *rest = tail;
        self.pending.len() >= len
    }

    /// Adds a decoded frame to `out`; on an error adds [`StreamFrame::Malformed`], stops the
    /// decoder and returns false.
    fn emit(
        &mut self,
        decoded: Result<Option<StreamFrame>, String>,
        out: &mut Vec<StreamFrame>,
    ) -> bool {
        match decoded {
            Ok(frame) => {
                out.extend(frame);
                true
            }
            Err(why) => {
                out.push(StreamFrame::Malformed(why));
                self.stop();
                false
            }
        }
    }

    /// Call at end of stream: reports a frame cut off by the end of the body, if any.
    pub fn finish(&mut self) -> Option<StreamFrame> {
        if self.stopped || self.pending.is_empty() {
            self.stop();
            return None;
        }
        let n = self.pending.len();
        self.stop();
        Some(StreamFrame::Malformed(format!(
            "event stream ended inside a frame ({n} bytes left over)"
        )))
    }

    /// Bytes held while waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.pending = Vec::new();
        self.event = Vec::new();
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

/// `Ok(None)` if fewer than 12 bytes are available; otherwise the declared total length after
/// checking the prelude CRC and the bounds.
fn check_prelude(b: &[u8]) -> Result<Option<usize>, String> {
    if b.len() < PRELUDE_LEN {
        return Ok(None);
    }
    let (Some(total), Some(headers), Some(crc), Some(head)) =
        (be_u32(b, 0), be_u32(b, 4), be_u32(b, 8), b.get(..8))
    else {
        return Ok(None);
    };
    if crc32fast::hash(head) != crc {
        return Err("event-stream prelude checksum mismatch (not an event stream?)".to_string());
    }
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let headers = usize::try_from(headers).unwrap_or(usize::MAX);
    if total > MAX_FRAME_LEN {
        return Err(format!(
            "event-stream frame of {total} bytes exceeds the {MAX_FRAME_LEN}-byte limit"
        ));
    }
    if total < MIN_FRAME_LEN || headers > total - MIN_FRAME_LEN {
        return Err("event-stream frame lengths are inconsistent".to_string());
    }
    Ok(Some(total))
}

fn header_str<'a>(msg: &'a Message, name: &str) -> Option<&'a str> {
    msg.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

/// One whole frame (`frame` is exactly its declared length, prelude checked): decoded and
/// CRC-checked by aws-smithy-eventstream, then mapped. `event` is scratch space for the
/// base64-decoded chunk.
fn decode_frame(frame: &[u8], event: &mut Vec<u8>) -> Result<Option<StreamFrame>, String> {
    let msg = read_message_from(frame).map_err(|e| format!("invalid event-stream frame: {e}"))?;
    let mapped = map_message(&msg, event);
    if event.capacity() > KEEP_CAPACITY {
        *event = Vec::new();
    }
    mapped
}

/// A `chunk` payload: `{"bytes": "<base64>", "p": "<padding>"}` (docs/bedrock-contract.md#stream-events).
#[derive(Default)]
struct ChunkPayload<'a> {
    bytes: Option<Cow<'a, str>>,
}

impl<'de> Members<'de> for ChunkPayload<'de> {
    fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
        match key {
            "bytes" => Slot::Str(&mut self.bytes),
            _ => Slot::Skip,
        }
    }
}

/// An exception payload: `{"message": ..}`, or `{"Message": ..}` as `modelStreamErrorException`
/// sends it. A `message` member of another type hides `Message`, as
/// `get("message").or_else(|| get("Message"))` on a `Value` did.
#[derive(Default)]
struct ExceptionPayload<'a> {
    has_message: bool,
    message: Option<Cow<'a, str>>,
    capitalised: Option<Cow<'a, str>>,
}

impl<'de> Members<'de> for ExceptionPayload<'de> {
    fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
        match key {
            "message" => {
                self.has_message = true;
                Slot::Str(&mut self.message)
            }
            "Message" => Slot::Str(&mut self.capitalised),
            _ => Slot::Skip,
        }
    }
}

fn map_message(msg: &Message, event: &mut Vec<u8>) -> Result<Option<StreamFrame>, String> {
    match header_str(msg, ":message-type") {
        Some("event") => {
            if header_str(msg, ":event-type") != Some("chunk") {
                return Ok(None);
            }
            let payload = read::<ChunkPayload>(msg.payload())
                .map_err(|e| format!("chunk payload is not JSON: {e}"))?;
            let b64 = payload
                .and_then(|p| p.bytes)
                .ok_or_else(|| "chunk payload has no \"bytes\" string".to_string())?;
            event.clear();
            base64::engine::general_purpose::STANDARD
                .decode_vec(b64.as_bytes(), event)
                .map_err(|e| format!("chunk \"bytes\" is not base64: {e}"))?;
            parse_event(event).map(|ev| Some(StreamFrame::Event(ev)))
        }
        Some("exception") => {
            let kind = header_str(msg, ":exception-type")
                .unwrap_or("UnknownException")
                .to_string();
            let message = read::<ExceptionPayload>(msg.payload())
                .ok()
                .flatten()
                .and_then(|p| {
                    if p.has_message {
                        p.message
                    } else {
                        p.capitalised
                    }
                })
                .map(Cow::into_owned)
                .unwrap_or_default();
            Ok(Some(StreamFrame::Exception { kind, message }))
        }
        Some("error") => Ok(Some(StreamFrame::Exception {
            kind: header_str(msg, ":error-code")
                .unwrap_or("UnknownError")
                .to_string(),
            message: header_str(msg, ":error-message").unwrap_or("").to_string(),
        })),
        Some(other) => Err(format!(
            "unknown event-stream :message-type '{}'",
            other.escape_default()
        )),
        None => Err("event-stream frame without a :message-type".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::stream::InvocationMetrics;

    // ---- test-only encoder (independent of aws-smithy-eventstream's writer) ----

    enum Hv<'a> {
        Str(&'a str),
        I32(i32),
    }

    fn encode(headers: &[(&str, Hv)], payload: &[u8]) -> Vec<u8> {
        let mut hb = Vec::new();
        for (name, value) in headers {
            hb.push(name.len() as u8);
            hb.extend_from_slice(name.as_bytes());
            match value {
                Hv::Str(s) => {
                    hb.push(7);
                    hb.extend_from_slice(&(s.len() as u16).to_be_bytes());
                    hb.extend_from_slice(s.as_bytes());
                }
                Hv::I32(n) => {
                    hb.push(4);
                    hb.extend_from_slice(&n.to_be_bytes());
                }
            }
        }
        let total = 12 + hb.len() + payload.len() + 4;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(hb.len() as u32).to_be_bytes());
        let pc = crc32fast::hash(&out);
        out.extend_from_slice(&pc.to_be_bytes());
        out.extend_from_slice(&hb);
        out.extend_from_slice(payload);
        let mc = crc32fast::hash(&out);
        out.extend_from_slice(&mc.to_be_bytes());
        out
    }

    fn chunk_frame(event_json: &str, pad: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(event_json);
        let payload = format!(r#"{{"bytes":"{b64}","p":"{pad}"}}"#);
        encode(
            &[
                (":event-type", Hv::Str("chunk")),
                (":content-type", Hv::Str("application/json")),
                (":message-type", Hv::Str("event")),
            ],
            payload.as_bytes(),
        )
    }

    fn exception_frame(kind: &str, payload: &str) -> Vec<u8> {
        encode(
            &[
                (":exception-type", Hv::Str(kind)),
                (":content-type", Hv::Str("application/json")),
                (":message-type", Hv::Str("exception")),
            ],
            payload.as_bytes(),
        )
    }

    /// docs/bedrock-contract.md#stream-events: the decoded ai-gateway aws-anthropic fixture events,
    /// verbatim.
    const FIXTURE: [&str; 6] = [
        r#"{"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_bdrk_01Xyz","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":15}}"#,
        r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":10,"outputTokenCount":15,"invocationLatency":1798,"firstByteLatency":1507}}"#,
    ];

    fn fixture_stream() -> Vec<u8> {
        let pads = [
            "abcdefghijklmnopqrstuvwxyzABCDEF",
            "abcdefgh",
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            "abc",
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
            "",
        ];
        FIXTURE
            .iter()
            .zip(pads)
            .flat_map(|(e, p)| chunk_frame(e, p))
            .collect()
    }

    fn expected_fixture_frames() -> Vec<StreamFrame> {
        vec![
            StreamFrame::Event(StreamEvent::MessageStart {
                input_tokens: 10,
                model: Some("claude-sonnet-4-5-20250929".into()),
            }),
            StreamFrame::Event(StreamEvent::Other),
            StreamFrame::Event(StreamEvent::TextDelta("Hi".into())),
            StreamFrame::Event(StreamEvent::Other),
            StreamFrame::Event(StreamEvent::MessageDelta {
                stop_reason: Some("end_turn".into()),
                output_tokens: 15,
            }),
            StreamFrame::Event(StreamEvent::MessageStop {
                metrics: Some(InvocationMetrics {
                    input_tokens: 10,
                    output_tokens: 15,
                    invocation_latency_ms: 1798,
                    first_byte_latency_ms: 1507,
                }),
            }),
        ]
    }

    fn decode_in_pieces(data: &[u8], cuts: &[usize]) -> (Vec<StreamFrame>, EventStreamDecoder) {
        let mut d = EventStreamDecoder::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&data.len())) {
            out.extend(d.push(&data[last..c]));
            last = c;
        }
        (out, d)
    }

    #[test]
    fn test_encoder_matches_smithy_writer() {
        use aws_smithy_types::event_stream::{Header, HeaderValue};
        let msg = Message::new(&b"{\"bytes\":\"e30=\"}"[..])
            .add_header(Header::new(
                ":event-type",
                HeaderValue::String("chunk".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("event".into()),
            ))
            .add_header(Header::new("n", HeaderValue::Int32(-7)));
        let mut theirs = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&msg, &mut theirs).unwrap();
        let ours = encode(
            &[
                (":event-type", Hv::Str("chunk")),
                (":message-type", Hv::Str("event")),
                ("n", Hv::I32(-7)),
            ],
            b"{\"bytes\":\"e30=\"}",
        );
        assert_eq!(ours, theirs);
    }

    #[test]
    fn whole_fixture_in_one_push() {
        let data = fixture_stream();
        let mut d = EventStreamDecoder::new();
        assert_eq!(d.push(&data), expected_fixture_frames());
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn split_at_every_offset() {
        let data = fixture_stream();
        let expected = expected_fixture_frames();
        for i in 0..=data.len() {
            let (out, mut d) = decode_in_pieces(&data, &[i]);
            assert_eq!(out, expected, "split at {i}");
            assert_eq!(d.finish(), None, "split at {i}");
        }
        // Every single frame split at every offset into three pieces.
        let one = chunk_frame(FIXTURE[2], "xyz");
        for i in 0..=one.len() {
            for j in i..=one.len() {
                let (out, _) = decode_in_pieces(&one, &[i, j]);
                assert_eq!(
                    out,
                    vec![StreamFrame::Event(StreamEvent::TextDelta("Hi".into()))]
                );
            }
        }
    }

    #[test]
    fn one_byte_pushes() {
        let data = fixture_stream();
        let largest = FIXTURE
            .iter()
            .map(|e| {
                chunk_frame(
                    e,
                    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
                )
                .len()
            })
            .max()
            .unwrap();
        let mut d = EventStreamDecoder::new();
        let mut out = Vec::new();
        for b in &data {
            out.extend(d.push(std::slice::from_ref(b)));
            assert!(
                d.buffered() < largest,
                "never more than one partial frame held"
            );
        }
        assert_eq!(out, expected_fixture_frames());
        assert_eq!(d.push(&[]), vec![]);
    }

    #[test]
    fn many_frames_per_chunk_and_odd_chunk_sizes() {
        let mut data = Vec::new();
        let mut expected = Vec::new();
        for i in 0..500 {
            let text = format!("t{i} ✓\n");
            let ev = serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}});
            data.extend(chunk_frame(&ev.to_string(), &"p".repeat(i % 37)));
            expected.push(StreamFrame::Event(StreamEvent::TextDelta(text)));
        }
        let mut d = EventStreamDecoder::new();
        assert_eq!(d.push(&data), expected);
        // Pseudo-random chunking.
        let mut seed = 12345u64;
        let mut cuts = Vec::new();
        let mut at = 0usize;
        loop {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            at += 1 + (seed >> 33) as usize % 700;
            if at >= data.len() {
                break;
            }
            cuts.push(at);
        }
        let (out, _) = decode_in_pieces(&data, &cuts);
        assert_eq!(out, expected);
    }

    #[test]
    fn exceptions_and_errors() {
        let mut data = chunk_frame(FIXTURE[2], "");
        data.extend(exception_frame(
            "throttlingException",
            r#"{"message":"Too many requests, please wait before trying again."}"#,
        ));
        data.extend(exception_frame(
            "modelStreamErrorException",
            r#"{"Message":"boom","originalStatusCode":500}"#,
        ));
        data.extend(exception_frame("internalServerException", "not json"));
        data.extend(encode(
            &[
                (":message-type", Hv::Str("error")),
                (":error-code", Hv::Str("InternalFailure")),
                (":error-message", Hv::Str("An internal error occurred")),
            ],
            b"",
        ));
        data.extend(encode(&[(":message-type", Hv::Str("exception"))], b"{}"));
        let mut d = EventStreamDecoder::new();
        assert_eq!(
            d.push(&data),
            vec![
                StreamFrame::Event(StreamEvent::TextDelta("Hi".into())),
                StreamFrame::Exception {
                    kind: "throttlingException".into(),
                    message: "Too many requests, please wait before trying again.".into()
                },
                StreamFrame::Exception {
                    kind: "modelStreamErrorException".into(),
                    message: "boom".into()
                },
                StreamFrame::Exception {
                    kind: "internalServerException".into(),
                    message: String::new()
                },
                StreamFrame::Exception {
                    kind: "InternalFailure".into(),
                    message: "An internal error occurred".into()
                },
                StreamFrame::Exception {
                    kind: "UnknownException".into(),
                    message: String::new()
                },
            ]
        );
    }

    #[test]
    fn non_chunk_events_are_skipped() {
        let mut data = encode(
            &[
                (":message-type", Hv::Str("event")),
                (":event-type", Hv::Str("initial-response")),
            ],
            b"{}",
        );
        data.extend(chunk_frame(FIXTURE[2], ""));
        let mut d = EventStreamDecoder::new();
        assert_eq!(
            d.push(&data),
            vec![StreamFrame::Event(StreamEvent::TextDelta("Hi".into()))]
        );
    }

    fn assert_malformed_then_stopped(data: &[u8], expect_before: usize) {
        let mut d = EventStreamDecoder::new();
        let out = d.push(data);
        assert_eq!(out.len(), expect_before + 1, "{out:?}");
        assert!(
            matches!(out.last(), Some(StreamFrame::Malformed(_))),
            "{out:?}"
        );
        assert!(d.push(&chunk_frame(FIXTURE[2], "")).is_empty());
        assert_eq!(d.finish(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn bad_message_crc() {
        let mut data = chunk_frame(FIXTURE[2], "");
        let mut bad = chunk_frame(FIXTURE[2], "");
        let n = bad.len();
        bad[n - 1] ^= 1;
        data.extend(bad);
        assert_malformed_then_stopped(&data, 1);
        // Corrupted payload byte, CRCs untouched.
        let mut bad = chunk_frame(FIXTURE[2], "");
        bad[30] ^= 0x20;
        assert_malformed_then_stopped(&bad, 0);
    }

    #[test]
    fn bad_prelude_is_rejected_before_buffering() {
        let mut bad = chunk_frame(FIXTURE[2], "");
        bad[9] ^= 1; // prelude CRC
        let mut d = EventStreamDecoder::new();
        let out = d.push(&bad[..12]);
        assert!(
            matches!(out.as_slice(), [StreamFrame::Malformed(_)]),
            "{out:?}"
        );
        assert!(d.push(&bad[12..]).is_empty());
    }

    #[test]
    fn garbage_input() {
        for g in [
            &b"HTTP/1.1 500 Internal Server Error\r\n\r\n"[..],
            br#"{"message":"The security token included in the request is invalid."}"#,
            &[0u8; 64],
            &[0xffu8; 16],
        ] {
            assert_malformed_then_stopped(g, 0);
        }
        // Fewer than 12 bytes of garbage: nothing yet, reported at finish.
        let mut d = EventStreamDecoder::new();
        assert!(d.push(b"oops").is_empty());
        assert!(matches!(d.finish(), Some(StreamFrame::Malformed(_))));
        assert!(d.push(&chunk_frame(FIXTURE[2], "")).is_empty());
    }

    fn prelude(total: u32, headers: u32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&headers.to_be_bytes());
        let c = crc32fast::hash(&p);
        p.extend_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn length_bounds() {
        // Too large (valid prelude CRC): refused at once, nothing buffered.
        assert_malformed_then_stopped(&prelude(MAX_FRAME_LEN as u32 + 1, 0), 0);
        assert_malformed_then_stopped(&prelude(u32::MAX, 0), 0);
        // Smaller than a prelude + CRC.
        assert_malformed_then_stopped(&prelude(15, 0), 0);
        assert_malformed_then_stopped(&prelude(0, 0), 0);
        // Headers longer than the frame.
        assert_malformed_then_stopped(&prelude(100, 85), 0);
        // Exactly at the limit is accepted (waits for the bytes).
        let mut d = EventStreamDecoder::new();
        assert!(d.push(&prelude(MAX_FRAME_LEN as u32, 0)).is_empty());
        assert!(matches!(d.finish(), Some(StreamFrame::Malformed(_))));
        // Empty frame (no headers, no payload): no :message-type.
        let empty = encode(&[], b"");
        assert_eq!(empty.len(), 16);
        assert_malformed_then_stopped(&empty, 0);
    }

    #[test]
    fn truncated_stream() {
        let data = fixture_stream();
        for cut in [1, 11, 12, 13, 100, data.len() - 1] {
            let mut d = EventStreamDecoder::new();
            let out = d.push(&data[..cut]);
            assert!(out.len() < 6);
            match d.finish() {
                Some(StreamFrame::Malformed(m)) => assert!(m.contains("ended inside a frame")),
                other => panic!("cut {cut}: {other:?}"),
            }
            assert!(d.push(&data[cut..]).is_empty());
        }
    }

    #[test]
    fn bad_chunk_payloads() {
        let h = [
            (":event-type", Hv::Str("chunk")),
            (":message-type", Hv::Str("event")),
        ];
        for payload in [
            &b"not json"[..],
            br#"{"p":"x"}"#,
            br#"{"bytes":5}"#,
            br#"{"bytes":"***not base64***"}"#,
            br#"{"bytes":"e30"}"#,          // missing padding
            br#"{"bytes":"bm90IGpzb24="}"#, // "not json"
            br#"{"bytes":"e30="}"#,         // "{}": no type
        ] {
            let mut data = chunk_frame(FIXTURE[2], "");
            data.extend(encode(&h, payload));
            assert_malformed_then_stopped(&data, 1);
        }
        // Unknown message type, non-string message type.
        assert_malformed_then_stopped(&encode(&[(":message-type", Hv::Str("weird"))], b""), 0);
        assert_malformed_then_stopped(&encode(&[(":message-type", Hv::I32(1))], b""), 0);
    }

    #[test]
    fn chunk_payload_shapes() {
        let h = [
            (":event-type", Hv::Str("chunk")),
            (":message-type", Hv::Str("event")),
        ];
        let b64 = base64::engine::general_purpose::STANDARD.encode(FIXTURE[2]);
        let escaped = b64.replace('/', "\\/").replace('a', "\\u0061");
        for payload in [
            format!(r#"{{"bytes":"{b64}"}}"#),
            format!(r#"{{"p":"xyz","bytes":"{b64}","extra":{{"a":[1,null]}}}}"#),
            format!(r#"{{"bytes":"{escaped}","p":"\u00e9"}}"#),
            format!(r#"{{"bytes":null,"bytes":"{b64}"}}"#),
            format!(r#" {{ "bytes" : "{b64}" , "p" : "" }} "#),
        ] {
            let mut d = EventStreamDecoder::new();
            assert_eq!(
                d.push(&encode(&h, payload.as_bytes())),
                vec![StreamFrame::Event(StreamEvent::TextDelta("Hi".into()))],
                "{payload}"
            );
        }
        for payload in [
            format!(r#"{{"bytes":"{b64}","bytes":null}}"#),
            format!(r#"{{"bytes":["{b64}"]}}"#),
            format!(r#"["{b64}"]"#),
            format!(r#""{b64}""#),
            format!(r#"{{"bytes":"{b64}","p":"\ud800"}}"#),
            format!(r#"{{"bytes":"{b64}"}}{{}}"#),
        ] {
            let mut data = chunk_frame(FIXTURE[2], "");
            data.extend(encode(&h, payload.as_bytes()));
            assert_malformed_then_stopped(&data, 1);
        }
    }

    #[test]
    fn exception_payload_shapes() {
        let message = |payload: &str| {
            let mut d = EventStreamDecoder::new();
            match d
                .push(&exception_frame("validationException", payload))
                .as_slice()
            {
                [StreamFrame::Exception { kind, message }] => {
                    assert_eq!(kind, "validationException");
                    message.clone()
                }
                other => panic!("{payload}: {other:?}"),
            }
        };
        assert_eq!(message(r#"{"message":"a\"b"}"#), "a\"b");
        assert_eq!(message(r#"{"Message":"up","x":[{}]}"#), "up");
        assert_eq!(message(r#"{"Message":"up","message":"low"}"#), "low");
        // A `message` of another type hides `Message`, as `get(..).or_else(..)` on a Value did.
        assert_eq!(message(r#"{"message":null,"Message":"up"}"#), "");
        assert_eq!(message(r#"{"message":1,"Message":"up"}"#), "");
        assert_eq!(message(r#"{"message":"a","message":2}"#), "");
        assert_eq!(message(r#"["message"]"#), "");
        assert_eq!(message(r#"{"message":"x"} trailing"#), "");
        assert_eq!(message(""), "");
    }

    /// The decoder before this module decoded whole frames in place and read the payload typed:
    /// every chunk copied into one buffer, aws-smithy-eventstream's `MessageFrameDecoder`, the
    /// chunk payload walked as a `serde_json::Value`.
    mod reference {
        use super::super::{check_prelude, header_str, StreamFrame};
        use crate::bedrock::stream::parse_event;
        use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
        use aws_smithy_types::event_stream::Message;
        use base64::Engine;
        use serde_json::Value;

        #[derive(Default)]
        pub struct Decoder {
            buf: Vec<u8>,
            frames: MessageFrameDecoder,
            stopped: bool,
        }

        impl Decoder {
            pub fn push(&mut self, chunk: &[u8]) -> Vec<StreamFrame> {
                let mut out = Vec::new();
                if self.stopped {
                    return out;
                }
                self.buf.extend_from_slice(chunk);
                let mut pos = 0usize;
                while let Some(rest) = self.buf.get(pos..) {
                    let total = match check_prelude(rest) {
                        Ok(Some(total)) => total,
                        Ok(None) => break,
                        Err(why) => {
                            out.push(StreamFrame::Malformed(why));
                            self.stop();
                            return out;
                        }
                    };
                    let Some(frame) = rest.get(..total) else {
                        break;
                    };
                    let result = match self.frames.decode_frame(frame) {
                        Ok(DecodedFrame::Complete(msg)) => map_message(&msg),
                        Ok(DecodedFrame::Incomplete) => {
                            Err("incomplete event-stream frame".to_string())
                        }
                        Err(e) => Err(format!("invalid event-stream frame: {e}")),
                    };
                    match result {
                        Ok(Some(frame)) => out.push(frame),
                        Ok(None) => {}
                        Err(why) => {
                            out.push(StreamFrame::Malformed(why));
                            self.stop();
                            return out;
                        }
                    }
                    pos = pos.saturating_add(total);
                }
                self.buf.drain(..pos.min(self.buf.len()));
                out
            }

            pub fn finish(&mut self) -> Option<StreamFrame> {
                if self.stopped || self.buf.is_empty() {
                    self.stop();
                    return None;
                }
                let n = self.buf.len();
                self.stop();
                Some(StreamFrame::Malformed(format!(
                    "event stream ended inside a frame ({n} bytes left over)"
                )))
            }

            fn stop(&mut self) {
                self.stopped = true;
                self.buf = Vec::new();
            }
        }

        fn map_message(msg: &Message) -> Result<Option<StreamFrame>, String> {
            match header_str(msg, ":message-type") {
                Some("event") => {
                    if header_str(msg, ":event-type") != Some("chunk") {
                        return Ok(None);
                    }
                    let payload: Value = serde_json::from_slice(msg.payload())
                        .map_err(|e| format!("chunk payload is not JSON: {e}"))?;
                    let b64 = payload
                        .get("bytes")
                        .and_then(Value::as_str)
                        .ok_or_else(|| "chunk payload has no \"bytes\" string".to_string())?;
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| format!("chunk \"bytes\" is not base64: {e}"))?;
                    parse_event(&raw).map(|ev| Some(StreamFrame::Event(ev)))
                }
                Some("exception") => {
                    let kind = header_str(msg, ":exception-type")
                        .unwrap_or("UnknownException")
                        .to_string();
                    let message = serde_json::from_slice::<Value>(msg.payload())
                        .ok()
                        .and_then(|v| {
                            v.get("message")
                                .or_else(|| v.get("Message"))
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .unwrap_or_default();
                    Ok(Some(StreamFrame::Exception { kind, message }))
                }
                Some("error") => Ok(Some(StreamFrame::Exception {
                    kind: header_str(msg, ":error-code")
                        .unwrap_or("UnknownError")
                        .to_string(),
                    message: header_str(msg, ":error-message").unwrap_or("").to_string(),
                })),
                Some(other) => Err(format!(
                    "unknown event-stream :message-type '{}'",
                    other.escape_default()
                )),
                None => Err("event-stream frame without a :message-type".to_string()),
            }
        }
    }

    /// `data` pushed in pieces cut at `cuts` into both decoders: the same frames, errors and
    /// end-of-stream verdict.
    fn same_as_reference(data: &[u8], cuts: &[usize]) {
        let mut ends: Vec<usize> = cuts.to_vec();
        ends.push(data.len());
        let pieces: Vec<&[u8]> = ends
            .iter()
            .scan(0, |last, &c| {
                let piece = &data[*last..c];
                *last = c;
                Some(piece)
            })
            .collect();
        let mut ours = EventStreamDecoder::new();
        let mut theirs = reference::Decoder::default();
        let a: Vec<StreamFrame> = pieces.iter().flat_map(|p| ours.push(p)).collect();
        let b: Vec<StreamFrame> = pieces.iter().flat_map(|p| theirs.push(p)).collect();
        assert_eq!(a, b, "cuts {cuts:?}, data {data:02x?}");
        assert_eq!(
            ours.finish(),
            theirs.finish(),
            "cuts {cuts:?}, data {data:02x?}"
        );
    }

    /// The whole fixture stream, exceptions and an error, every byte of it flipped in turn,
    /// pushed whole and cut in two or three places: the same frames, errors and end-of-stream
    /// verdict as the reference decoder.
    #[test]
    fn same_frames_as_the_reference_decoder() {
        let mut data = fixture_stream();
        data.extend(exception_frame(
            "modelStreamErrorException",
            r#"{"Message":"boom","originalStatusCode":500}"#,
        ));
        data.extend(encode(
            &[
                (":message-type", Hv::Str("error")),
                (":error-code", Hv::Str("InternalFailure")),
            ],
            b"",
        ));
        let n = data.len();
        same_as_reference(&data, &[]);
        for i in 0..n {
            for flip in [0x01u8, 0xa0] {
                let mut bad = data.clone();
                bad[i] ^= flip;
                same_as_reference(&bad, &[i]);
                same_as_reference(&bad, &[i / 2, (i + n) / 2]);
            }
            let mut cut = data.clone();
            cut.remove(i);
            same_as_reference(&cut, &[(i * 7) % n]);
        }
    }

    /// Chunk and exception payloads with every byte removed or replaced by one that matters to
    /// JSON or base64, in frames with valid CRCs: the same frames and errors as the reference.
    #[test]
    fn same_payload_reading_as_the_reference_decoder() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(FIXTURE[2]);
        let chunk = format!(r#"{{"bytes":"{b64}","p":"ab\u00e9"}}"#);
        let exception = r#"{"message":"slow \"down\"","Message":"x"}"#;
        let frame = |payload: &[u8], exception: bool| {
            if exception {
                encode(
                    &[
                        (":exception-type", Hv::Str("throttlingException")),
                        (":message-type", Hv::Str("exception")),
                    ],
                    payload,
                )
            } else {
                encode(
                    &[
                        (":event-type", Hv::Str("chunk")),
                        (":message-type", Hv::Str("event")),
                    ],
                    payload,
                )
            }
        };
        for (payload, is_exception) in [(chunk.as_bytes(), false), (exception.as_bytes(), true)] {
            for i in 0..payload.len() {
                let mut variants = vec![{
                    let mut cut = payload.to_vec();
                    cut.remove(i);
                    cut
                }];
                for b in *b"\"\\{}[],:0n=+/A\xff" {
                    let mut changed = payload.to_vec();
                    changed[i] = b;
                    variants.push(changed);
                }
                for v in variants {
                    let mut data = frame(&v, is_exception);
                    data.extend(chunk_frame(FIXTURE[2], ""));
                    same_as_reference(&data, &[]);
                }
            }
        }
    }

    #[test]
    fn malformed_header_block() {
        // Header type 42 does not exist; CRCs are valid so the frame decoder must reject it.
        let mut hb = vec![1u8, b'x', 42];
        hb.extend_from_slice(&[0, 0]);
        let total = 12 + hb.len() + 4;
        let mut f = prelude(total as u32, hb.len() as u32);
        f.extend_from_slice(&hb);
        let c = crc32fast::hash(&f);
        f.extend_from_slice(&c.to_be_bytes());
        assert_malformed_then_stopped(&f, 0);
    }
}
