//! A JSON value read and dropped with the checks a `serde_json::Value` gets, for typed readers
//! that must refuse exactly what the `Value` parse they replace refused (src/auth/claims.rs,
//! src/gitlab/typed_body.rs). serde's `IgnoredAny` is not that: serde_json skips such values
//! without checking nesting depth, number range or escapes, so `1e400` or over-deep nesting
//! would pass.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Any JSON value, parsed as `serde_json::Value` parses it, then dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skip;

impl Skip {
    /// A JSON object only (anything else is the deserializer's type error), then dropped.
    pub fn object<'de, D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_map(SkipVisitor)
    }
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}
