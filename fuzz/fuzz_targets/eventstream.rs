//! The event-stream decoder (`src/bedrock/eventstream.rs`) under arbitrary chunk splits.
//!
//! Input: `control(1) ncuts(1) cuts(2 × ncuts, big-endian) body`.
//! * `control` bit 0 set: `body` is a script of records `kind(1) len(2) data(len)` that the
//!   harness encodes as valid frames: 0 chunk event (data = Anthropic event JSON),
//!   1 exception (`type\npayload`), 2 error (`code\nmessage`), 3 non-chunk event (data = event
//!   type), 4 raw bytes, 5 chunk with a raw payload, 6 raw header block (first byte = its
//!   length) + payload, 7 only a `:message-type` (data).
//! * otherwise `body` is the raw stream; with bit 1 the harness rewrites every prelude and
//!   message CRC first (so mutations of lengths, headers and payloads get past the checksums).
//!
//! Properties:
//! * the frames (and the end-of-stream verdict of `finish`) do not depend on how the input was
//!   split: whole, at the fuzzed cut points, and byte by byte give the same result;
//! * after `Malformed` nothing more comes out and `finish` reports nothing; the decoder never
//!   holds more than one frame's bytes;
//! * a script of chunk and non-chunk events decodes to exactly `parse_event` of each chunk's
//!   JSON, in order (the first unparsable one ends the stream as `Malformed`).

#![no_main]

use duo_bedrock_filter::bedrock::eventstream::{EventStreamDecoder, StreamFrame, MAX_FRAME_LEN};
use duo_bedrock_filter::bedrock::stream::parse_event;
use duo_bedrock_filter_fuzz::{bit, chunk_frame, encode_frame, number, raw_frame, text, Hv};
use libfuzzer_sys::fuzz_target;

/// Decodes `data` pushed in the pieces given by `cuts` (sorted, clamped); returns every frame
/// and what `finish` said.
fn decode(data: &[u8], cuts: &[usize]) -> (Vec<StreamFrame>, Option<StreamFrame>) {
    let mut d = EventStreamDecoder::new();
    let mut out = Vec::new();
    let mut last = 0;
    let mut stopped = false;
    for &c in cuts.iter().chain(std::iter::once(&data.len())) {
        let c = c.clamp(last, data.len());
        let frames = d.push(&data[last..c]);
        if stopped {
            assert!(frames.is_empty(), "output after Malformed");
        }
        for (i, fr) in frames.iter().enumerate() {
            if matches!(fr, StreamFrame::Malformed(_)) {
                assert_eq!(i, frames.len() - 1, "frames after Malformed");
                stopped = true;
            }
        }
        out.extend(frames);
        assert!(d.buffered() < MAX_FRAME_LEN, "more than one frame held");
        last = c;
    }
    let end = d.finish();
    if stopped {
        assert_eq!(end, None);
    }
    assert!(d.push(b"\0\0\0\x10").is_empty(), "output after finish");
    (out, end)
}

/// Rewrites the CRCs of every frame the declared lengths delimit.
fn fix_crcs(b: &mut [u8]) {
    let mut pos = 0usize;
    while pos + 12 <= b.len() {
        let pc = crc32fast::hash(&b[pos..pos + 8]);
        b[pos + 8..pos + 12].copy_from_slice(&pc.to_be_bytes());
        let total = number(b, pos, 4) as usize;
        if total < 16 || total > b.len() - pos {
            break;
        }
        let end = pos + total;
        let mc = crc32fast::hash(&b[pos..end - 4]);
        b[end - 4..end].copy_from_slice(&mc.to_be_bytes());
        pos = end;
    }
}

