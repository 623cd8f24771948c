//! Response headers a handler sets through its response variant's fields:
//! each value written as the schema's type reads on the wire.

use poem::{
    Response,
    http::{HeaderName, HeaderValue},
};

use crate::Problem;

/// A value a response header can carry.
pub trait HeaderText {
    fn header_text(&self) -> String;
}

macro_rules! display_text {
    ($($t:ty),*) => {$(
        impl HeaderText for $t {
            fn header_text(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
display_text!(String, i32, i64, f32, f64, bool, uuid::Uuid, chrono::NaiveDate);

/// A header declared with JSON `content`: compact JSON, with non-ASCII
/// characters escaped (`\u00e9`), since a header value is visible ASCII.
pub struct JsonHeader<'a, T>(pub &'a T);

impl<T: serde::Serialize> HeaderText for JsonHeader<'_, T> {
    fn header_text(&self) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiJson);
        match self.0.serialize(&mut ser) {
            Ok(()) => String::from_utf8(out).unwrap_or_default(),
            // A line break is no header value: `set_header` answers the
            // 500 of a value the protocol cannot carry.
            Err(_) => "\n".to_owned(),
        }
    }
}

/// serde_json's compact output, every non-ASCII character as `\uXXXX`
/// (UTF-16 units, as JSON spells them).
struct AsciiJson;

impl serde_json::ser::Formatter for AsciiJson {
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() {
                w.write_all(&fragment.as_bytes()[i..i + 1])?;
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `format: date-time` is RFC 3339, as in bodies.
impl HeaderText for chrono::DateTime<chrono::Utc> {
    fn header_text(&self) -> String {
        self.to_rfc3339()
    }
}

/// A list is sent comma-separated (`simple` style, the only one OpenAPI
/// allows for headers).
impl<T: HeaderText> HeaderText for Vec<T> {
    fn header_text(&self) -> String {
        self.iter().map(HeaderText::header_text).collect::<Vec<_>>().join(",")
    }
}

/// Sets header `name` to `value`; a value HTTP cannot carry (a control
/// character) is the handler's bug, reported as the problem to answer.
/// (Names were checked at generation.)
pub fn set_header(response: &mut Response, name: &'static str, value: &impl HeaderText) -> Result<(), Problem> {
    let invalid = || Problem::new(500).with_detail(format!("the handler set an invalid value for header {name}"));
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
    let value = HeaderValue::from_str(&value.header_text()).map_err(|_| invalid())?;
    response.headers_mut().insert(header, value);
    Ok(())
}

/// A response with fixed headers added, whatever it is (a deprecated
/// operation's `Deprecation` and `Sunset`, written by the generator); the
/// document shows the inner response's meta.
pub struct WithHeaders<T>(pub T, pub &'static [(&'static str, &'static str)]);

impl<T: poem_openapi::ApiResponse> poem_openapi::ApiResponse for WithHeaders<T> {
    fn meta() -> poem_openapi::registry::MetaResponses {
        T::meta()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry);
    }
}

impl<T: poem::IntoResponse> poem::IntoResponse for WithHeaders<T> {
    fn into_response(self) -> poem::Response {
        let mut resp = self.0.into_response();
        for (name, value) in self.1 {
            resp.headers_mut()
                .insert(poem::http::HeaderName::from_static(name), poem::http::HeaderValue::from_static(value));
        }
        resp
    }
}
