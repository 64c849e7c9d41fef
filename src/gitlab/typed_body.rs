//! Typed, borrowed reading of request bodies: the fast path in front of [`super::validate`].
//!
//! Why: parsing a body into a `serde_json::Value` tree and validating it by hand (with a `loc`
//! path per field) is most of `plan`'s work for a small request (docs/performance.md). A fast
//! path deserializes the body straight into serde derive structs that borrow its strings, checks
//! the same rules, and hands the endpoint the same request the `Value` path would.
//!
//! The contract of every fast path (`code_suggestions::v2_typed`, ...): it returns `None`
//! ("declines") unless the `Value` path accepts the body, and for a body it accepts it gives
//! exactly the request the `Value` path gives. Declining is always safe: the caller then runs the
//! `Value` path, which alone produces error bodies (pydantic-shaped, byte-exact). So a fast path
//! only has to recognise a subset of the valid bodies, and anything doubtful (an unknown field,
//! a duplicate key, a value pydantic would coerce, a limit exceeded) is declined.
//!
//! Plain `#[derive(Deserialize)]` is not faithful enough on its own, hence these helpers:
//! * serde_json lets a derived struct be read from a JSON **array** (its fields in order); the
//!   `Value` path wants an object. [`Object`] accepts only objects.
//! * unknown fields of a derived struct are skipped with `IgnoredAny`, which does not check what
//!   the `Value` parse checks: numbers out of `f64` range (`1e400`) and nesting deeper than
//!   serde_json's recursion limit are errors there but pass `IgnoredAny`. So fast-path structs
//!   use `#[serde(deny_unknown_fields)]` and name the fields they drop as [`Skip`], which walks a
//!   value through `deserialize_any` exactly as `Value` is built, storing nothing. Every string,
//!   key and number of an accepted body is thereby parsed as the `Value` path parses it (UTF-8,
//!   escapes, surrogates, number range, depth).
//! * serde borrows a bare `Cow<str>` field but never an `Option<Cow<str>>`: [`Text`] does.
//! * serde derive refuses duplicate fields, where the `Value` path keeps the last: a duplicate
//!   is an error here, hence a decline.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// Deserializes a whole body into `T`; `None` on any error (the caller falls back).
pub fn from_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// Whether `s` is within a pydantic `max_length` of `max` characters (the test
/// `validate::Validator::string` makes).
pub fn fits(s: &str, max: usize) -> bool {
    s.len() <= max || s.chars().count() <= max
}

/// `s` without leading and trailing whitespace, still borrowed when it was.
pub fn trimmed(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    }
}

/// A JSON string, borrowed from the body unless it held an escape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// `Option<Text>` → `Option<Cow<str>>`.
pub fn text(t: Option<Text<'_>>) -> Option<Cow<'_, str>> {
    t.map(|t| t.0)
}

/// A `T` read only from a JSON object (never from an array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

pub use crate::json_skip::Skip;

/// Any JSON object (pydantic's nested model with nothing read from it), then dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipObject;

impl<'de> Deserialize<'de> for SkipObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Skip::object(d).map(|Skip| SkipObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair<'a> {
        #[serde(borrow)]
        a: Option<Text<'a>>,
        #[serde(default, rename = "b")]
        _b: Skip,
    }

    fn pair(json: &str) -> Option<Option<Cow<'_, str>>> {
        from_body::<Object<Pair>>(json.as_bytes()).map(|p| text(p.0.a))
    }

    #[test]
    fn objects_only() {
        assert_eq!(pair(r#"{"a":"x"}"#), Some(Some(Cow::Borrowed("x"))));
        assert_eq!(pair(r#"{}"#), Some(None));
        assert_eq!(pair(r#"{"a":null}"#), Some(None));
        // a derived struct alone would take these as its fields in order
        assert_eq!(pair(r#"["x", 1]"#), None);
        assert_eq!(pair(r#"["x"]"#), None);
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let p = pair(r#"{"a":"plain"}"#).flatten();
        assert!(matches!(p, Some(Cow::Borrowed("plain"))));
        let p = pair(r#"{"a":"line\nbreak"}"#).flatten();
        assert!(matches!(p.as_ref(), Some(Cow::Owned(s)) if s == "line\nbreak"));
        assert_eq!(pair(r#"{"a":5}"#), None);
    }

    #[test]
    fn unknown_and_duplicate_fields_decline() {
        assert_eq!(pair(r#"{"a":"x","c":1}"#), None);
        assert_eq!(pair(r#"{"a":"x","a":"y"}"#), None);
        assert_eq!(pair(r#"{"b":1,"b":2}"#), None);
    }

    /// What `Skip` accepts is exactly what `serde_json::Value` accepts.
    #[test]
    fn skip_checks_what_value_checks() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let ok_deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let cases = [
            "1",
            "-0",
            "1.5e300",
            "1e400",
            "-1e400",
            &"9".repeat(400),
            "18446744073709551616",
            "true",
            "null",
            r#""\ud800""#,
            r#""\ud83d\ude00""#,
            r#""\u00e9""#,
            r#""\x""#,
            "[1,{\"k\":[null]}]",
            "{\"k\":1,\"k\":2}",
            "{\"k\":1,}",
            "[1,]",
            &deep,
            &ok_deep,
            "nul",
            "01",
        ];
        for c in cases {
            let body = format!("{{\"b\":{c}}}");
            let value_ok = serde_json::from_str::<serde_json::Value>(&body).is_ok();
            let skip_ok = pair(&body).is_some();
            assert_eq!(skip_ok, value_ok, "{c}");
        }
        // invalid UTF-8 inside a skipped string
        let body = b"{\"b\":\"\xff\"}";
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
        assert!(from_body::<Object<Pair>>(body).is_none());
        // IgnoredAny, by contrast, lets out-of-range numbers and deep nesting through
        assert!(serde_json::from_str::<serde::de::IgnoredAny>("1e400").is_ok());
        assert!(serde_json::from_str::<serde::de::IgnoredAny>(&deep).is_ok());
    }

    #[test]
    fn skip_object_wants_an_object() {
        for (json, ok) in [
            ("{}", true),
            ("{\"a\":[1]}", true),
            ("[]", false),
            ("null", false),
        ] {
            assert_eq!(
                serde_json::from_str::<SkipObject>(json).is_ok(),
                ok,
                "{json}"
            );
        }
    }

    #[test]
    fn helpers() {
        assert!(fits("ééé", 3) && fits("abc", 3) && !fits("abcd", 3));
        assert!(matches!(trimmed(Cow::Borrowed(" a ")), Cow::Borrowed("a")));
        assert_eq!(trimmed(Cow::Owned("\ta\n".into())), "a");
        assert_eq!(trimmed(Cow::Owned("a".into())), "a");
    }
}
