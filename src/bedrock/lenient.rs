//! Typed, borrowed reading of the JSON inside Bedrock's event stream (the `chunk` payload, the
//! Anthropic events in it, exception payloads) without building a `serde_json::Value` tree.
//!
//! The stream readers keep exactly what parsing into a `Value` and walking it with `get`,
//! `as_str` and `as_u64` gave (docs/bedrock-contract.md#stream-events, docs/performance.md):
//! unknown members are skipped, a member of the wrong type counts as absent, a repeated key
//! keeps its last value (as a `Value` map does, and Python's `json.loads` behind GitLab's AI
//! Gateway), and the input is checked as strictly as a `Value` parse checks it. Derived
//! `Deserialize` structs fit none of the first three: they reject repeated keys and members of
//! the wrong type. And `serde::de::IgnoredAny` skips values without the checks `Value` makes
//! (UTF-8 and surrogate escapes in strings, number range, nesting depth). So every value is
//! read through `deserialize_any`, as `Value` is, into a [`Json`]: strings borrowed from the
//! input (copied only when they hold escapes), unsigned integers, objects read member by member
//! into a struct ([`Members`]), and nothing kept for anything else.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// `serde_json::from_slice`, with the input's UTF-8 checked once as a whole instead of string by
/// string (several times cheaper for the short strings of a stream event). The answers and
/// errors are the same: `from_str` is `from_slice` minus the UTF-8 checks, and input that is
/// not UTF-8 goes to `from_slice` to report where.
pub fn from_slice<'de, T: Deserialize<'de>>(json: &'de [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(json) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(json),
    }
}

/// A struct read from a JSON object, one member at a time.
pub trait Members<'de>: Default {
    /// Reads the value of member `key` with `map.next_value()` (overwriting an earlier value of
    /// a repeated key), or passes it to [`skip`]. Must consume exactly one value.
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

/// One JSON value as the stream readers see it; `T` is what an object is read into.
#[derive(Debug, PartialEq, Eq)]
pub enum Json<'de, T = Skipped> {
    /// A string (borrowed from the input unless it holds escapes).
    Str(Cow<'de, str>),
    /// A non-negative integer that fits `u64`: what `Value::as_u64` returns.
    U64(u64),
    Object(T),
    /// `null`, `true`/`false`, another number, an array (all checked, then dropped).
    Other,
}

impl<'de, T> Json<'de, T> {
    /// `Value::as_str`, owned by the caller.
    pub fn into_str(self) -> Option<Cow<'de, str>> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `Value::as_u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::U64(n) => Some(*n),
            _ => None,
        }
    }

    /// `Some` for a JSON object (`Value::as_object`).
    pub fn into_object(self) -> Option<T> {
        match self {
            Json::Object(t) => Some(t),
            _ => None,
        }
    }
}

/// The members of an object nobody reads: each is checked and dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Skipped;

impl<'de> Members<'de> for Skipped {
    fn member<A: MapAccess<'de>>(&mut self, _key: &str, map: &mut A) -> Result<(), A::Error> {
        skip(map)
    }
}

/// Reads and drops the value of the current member, checking it as a `Value` parse would.
pub fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<Json>().map(drop)
}

impl<'de, T: Members<'de>> Deserialize<'de> for Json<'de, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor(PhantomData))
    }
}

struct JsonVisitor<T>(PhantomData<T>);

