//! Typed, borrowed reading of the JSON inside Bedrock's event stream (the `chunk` payload, the
//! Anthropic events in it, exception payloads) without building a `serde_json::Value` tree.
//!
//! The stream readers keep exactly what parsing into a `Value` and walking it with `get`,
//! `as_str` and `as_u64` gave (docs/bedrock-contract.md#stream-events, docs/performance.md):
//! unknown members are skipped, a member of the wrong type counts as absent, a repeated key
//! keeps its last value (as a `Value` map does, and Python's `json.loads` behind GitLab's AI
//! Gateway), and the input is checked as strictly as a `Value` parse checks it. Derived
//! `Deserialize` structs reject a repeated key and a member of the wrong type, and
//! `serde::de::IgnoredAny` skips values without the checks `Value` makes (UTF-8 and surrogate
//! escapes in strings, number range, nesting depth). So every value is read through
//! `deserialize_any`, as `Value` is, straight into the field of the struct that wants it
//! ([`Members::slot`]): strings borrowed from the input (copied only when they hold escapes),
//! counts, nested objects; anything else is checked and dropped.
//!
//! One visitor serves every struct (they are reached through `dyn`), so serde_json's parser is
//! compiled into the module once for all of them: a visitor per struct (as derive makes) added
//! 22 KB to the module for the stream events alone, this adds about 3 KB.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A struct read from a JSON object, one member at a time.
pub trait Members<'de> {
    /// Where the value of member `key` goes. A repeated key is read again into the same slot:
    /// the last value wins.
    fn slot(&mut self, key: &str) -> Slot<'_, 'de>;
}

/// Where one JSON value goes.
pub enum Slot<'a, 'de> {
    /// `Value::as_str`: the string, or `None` for any other value.
    Str(&'a mut Option<Cow<'de, str>>),
    /// `Value::as_u64`, or 0 for any other value (a count).
    Count(&'a mut u64),
    /// An object, read afresh into a new struct; `None` for any other value.
    Object(&'a mut dyn Object<'de>),
    /// Checked and dropped.
    Skip,
}

/// An optional nested object: `Option<T>` for any [`Members`] struct `T`.
pub trait Object<'de> {
    /// Replaces the value with a new, empty struct and returns it to be read into.
    fn start(&mut self) -> &mut dyn Members<'de>;
    /// The value was not an object.
    fn clear(&mut self);
}

impl<'de, T: Members<'de> + Default> Object<'de> for Option<T> {
    fn start(&mut self) -> &mut dyn Members<'de> {
        self.insert(T::default())
    }

    fn clear(&mut self) {
        *self = None;
    }
}

/// Reads the JSON document `json` into a `T` if it is an object (`Ok(None)` for any other
/// JSON value), with the same errors as `serde_json::from_slice::<Value>`.
///
/// The input's UTF-8 is checked once as a whole and the document parsed as a `str`, which
/// skips serde_json's check of each string (several times dearer for the short strings of a
/// stream event). Input that is not UTF-8 is not a JSON document; the error is the one a
/// `Value` parse gives, which reports where.
pub fn read<'de, T: Members<'de> + Default>(json: &'de [u8]) -> serde_json::Result<Option<T>> {
    let Ok(text) = std::str::from_utf8(json) else {
        return Err(serde_json::from_slice::<serde_json::Value>(json)
            .err()
            .unwrap_or_else(|| serde::de::Error::custom("input is not UTF-8")));
    };
    let mut object = None;
    let mut de = serde_json::Deserializer::from_str(text);
    Seed(Slot::Object(&mut object)).deserialize(&mut de)?;
    de.end()?;
    Ok(object)
}

/// Reads one value into its slot.
struct Seed<'a, 'de>(Slot<'a, 'de>);

