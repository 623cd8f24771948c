//! Security scheme extractors: they only carry the raw credential; the
//! application verifies it in the generated operation.

use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaSecurityScheme, Registry},
};

/// Describes an `apiKey` security scheme carried in a header.
pub trait ApiKeySpec: Send + Sync + 'static {
    const SCHEME: &'static str;
    const HEADER: &'static str;
    const DESCRIPTION: Option<&'static str>;
}

/// The raw credential of an `apiKey` header scheme; verified by the
/// application's `Auth` implementation in the generated operation.
pub struct ApiKey<S>(pub Option<String>, PhantomData<S>);

impl<'a, S: ApiKeySpec> ApiExtractor<'a> for ApiKey<S> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            S::SCHEME,
            MetaSecurityScheme {
                ty: "apiKey",
                description: S::DESCRIPTION,
                name: Some(S::HEADER),
                key_in: Some("header"),
                scheme: None,
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![S::SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        Ok(Self(request.header(S::HEADER).map(str::to_owned), PhantomData))
    }
}
