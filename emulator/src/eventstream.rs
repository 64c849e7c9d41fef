//! Byte-exact encoder for the AWS event-stream framing used by
//! `InvokeModelWithResponseStream` (see
//! `docs/bedrock-contract.md#invoke-with-response-stream`, `#event-stream`, `#stream-events`).
//!
//! Message layout, all integers big-endian:
//! `total_len u32 | headers_len u32 | prelude_crc u32 | headers | payload | message_crc u32`
//! where `prelude_crc = CRC32(bytes[0..8])` and
//! `message_crc = CRC32(bytes[0..total_len-4])` (IEEE CRC32).
//! Headers are `name_len u8 | name | type u8 | value`; this encoder writes
//! type 7 (string: `u16 len | utf-8`) only, which is all Bedrock uses.
//!
//! Chunk events carry `:event-type=chunk`, `:content-type=application/json`,
//! `:message-type=event` and the payload
//! `{"bytes":"<base64 of one Anthropic stream event>","p":"<padding>"}`.
//! Exceptions carry `:exception-type`, `:content-type`, `:message-type=exception`
//! and `{"message":"..."}`.

use base64::Engine as _;

/// Header value type 7: UTF-8 string.
const TYPE_STRING: u8 = 7;

/// Letters Bedrock-like padding is drawn from (`"p"` field).
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Encode one event-stream message with string headers.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut hbuf = Vec::with_capacity(96);
    for (name, value) in headers {
        let name = truncate(name.as_bytes(), u8::MAX as usize);
        let value = truncate(value.as_bytes(), u16::MAX as usize);
        hbuf.push(name.len() as u8);
        hbuf.extend_from_slice(name);
        hbuf.push(TYPE_STRING);
        hbuf.extend_from_slice(&(value.len() as u16).to_be_bytes());
        hbuf.extend_from_slice(value);
    }
    let total = 12 + hbuf.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(hbuf.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out[0..8]);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&hbuf);
    out.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}

fn truncate(b: &[u8], max: usize) -> &[u8] {
    &b[..b.len().min(max)]
}

/// Padding of `len` letters (cycled).
pub fn padding(len: usize) -> String {
    PADDING.chars().cycle().take(len).collect()
}

/// The JSON payload of a chunk event: base64 of `event_json` plus padding.
pub fn chunk_payload(event_json: &[u8], pad_len: usize) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(event_json);
    serde_json::to_vec(&serde_json::json!({ "bytes": b64, "p": padding(pad_len) }))
        .unwrap_or_default()
}

/// A complete `chunk` event frame wrapping one Anthropic stream event.
pub fn chunk_frame(event_json: &[u8], pad_len: usize) -> Vec<u8> {
    encode_message(
        &[
            (":event-type", "chunk"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        &chunk_payload(event_json, pad_len),
    )
}

/// A modelled exception frame, e.g. `modelStreamErrorException`.
pub fn exception_frame(exception_type: &str, message: &str) -> Vec<u8> {
    let payload =
        serde_json::to_vec(&serde_json::json!({ "message": message })).unwrap_or_default();
    encode_message(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        &payload,
    )
}

/// Flip bits of the trailing message CRC (for the `fault-badcrc` knob).
pub fn corrupt_message_crc(frame: &mut [u8]) {
    if let Some(last) = frame.last_mut() {
        *last ^= 0xA5;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::{read_message_from, DecodedFrame, MessageFrameDecoder};
    use aws_smithy_types::event_stream::{HeaderValue, Message};
    use bytes::Buf;

    fn decode(frame: &[u8]) -> Message {
        let mut buf = frame;
        let msg = read_message_from(&mut buf).expect("independent decoder accepts frame");
        assert_eq!(buf.remaining(), 0, "frame fully consumed");
        msg
    }

    fn header<'m>(m: &'m Message, name: &str) -> &'m str {
        let h = m
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .unwrap_or_else(|| panic!("no header {name}"));
        match h.value() {
            HeaderValue::String(s) => s.as_str(),
            other => panic!("header {name} not a string: {other:?}"),
        }
    }

    #[test]
    fn chunk_frame_decodes_independently() {
        let event = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"return a + b"}}"#;
        for pad in [0usize, 1, 7, 31, 100] {
            let frame = chunk_frame(event, pad);
            let m = decode(&frame);
            assert_eq!(header(&m, ":event-type"), "chunk");
            assert_eq!(header(&m, ":content-type"), "application/json");
            assert_eq!(header(&m, ":message-type"), "event");
            let payload: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload["bytes"].as_str().unwrap())
                .unwrap();
            assert_eq!(bytes, event);
            assert_eq!(payload["p"].as_str().unwrap().len(), pad);
        }
    }

    #[test]
    fn prelude_and_crcs_are_exact() {
        let frame = encode_message(&[(":message-type", "event")], b"{}");
        let total = u32::from_be_bytes(frame[0..4].try_into().unwrap()) as usize;
        let hlen = u32::from_be_bytes(frame[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, frame.len());
        assert_eq!(hlen, 1 + 13 + 1 + 2 + 5);
        assert_eq!(
            u32::from_be_bytes(frame[8..12].try_into().unwrap()),
            crc32fast::hash(&frame[0..8])
        );
        assert_eq!(
            u32::from_be_bytes(frame[total - 4..].try_into().unwrap()),
            crc32fast::hash(&frame[..total - 4])
        );
        // Known-answer: botocore's empty message vector (no headers, no payload).
        assert_eq!(
            encode_message(&[], b""),
            vec![0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]
        );
    }

    #[test]
    fn exception_frame_decodes() {
        let frame = exception_frame("modelStreamErrorException", "boom \"quoted\"");
        let m = decode(&frame);
        assert_eq!(header(&m, ":message-type"), "exception");
        assert_eq!(header(&m, ":exception-type"), "modelStreamErrorException");
        assert_eq!(header(&m, ":content-type"), "application/json");
        let v: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        assert_eq!(v["message"], "boom \"quoted\"");
    }

    #[test]
    fn stream_of_frames_split_at_every_offset() {
        let mut all = Vec::new();
        for i in 0..3 {
            all.extend(chunk_frame(format!("{{\"n\":{i}}}").as_bytes(), i * 5));
        }
        for cut in 1..all.len() {
            let mut dec = MessageFrameDecoder::new();
            let mut got = 0;
            let mut buf = bytes::BytesMut::new();
            for part in [&all[..cut], &all[cut..]] {
                buf.extend_from_slice(part);
                while let DecodedFrame::Complete(_) = dec.decode_frame(&mut buf).unwrap() {
                    got += 1;
                }
            }
            assert_eq!(got, 3, "cut at {cut}");
        }
    }

    #[test]
    fn corrupted_crc_is_rejected() {
        let mut frame = chunk_frame(b"{}", 3);
        corrupt_message_crc(&mut frame);
        let mut buf = &frame[..];
        assert!(read_message_from(&mut buf).is_err());
    }

    #[test]
    fn padding_lengths() {
        assert_eq!(padding(0), "");
        assert_eq!(padding(3), "abc");
        assert_eq!(padding(64).len(), 64);
    }
}