/// Encodes a script; also returns the expected frames when the script holds only chunk and
/// non-chunk events (`None` otherwise). `Malformed` is expected as `Malformed("")`.
fn script(body: &[u8]) -> (Vec<u8>, Option<Vec<StreamFrame>>) {
    let mut out = Vec::new();
    let mut expected = Some(Vec::new());
    let mut ended = false;
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        let len = (number(tail, 0, 2) as usize).min(tail.len().saturating_sub(2));
        let data = tail.get(2..2 + len).unwrap_or(&[]);
        rest = tail.get(2 + len..).unwrap_or(&[]);
        let s = text(data);
        let (a, b) = s.split_once('\n').unwrap_or((&s, ""));
        match kind % 8 {
            0 => {
                out.extend(chunk_frame(data, "abcdefgh"));
                if let Some(e) = expected.as_mut().filter(|_| !ended) {
                    match parse_event(data) {
                        Ok(ev) => e.push(StreamFrame::Event(ev)),
                        Err(_) => {
                            e.push(StreamFrame::Malformed(String::new()));
                            ended = true;
                        }
                    }
                }
            }
            1 => {
                out.extend(encode_frame(
                    &[
                        (":exception-type", Hv::Str(a)),
                        (":content-type", Hv::Str("application/json")),
                        (":message-type", Hv::Str("exception")),
                    ],
                    b.as_bytes(),
                ));
                expected = None;
            }
            2 => {
                out.extend(encode_frame(
                    &[
                        (":message-type", Hv::Str("error")),
                        (":error-code", Hv::Str(a)),
                        (":error-message", Hv::Str(b)),
                    ],
                    b"",
                ));
                expected = None;
            }
            3 => {
                out.extend(encode_frame(
                    &[
                        (":message-type", Hv::Str("event")),
                        (":event-type", Hv::Str(&s)),
                        ("n", Hv::I32(-1)),
                    ],
                    b"{}",
                ));
                if s == "chunk" {
                    expected = None;
                }
            }
            4 => {
                out.extend_from_slice(data);
                expected = None;
            }
            5 => {
                out.extend(encode_frame(
                    &[
                        (":event-type", Hv::Str("chunk")),
                        (":message-type", Hv::Str("event")),
                    ],
                    data,
                ));
                expected = None;
            }
            6 => {
                let (headers, payload) = match data.split_first() {
                    Some((&n, r)) => r.split_at(usize::from(n).min(r.len())),
                    None => (&[][..], &[][..]),
                };
                out.extend(raw_frame(headers, payload));
                expected = None;
            }
            _ => {
                out.extend(encode_frame(&[(":message-type", Hv::Str(&s))], b""));
                expected = None;
            }
        }
    }
    (out, expected)
}

fn same_shape(a: &[StreamFrame], b: &[StreamFrame]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (StreamFrame::Malformed(_), StreamFrame::Malformed(_)) => true,
            _ => x == y,
        })
}

fuzz_target!(|data: &[u8]| {
    let control = data.first().copied().unwrap_or(0);
    let ncuts = usize::from(data.get(1).copied().unwrap_or(0) % 16);
    let cuts_end = (2 + 2 * ncuts).min(data.len());
    let body = data.get(cuts_end..).unwrap_or(&[]);
    let (stream, expected) = if bit(&[control], 0) {
        script(body)
    } else {
        let mut b = body.to_vec();
        if bit(&[control], 1) {
            fix_crcs(&mut b);
        }
        (b, None)
    };
    let mut cuts: Vec<usize> = (0..ncuts)
        .map(|i| number(data, 2 + 2 * i, 2) as usize % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = decode(&stream, &[]);
    let split = decode(&stream, &cuts);
    assert_eq!(whole, split, "cuts {cuts:?}");
    if stream.len() <= 4096 {
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(whole, decode(&stream, &every), "byte by byte");
    }
    if let Some(e) = expected {
        assert!(
            same_shape(&whole.0, &e),
            "decoded {:?}\nexpected {e:?}",
            whole.0
        );
        if !matches!(e.last(), Some(StreamFrame::Malformed(_))) {
            assert_eq!(whole.1, None);
        }
    }
});