impl<'de> Seed<'_, 'de> {
    fn unsigned(self, n: u64) {
        match self.0 {
            Slot::Count(c) => *c = n,
            _ => self.mismatch(),
        }
    }

    /// The value is of another type than the slot wants.
    fn mismatch(self) {
        match self.0 {
            Slot::Str(s) => *s = None,
            Slot::Count(n) => *n = 0,
            Slot::Object(o) => o.clear(),
            Slot::Skip => {}
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.mismatch();
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        // serde_json hands non-negative integers to `visit_u64`; `Value` would take a
        // non-negative i64 as one too.
        match u64::try_from(n) {
            Ok(n) => self.unsigned(n),
            Err(_) => self.mismatch(),
        }
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.unsigned(n);
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.mismatch();
        Ok(())
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<(), E> {
        match self.0 {
            Slot::Str(slot) => *slot = Some(Cow::Borrowed(s)),
            _ => self.mismatch(),
        }
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        match self.0 {
            Slot::Str(slot) => *slot = Some(Cow::Owned(s.to_owned())),
            _ => self.mismatch(),
        }
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.mismatch();
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.mismatch();
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Seed(Slot::Skip))?.is_some() {}
        self.mismatch();
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Slot::Object(object) = self.0 else {
            while map.next_key_seed(Seed(Slot::Skip))?.is_some() {
                map.next_value_seed(Seed(Slot::Skip))?;
            }
            self.mismatch();
            return Ok(());
        };
        let members = object.start();
        let mut key = None;
        while map.next_key_seed(Seed(Slot::Str(&mut key)))?.is_some() {
            // JSON keys are strings; anything else could only come from another format.
            let name = key.take().unwrap_or_default();
            map.next_value_seed(Seed(members.slot(&name)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[derive(Debug, Default, PartialEq, Eq)]
    struct Pair<'a> {
        a: Option<Cow<'a, str>>,
        n: u64,
        inner: Option<Inner<'a>>,
    }

    #[derive(Debug, Default, PartialEq, Eq)]
    struct Inner<'a> {
        a: Option<Cow<'a, str>>,
        n: u64,
    }

    impl<'de> Members<'de> for Pair<'de> {
        fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
            match key {
                "a" => Slot::Str(&mut self.a),
                "n" => Slot::Count(&mut self.n),
                "inner" => Slot::Object(&mut self.inner),
                _ => Slot::Skip,
            }
        }
    }

    impl<'de> Members<'de> for Inner<'de> {
        fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
            match key {
                "a" => Slot::Str(&mut self.a),
                "n" => Slot::Count(&mut self.n),
                _ => Slot::Skip,
            }
        }
    }

    fn typed(s: &[u8]) -> Result<Option<Pair<'_>>, String> {
        read(s).map_err(|e| e.to_string())
    }

    /// What walking a `Value` gives for the same input.
    fn walk(s: &[u8]) -> Result<Option<Pair<'static>>, String> {
        let v: Value = serde_json::from_slice(s).map_err(|e| e.to_string())?;
        let a = |v: &Value| {
            v.get("a")
                .and_then(Value::as_str)
                .map(|s| s.to_owned().into())
        };
        let n = |v: &Value| v.get("n").and_then(Value::as_u64).unwrap_or(0);
        if !v.is_object() {
            return Ok(None);
        }
        Ok(Some(Pair {
            a: a(&v),
            n: n(&v),
            inner: v
                .get("inner")
                .filter(|i| i.is_object())
                .map(|i| Inner { a: a(i), n: n(i) }),
        }))
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
            assert_eq!(typed(s.as_bytes()), walk(s.as_bytes()), "{s}");
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
            assert!(typed(s.as_bytes()).is_err(), "{s}");
            assert_eq!(typed(s.as_bytes()), walk(s.as_bytes()), "{s}");
        }
        // Not UTF-8, in a string or outside.
        for bytes in [
            &b"{\"z\":\"\xff\"}"[..],
            b"{\"a\":\"\xc3\"}",
            b"{\xff:1}",
            b"\xef\xbb\xbf{}",
        ] {
            assert!(typed(bytes).is_err());
            assert_eq!(typed(bytes), walk(bytes));
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let Ok(Some(p)) = typed(br#"{"a":"plain"}"#) else {
            panic!("not an object")
        };
        assert!(matches!(p.a, Some(Cow::Borrowed("plain"))));
        let Ok(Some(p)) = typed(br#"{"a":"tab\t"}"#) else {
            panic!("not an object")
        };
        assert!(matches!(p.a, Some(Cow::Owned(ref o)) if o == "tab\t"));
    }
}
