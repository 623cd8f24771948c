//! Parameter extractors. None of them fails on bad input: the generated
//! operation collects all problems and answers one 400 naming every field.

use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaParamIn, MetaSchemaRef, Registry},
};
use serde_json::{Map, Value};

use crate::field_errors::{FieldErrors, Loc, Seg};
use crate::{Model, validate_value};

pub trait ParamSet: Send + Sync + 'static {
    const REQUIRED: &'static [bool];
    fn schema(index: usize) -> MetaSchemaRef;
    fn register(_registry: &mut Registry) {}
}

macro_rules! raw_param {
    ($name:ident, $in:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name<P, const I: usize>(pub Vec<String>, PhantomData<P>);

        impl<'a, P: ParamSet, const I: usize> ApiExtractor<'a> for $name<P, I> {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
            const PARAM_IS_REQUIRED: bool = P::REQUIRED[I];
            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                P::register(registry);
            }

            fn param_in() -> Option<MetaParamIn> {
                Some($in)
            }

            fn param_schema_ref() -> Option<MetaSchemaRef> {
                Some(P::schema(I))
            }

            async fn from_request(
                request: &'a Request,
                _body: &mut RequestBody,
                opts: ExtractParamOptions<()>,
            ) -> poem::Result<Self> {
                Ok(Self(raw_values($in, request, opts.name), PhantomData))
            }
        }
    };
}

raw_param!(Query, MetaParamIn::Query, "Raw values of one query parameter.");

/// A `style: deepObject` query parameter: `name[key]=value` pairs, as
/// `key, value, key, value…` for [`Coerce::Deep`].
pub struct DeepQuery<P, const I: usize>(pub Vec<String>, PhantomData<P>);

impl<'a, P: ParamSet, const I: usize> ApiExtractor<'a> for DeepQuery<P, I> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    const PARAM_IS_REQUIRED: bool = P::REQUIRED[I];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        P::register(registry);
    }

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Query)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(P::schema(I))
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let mut pairs = Vec::new();
        for (k, v) in form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()) {
            let key = k.strip_prefix(opts.name).and_then(|r| r.strip_prefix('[')).and_then(|r| r.strip_suffix(']'));
            if let Some(key) = key {
                pairs.push(key.to_owned());
                pairs.push(v.into_owned());
            }
        }
        Ok(Self(pairs, PhantomData))
    }
}
raw_param!(Header, MetaParamIn::Header, "Raw values of one header parameter.");
// Named `Path` on purpose: poem-openapi recognises path parameters by the
// type's name and maps them to its internal `paramN` route segments.
raw_param!(Path, MetaParamIn::Path, "Raw value of one path parameter.");
raw_param!(Cookie, MetaParamIn::Cookie, "Raw value of one cookie parameter.");

/// Every raw value of parameter `name` in `location`; also how security
/// schemes read an API key, so both agree on what a request carries.
pub(crate) fn raw_values(location: MetaParamIn, request: &Request, name: &str) -> Vec<String> {
    match location {
        MetaParamIn::Path => request.raw_path_param(name).map(str::to_owned).into_iter().collect(),
        MetaParamIn::Header => {
            request.headers().get_all(name).iter().filter_map(|v| v.to_str().ok().map(str::to_owned)).collect()
        }
        // Every `Cookie` header, `name=value; …` pairs, this name's values.
        MetaParamIn::Cookie => request
            .headers()
            .get_all(poem::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.trim_matches('"').to_owned())
            .collect(),
        _ => form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .collect(),
    }
}

