//! Value types with wire rules of their own, and the macro that gives a
//! generated model the contract's schema in the served document.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `format: password`: a string that never shows in `Debug` or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; call only to hash or verify it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl garde::rules::length::chars::HasChars for Password {
    fn num_chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl garde::rules::AsStr for Password {
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// `serde(with)` helper keeping absent (`None`) and `null` (`Some(None)`)
/// apart for optional nullable fields.
pub mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Implements poem-openapi's `Type` for a generated model from its schema
/// functions, so the emitted document carries exactly the contract's schema.
#[macro_export]
#[doc(hidden)]
macro_rules! __impl_type {
    ($ty:ty, $name:expr, $schema_ref:expr, $register:expr) => {
        impl ::poem_openapi::types::Type for $ty {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed($name)
            }

            fn schema_ref() -> ::poem_openapi::registry::MetaSchemaRef {
                $schema_ref
            }

            fn register(registry: &mut ::poem_openapi::registry::Registry) {
                let f: fn(&mut ::poem_openapi::registry::Registry) = $register;
                f(registry)
            }

            fn as_raw_value(&self) -> Option<&Self::RawValueType> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }
    };
}
