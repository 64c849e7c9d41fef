//! Header maps as the host hands them over, decoded without trusting them.
//!
//! proxy-wasm serializes a header map as `u32 count`, then `count` pairs of `u32` name and
//! value lengths, then each name and value followed by a NUL byte (all little-endian; the
//! proxy-wasm ABI spec, `proxy_get_header_map_pairs`). The SDK's own decoder (proxy-wasm 0.2.5
//! `hostcalls::utils::deserialize_map`) turns names and values into `String` with `unwrap()`:
//! one header value that is not UTF-8 panics, and a panic kills the VM for every request on
//! that worker. This decoder never panics: lengths are bounds-checked and bytes are decoded
//! the way GitLab's gateway decodes them (see [`latin1`]).

/// One header map: names and values as the gateway's framework sees them.
pub type HeaderPairs = Vec<(String, String)>;

/// Decodes a serialized header map. `None` when the bytes are not a well-formed map (the
/// caller then treats the map as empty: nothing the filter looks for is present).
pub fn decode_header_map(bytes: &[u8]) -> Option<HeaderPairs> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    if sizes_end > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    let mut p = sizes_end;
    for n in 0..count {
        let name_len = read_u32(bytes, 4 + n * 8)?;
        let value_len = read_u32(bytes, 8 + n * 8)?;
        let name = field(bytes, &mut p, name_len)?;
        let value = field(bytes, &mut p, value_len)?;
        pairs.push((latin1(name), latin1(value)));
    }
    Some(pairs)
}

/// `len` bytes at `*p` followed by their NUL terminator; advances `*p` past both.
fn field<'b>(bytes: &'b [u8], p: &mut usize, len: usize) -> Option<&'b [u8]> {
    let end = p.checked_add(len)?;
    let out = bytes.get(*p..end)?;
    if bytes.get(end) != Some(&0) {
        return None;
    }
    *p = end + 1;
    Some(out)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

/// Header bytes as text, one character per byte (ISO-8859-1), which is what the gateway's
/// framework does: Starlette decodes every header name and value as latin-1
/// (`starlette/datastructures.py`, `Headers.__getitem__`: `value.decode("latin-1")`), so a
/// byte outside ASCII never fails there either; it only makes the value differ from anything
/// the gateway compares it with (a JWT is then not base64url and gets 401, a binding header
/// does not match its claim). ASCII, all that GitLab sends, is unchanged.
pub fn latin1(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => s.to_string(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Serializes a header map for the host (the inverse of [`decode_header_map`] for the pairs
/// the filter itself builds). Names and values are the filter's own strings.
pub fn encode_header_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&len_u32(k.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(v.len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend_from_slice(k);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn round_trip_of_what_the_filter_writes() {
        let pairs = [(":status", "200"), ("content-type", "application/json")];
        let decoded = decode_header_map(&encode_header_map(&pairs)).unwrap();
        assert_eq!(
            decoded,
            vec![
                (":status".to_string(), "200".to_string()),
                ("content-type".to_string(), "application/json".to_string())
            ]
        );
        assert_eq!(decode_header_map(&[]).unwrap(), vec![]);
    }

    #[test]
    fn bytes_that_are_not_utf8_decode_as_latin1() {
        let bytes = raw(&[(b"x-probe", b"caf\xe9"), (b"user-agent", b"\xff\xfe")]);
        let decoded = decode_header_map(&bytes).unwrap();
        assert_eq!(decoded[0].1, "caf\u{e9}");
        assert_eq!(decoded[1].1, "\u{ff}\u{fe}");
        // Valid UTF-8 outside ASCII is still read byte by byte, as Starlette does.
        let decoded = decode_header_map(&raw(&[(b"x", "é".as_bytes())])).unwrap();
        assert_eq!(decoded[0].1, "\u{c3}\u{a9}");
        let decoded = decode_header_map(&raw(&[(b"n\x80me", b"v")])).unwrap();
        assert_eq!(decoded[0].0, "n\u{80}me");
    }

    #[test]
    fn malformed_maps_are_refused_not_panicked_on() {
        let good = raw(&[(b"a", b"b"), (b"cc", b"dd")]);
        for cut in 1..good.len() {
            assert_eq!(decode_header_map(&good[..cut]), None, "cut at {cut}");
        }
        // A count whose size table overflows or exceeds the buffer.
        assert_eq!(decode_header_map(&u32::MAX.to_le_bytes()), None);
        let mut huge = raw(&[(b"a", b"b")]);
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_header_map(&huge), None);
    }
}