impl<'de, T: Members<'de>> Visitor<'de> for JsonVisitor<T> {
    type Value = Json<'de, T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Other)
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        // serde_json hands non-negative integers to `visit_u64`; `Value` would take a
        // non-negative i64 as one too.
        Ok(u64::try_from(n).map_or(Json::Other, Json::U64))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Json::U64(n))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Json::Other)
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Other)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Json>()?.is_some() {}
        Ok(Json::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = T::default();
        while let Some(key) = map.next_key::<Json>()? {
            // JSON keys are strings; anything else could only come from another format.
            let key = key.into_str().unwrap_or_default();
            object.member(&key, &mut map)?;
        }
        Ok(Json::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[derive(Debug, Default, PartialEq, Eq)]
    struct Pair<'a> {
        a: Option<Cow<'a, str>>,
        n: Option<u64>,
        inner: Option<Box<Pair<'a>>>,
    }

    impl<'de> Members<'de> for Pair<'de> {
        fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
            match key {
                "a" => self.a = map.next_value::<Json>()?.into_str(),
                "n" => self.n = map.next_value::<Json>()?.as_u64(),
                "inner" => self.inner = map.next_value::<Json<Pair>>()?.into_object().map(Box::new),
                _ => skip(map)?,
            }
            Ok(())
        }
    }

    fn read(s: &str) -> Result<Json<'_, Pair<'_>>, String> {
        from_slice(s.as_bytes()).map_err(|e| e.to_string())
    }

    /// What walking a `Value` gives for the same input.
    fn walk(s: &str) -> Result<Option<Pair<'static>>, String> {
        let v: Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
        fn pair(v: &Value) -> Option<Pair<'static>> {
            v.as_object()?;
            Some(Pair {
                a: v.get("a")
                    .and_then(Value::as_str)
                    .map(|s| s.to_owned().into()),
                n: v.get("n").and_then(Value::as_u64),
                inner: v.get("inner").and_then(pair).map(Box::new),
            })
        }
        Ok(pair(&v))
    }

    #[test]
    fn same_as_walking_a_value() {
        for s in [
            r#"{"a":"x","n":7}"#,
            r#"{"a":"x\"y\u00e9\ud83d\ude00","n":0}"#,
            r#"{"a":null,"n":null}"#,
            r#"{"a":5,"n":"5"}"#,
            r#"{"n":-1}"#,
            r#"{"n":-0}"#,
            r#"{"n":1.0}"#,
            r#"{"n":1e3}"#,
            r#"{"n":18446744073709551615}"#,
            r#"{"n":18446744073709551616}"#,
            r#"{"a":"first","a":"last"}"#,
            r#"{"a":"first","a":1}"#,
            r#"{"inner":{"a":"x"},"inner":{"n":2}}"#,
            r#"{"inner":{"a":"x"},"inner":[]}"#,
            r#"{"inner":"x","z":[1,{"a":[]},null,true,false,"s"]}"#,
            r#"{"\u0061":"escaped key"}"#,
            "[]",
            "null",
            "\"s\"",
            "3",
            "{}",
            " { \"a\" : \"x\" } ",
        ] {
            let typed = read(s).map(Json::into_object);
            assert_eq!(typed, walk(s), "{s}");
        }
    }

    #[test]
    fn rejects_what_a_value_parse_rejects_with_the_same_error() {
        let deep = format!("{{\"z\":{}", "[".repeat(200));
        for s in [
            "",
            "{",
            "{\"a\":\"x\"} trailing",
            r#"{"z":"\ud800"}"#,
            r#"{"z":"\x"}"#,
            r#"{"z":1e999}"#,
            r#"{"z":[1,]}"#,
            r#"{"z":01}"#,
            "{\"z\":\"\u{1}\"}",
            deep.as_str(),
        ] {
            let typed = read(s).map(Json::into_object);
            assert!(typed.is_err(), "{s}");
            assert_eq!(typed, walk(s), "{s}");
        }
        // Invalid UTF-8 inside a skipped string.
        let bytes = b"{\"z\":\"\xff\"}";
        let typed = from_slice::<Json<Pair>>(bytes).map_err(|e| e.to_string());
        let value = serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string());
        assert!(typed.is_err());
        assert_eq!(typed.err(), value.err());
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let s = r#"{"a":"plain"}"#;
        let Ok(Json::Object(p)) = read(s) else {
            panic!("not an object")
        };
        assert!(matches!(p.a, Some(Cow::Borrowed("plain"))));
        let s = r#"{"a":"tab\t"}"#;
        let Ok(Json::Object(p)) = read(s) else {
            panic!("not an object")
        };
        assert!(matches!(p.a, Some(Cow::Owned(ref o)) if o == "tab\t"));
    }
}
