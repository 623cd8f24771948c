//! Validation keywords garde has no rule for (`multipleOf`, exclusive
//! bounds on numbers, `uniqueItems`), as `custom` validators the generated
//! models name. Each takes the field as it is declared: a value, an
//! `Option` of one (absent passes), or an `Option<Option<…>>`.

use std::collections::HashSet;

/// A number field, or an optional one.
pub trait Numbers {
    fn each(&self, f: &mut dyn FnMut(f64) -> garde::Result) -> garde::Result;
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Numbers for $t {
            // Integers within ±2^53 are exact as f64, which covers every
            // bound a spec writes; the generator only uses these for
            // multipleOf and float bounds.
            #[allow(clippy::cast_precision_loss, clippy::cast_lossless)]
            fn each(&self, f: &mut dyn FnMut(f64) -> garde::Result) -> garde::Result {
                f(*self as f64)
            }
        }
    )*};
}
numbers!(i32, i64, f32, f64);

impl<T: Numbers> Numbers for Option<T> {
    fn each(&self, f: &mut dyn FnMut(f64) -> garde::Result) -> garde::Result {
        self.as_ref().map_or(Ok(()), |v| v.each(f))
    }
}

impl<T: Numbers> Numbers for Vec<T> {
    fn each(&self, f: &mut dyn FnMut(f64) -> garde::Result) -> garde::Result {
        self.iter().try_for_each(|v| v.each(f))
    }
}

/// `multipleOf: m`. For fractional values the quotient may be off by a
/// rounding error of the division: it counts as whole within 1e-9.
pub fn multiple_of<T: Numbers>(m: f64) -> impl FnOnce(&T, &()) -> garde::Result {
    move |value, _| {
        value.each(&mut |v| {
            let q = v / m;
            if (q - q.round()).abs() <= 1e-9 * q.abs().max(1.0) {
                Ok(())
            } else {
                Err(garde::Error::new(format!("must be a multiple of {m}")))
            }
        })
    }
}

/// `exclusiveMinimum` on a number: strictly greater than `bound`.
pub fn greater_than<T: Numbers>(bound: f64) -> impl FnOnce(&T, &()) -> garde::Result {
    move |value, _| {
        value.each(&mut |v| {
            if v > bound { Ok(()) } else { Err(garde::Error::new(format!("must be greater than {bound}"))) }
        })
    }
}

/// `exclusiveMaximum` on a number: strictly less than `bound`.
pub fn less_than<T: Numbers>(bound: f64) -> impl FnOnce(&T, &()) -> garde::Result {
    move |value, _| {
        value.each(&mut |v| {
            if v < bound { Ok(()) } else { Err(garde::Error::new(format!("must be less than {bound}"))) }
        })
    }
}

/// An array field, or an optional one.
pub trait Items {
    fn unique(&self) -> garde::Result;
}

impl<T: serde::Serialize> Items for Vec<T> {
    /// Compared as JSON text, so equal values are equal whatever their Rust
    /// type; one pass with a hash set keeps it linear.
    fn unique(&self) -> garde::Result {
        let mut seen = HashSet::with_capacity(self.len());
        for (i, item) in self.iter().enumerate() {
            let key = serde_json::to_string(item).map_err(|e| garde::Error::new(e.to_string()))?;
            if !seen.insert(key) {
                return Err(garde::Error::new(format!("items must be unique; item {i} repeats an earlier one")));
            }
        }
        Ok(())
    }
}

impl<T: Items> Items for Option<T> {
    fn unique(&self) -> garde::Result {
        self.as_ref().map_or(Ok(()), Items::unique)
    }
}

/// `uniqueItems: true`.
pub fn unique_items<T: Items>(value: &T, _: &()) -> garde::Result {
    value.unique()
}

/// A boolean field, or an optional one.
pub trait Bools {
    fn each(&self, f: &mut dyn FnMut(bool) -> garde::Result) -> garde::Result;
}

impl Bools for bool {
    fn each(&self, f: &mut dyn FnMut(bool) -> garde::Result) -> garde::Result {
        f(*self)
    }
}

impl<T: Bools> Bools for Option<T> {
    fn each(&self, f: &mut dyn FnMut(bool) -> garde::Result) -> garde::Result {
        self.as_ref().map_or(Ok(()), |v| v.each(f))
    }
}

impl<T: Bools> Bools for Vec<T> {
    fn each(&self, f: &mut dyn FnMut(bool) -> garde::Result) -> garde::Result {
        self.iter().try_for_each(|v| v.each(f))
    }
}

/// `enum` of booleans (`[true]`: a flag that must be set).
pub fn bool_in<T: Bools>(allowed: &'static [bool]) -> impl FnOnce(&T, &()) -> garde::Result {
    move |value, _| {
        value.each(&mut |v| {
            if allowed.contains(&v) { Ok(()) } else { Err(garde::Error::new(format!("must be one of {allowed:?}"))) }
        })
    }
}

/// A string field, or an optional one.
pub trait Texts {
    fn each(&self, f: &mut dyn FnMut(&str) -> garde::Result) -> garde::Result;
}

impl Texts for String {
    fn each(&self, f: &mut dyn FnMut(&str) -> garde::Result) -> garde::Result {
        f(self)
    }
}

impl<T: Texts> Texts for Option<T> {
    fn each(&self, f: &mut dyn FnMut(&str) -> garde::Result) -> garde::Result {
        self.as_ref().map_or(Ok(()), |v| v.each(f))
    }
}

impl<T: Texts> Texts for Vec<T> {
    fn each(&self, f: &mut dyn FnMut(&str) -> garde::Result) -> garde::Result {
        self.iter().try_for_each(|v| v.each(f))
    }
}

/// The string formats OpenAPI's registry defines and JSON Schema checks:
/// `uri`, `ipv4`, `ipv6`, `hostname` (RFC 1123) and `byte` (base64).
pub fn format<T: Texts>(format: &'static str) -> impl FnOnce(&T, &()) -> garde::Result {
    move |value, _| {
        value.each(&mut |s| {
            let ok = match format {
                "uri" => url::Url::parse(s).is_ok(),
                "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
                "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
                "hostname" => is_hostname(s),
                "byte" => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                }
                _ => true,
            };
            if ok { Ok(()) } else { Err(garde::Error::new(format!("not a valid {format}"))) }
        })
    }
}

/// RFC 1123: dot-separated labels of letters, digits and inner hyphens,
/// each at most 63 characters, 253 in all.
fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}
