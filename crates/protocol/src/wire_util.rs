//! Serde helpers for the two places where JSON's shape and Rust's differ.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::ids::{ConversationId, Seq};

/// `{"<conversation>": seq, …}`. JSON object keys are strings; serde's internally tagged
/// enums buffer them as strings, which a plain `u64` key refuses, so parse them here.
pub(crate) fn cursors<'de, D>(de: D) -> Result<BTreeMap<ConversationId, Seq>, D::Error>
where
    D: Deserializer<'de>,
{
    struct Cursors;
    impl<'de> Visitor<'de> for Cursors {
        type Value = BTreeMap<ConversationId, Seq>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object mapping conversation ids to seq numbers")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                let id = key.parse::<u64>().map_err(|_| {
                    de::Error::custom(format_args!(
                        "cursor key {:?} is not a conversation id",
                        key.chars().take(24).collect::<String>()
                    ))
                })?;
                out.insert(ConversationId(id), map.next_value::<Seq>()?);
            }
            Ok(out)
        }
    }
    de.deserialize_map(Cursors)
}

/// A request's `ref`: a string, or a number taken as its decimal text.
pub(crate) fn reference<'de, D>(de: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    struct RefVisitor;
    impl Visitor<'_> for RefVisitor {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a number")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    de.deserialize_any(RefVisitor)
}