/// How one raw parameter string becomes JSON before the structural pass.
#[derive(Debug, Clone, Copy)]
pub enum Coerce {
    String,
    Integer,
    Number,
    Bool,
    /// Repeated values (`?tag=a&tag=b`) or a comma list, each item coerced.
    Array(&'static Coerce),
    /// One value split at a separator (`spaceDelimited`: `a b`,
    /// `pipeDelimited`: `a|b`), each item coerced.
    Split(&'static Coerce, char),
    /// `oneOf: [scalar, array]` (dropshot's "one or many"): one value is
    /// the scalar, repeated values (`?id=a&id=b`) the array. A single value
    /// is never split at commas, so the scalar can hold one.
    OneOrMany(&'static Coerce, &'static Coerce),
    /// `style: deepObject`: the raw values are `key, value` pairs of
    /// `name[key]=value`; each property coerced as listed (repeated keys
    /// are an array), others kept as strings for a closed object to report.
    Deep(&'static [(&'static str, Coerce)]),
    /// A parameter declared with JSON `content`: the raw value is a JSON
    /// document, parsed once and then checked like a body.
    Json,
    /// A `style: label` path value: `.5`, an array `.3.4.5` (explode) or
    /// `.3,4,5`; the scalar or [`Coerce::Array`] inside says which.
    Label(&'static Coerce, bool),
    /// A `style: matrix` path value named by the parameter's wire name:
    /// `;id=5`, an array `;id=3;id=4` (explode) or `;id=3,4`.
    Matrix(&'static str, &'static Coerce, bool),
}

/// Builds the JSON object the structural pass checks for a parameter set.
/// A JSON parameter that does not parse, or a label or matrix value
/// without its prefix, stays a string here (for the structural pass to
/// report); [`validate_params`] names the problem.
pub fn params_object(values: &[(&'static str, Vec<String>, Coerce)]) -> Value {
    build_object(values, &mut |_, s, _| Value::from(s))
}

/// Parses and validates an operation's parameters into `T`. A JSON
/// parameter that is not JSON, or a label or matrix value not in its
/// style, is reported as such, by its name, and a placeholder stands in
/// for it so the other parameters are still checked and it is not also
/// reported as missing or mistyped.
pub fn validate_params<T: Model>(values: &[(&'static str, Vec<String>, Coerce)], errs: &mut FieldErrors) -> Option<T> {
    let value = build_object(values, &mut |name, _, e| {
        let root = Loc::root("", errs);
        errs.fail(&root.child(Seg::Key(name), errs), format_args!("{e}"));
        T::SHAPE.property_placeholder(name).unwrap_or(Value::Null)
    });
    validate_value(value, "", errs)
}

type Malformed<'a> = dyn FnMut(&'static str, &str, String) -> Value + 'a;

fn build_object(values: &[(&'static str, Vec<String>, Coerce)], malformed: &mut Malformed<'_>) -> Value {
    let mut map = Map::new();
    for (name, raw, coerce) in values {
        let value = match coerce {
            Coerce::Array(item) => {
                let parts: Vec<&str> =
                    if raw.len() == 1 { raw[0].split(',').collect() } else { raw.iter().map(String::as_str).collect() };
                if raw.is_empty() {
                    continue;
                }
                Value::Array(parts.into_iter().map(|s| coerce_one(s, item)).collect())
            }
            Coerce::Deep(fields) => {
                if raw.is_empty() {
                    continue;
                }
                let mut obj = Map::new();
                for pair in raw.chunks_exact(2) {
                    let (k, v) = (&pair[0], &pair[1]);
                    match fields.iter().find(|(n, _)| n == k) {
                        Some((_, Coerce::Array(item))) => {
                            let slot = obj.entry(k.clone()).or_insert_with(|| Value::Array(Vec::new()));
                            if let Value::Array(items) = slot {
                                items.push(coerce_one(v, item));
                            }
                        }
                        Some((_, c)) => {
                            obj.entry(k.clone()).or_insert_with(|| coerce_one(v, c));
                        }
                        None => {
                            obj.entry(k.clone()).or_insert_with(|| Value::from(v.as_str()));
                        }
                    }
                }
                Value::Object(obj)
            }
            Coerce::OneOrMany(one, item) => match raw.as_slice() {
                [] => continue,
                [s] => coerce_one(s, one),
                many => Value::Array(many.iter().map(|s| coerce_one(s, item)).collect()),
            },
            Coerce::Json => match raw.first() {
                Some(s) => {
                    serde_json::from_str(s).unwrap_or_else(|e| malformed(name, s, format!("is not valid JSON: {e}")))
                }
                None => continue,
            },
            Coerce::Label(inner, explode) => match raw.first() {
                Some(s) => match s.strip_prefix('.') {
                    Some(rest) => styled(rest, inner, if *explode { '.' } else { ',' }),
                    None => malformed(name, s, "must be in label style (`.value`)".to_owned()),
                },
                None => continue,
            },
            Coerce::Matrix(wire, inner, explode) => match raw.first() {
                Some(s) => match matrix(s, wire, inner, *explode) {
                    Some(v) => v,
                    None => malformed(name, s, format!("must be in matrix style (`;{wire}=value`)")),
                },
                None => continue,
            },
            Coerce::Split(item, sep) => match raw.first() {
                Some(s) => Value::Array(s.split(*sep).map(|p| coerce_one(p, item)).collect()),
                None => continue,
            },
            _ => match raw.first() {
                Some(s) => coerce_one(s, coerce),
                None => continue,
            },
        };
        map.insert((*name).to_owned(), value);
    }
    Value::Object(map)
}

fn coerce_one(s: &str, coerce: &Coerce) -> Value {
    // A string that does not parse stays a string, so the structural pass
    // reports "must be an integer" under the parameter's name.
    match coerce {
        Coerce::Integer => s.parse::<i64>().map_or_else(|_| Value::from(s), Value::from),
        Coerce::Number => {
            s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or_else(|| Value::from(s), Value::Number)
        }
        Coerce::Bool => match s {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::from(s),
        },
        Coerce::String
        | Coerce::Array(_)
        | Coerce::Split(..)
        | Coerce::OneOrMany(..)
        | Coerce::Deep(_)
        | Coerce::Json
        | Coerce::Label(..)
        | Coerce::Matrix(..) => Value::from(s),
    }
}

/// A label or matrix value without its prefix: a scalar whole, an array
/// split at `sep`, each item coerced.
fn styled(s: &str, inner: &Coerce, sep: char) -> Value {
    match inner {
        Coerce::Array(c) => Value::Array(s.split(sep).map(|p| coerce_one(p, c)).collect()),
        c => coerce_one(s, c),
    }
}

/// `;name=value` (`;name` for an empty scalar, as RFC 6570 writes it); an
/// exploded array repeats `;name=` before every item. `None` when a name
/// is missing or another's. One pass over `s`.
fn matrix(s: &str, wire: &str, inner: &Coerce, explode: bool) -> Option<Value> {
    let rest = s.strip_prefix(';')?.strip_prefix(wire)?;
    let rest = match rest.strip_prefix('=') {
        Some(r) => r,
        None if rest.is_empty() && !matches!(inner, Coerce::Array(_)) => rest,
        None => return None,
    };
    let Coerce::Array(item) = inner else { return Some(coerce_one(rest, inner)) };
    if !explode {
        return Some(styled(rest, inner, ','));
    }
    let mut items = Vec::new();
    for (i, part) in rest.split(';').enumerate() {
        // The first item's name was stripped above.
        let value = if i == 0 { part } else { part.strip_prefix(wire)?.strip_prefix('=')? };
        items.push(coerce_one(value, item));
    }
    Some(Value::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_many_reads_one_value_as_the_scalar() {
        let one = params_object(&[("id", vec!["a,b".into()], Coerce::OneOrMany(&Coerce::String, &Coerce::String))]);
        assert_eq!(one, serde_json::json!({"id": "a,b"}));
        let many = params_object(&[(
            "n",
            vec!["1".into(), "2".into()],
            Coerce::OneOrMany(&Coerce::Integer, &Coerce::Integer),
        )]);
        assert_eq!(many, serde_json::json!({"n": [1, 2]}));
        let none = params_object(&[("n", vec![], Coerce::OneOrMany(&Coerce::Integer, &Coerce::Integer))]);
        assert_eq!(none, serde_json::json!({}));
    }

    #[test]
    fn json_parameters_are_documents() {
        let v = params_object(&[
            ("f", vec![r#"{"a":[1,"x"]}"#.into(), "ignored".into()], Coerce::Json),
            ("g", vec!["{".into()], Coerce::Json),
            ("h", vec![], Coerce::Json),
        ]);
        // A malformed one stays text for the structural pass to refuse;
        // validate_params reports it as not JSON instead.
        assert_eq!(v, serde_json::json!({"f": {"a": [1, "x"]}, "g": "{"}));
    }

    #[test]
    fn label_and_matrix_values_lose_their_prefix() {
        const INTS: Coerce = Coerce::Array(&Coerce::Integer);
        let v = params_object(&[
            ("a", vec![".5".into()], Coerce::Label(&Coerce::Integer, false)),
            ("b", vec![".3.4.5".into()], Coerce::Label(&INTS, true)),
            ("c", vec![".3,x".into()], Coerce::Label(&INTS, false)),
            ("d", vec![";d=1.5".into()], Coerce::Matrix("d", &Coerce::Number, false)),
            ("e", vec![";e=3;e=4".into()], Coerce::Matrix("e", &INTS, true)),
            ("f", vec![";f=3,4".into()], Coerce::Matrix("f", &INTS, false)),
            ("g", vec![";g".into()], Coerce::Matrix("g", &Coerce::String, false)),
            ("h", vec![".a.b".into()], Coerce::Label(&Coerce::String, true)),
        ]);
        let want = serde_json::json!({
            "a": 5, "b": [3, 4, 5], "c": [3, "x"], "d": 1.5, "e": [3, 4], "f": [3, 4], "g": "", "h": "a.b"
        });
        assert_eq!(v, want);
        for (raw, c) in [
            ("5", Coerce::Label(&Coerce::Integer, false)),
            ("id=5", Coerce::Matrix("id", &Coerce::Integer, false)),
            (";idx=5", Coerce::Matrix("id", &Coerce::Integer, false)),
            (";other=5", Coerce::Matrix("id", &Coerce::Integer, false)),
            (";id=3;other=4", Coerce::Matrix("id", &INTS, true)),
            (";id", Coerce::Matrix("id", &INTS, true)),
        ] {
            // Left as the raw string, for validate_params to name.
            assert_eq!(params_object(&[("id", vec![raw.into()], c)]), serde_json::json!({"id": raw}), "{raw}");
        }
    }
}
