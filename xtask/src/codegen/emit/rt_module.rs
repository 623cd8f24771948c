//! `rt.rs`: the generated crate's runtime module. It re-exports the runtime
//! crate (`spec-first-runtime`), so generated code and the application keep
//! one path (`rt::…`), and adds what this contract decides: its error
//! envelope, the credential refusal and the framework faults' codes.
//!
//! The envelope's shape (`code`, `msg`, `data`, `timestamp`) is still this
//! generator's fixed error model; only its codes come from the spec.

use proc_macro2::TokenStream;
use quote::quote;

use super::{ident, lit};
use crate::codegen::ir::Api;
use crate::codegen::ir::registry::FRAMEWORK_CODES;

pub(super) fn rt_rs(api: &Api) -> TokenStream {
    // The registry must define every framework code under the fault's own
    // name (the IR refuses a spec that does not), so the map is by name.
    let arms = FRAMEWORK_CODES.iter().map(|name| {
        let v = ident(name);
        quote!(Fault::#v => Self::#v,)
    });
    let internal = api.error_codes.iter().find(|c| c.name == "Internal").map_or(500, |c| c.code);
    // What to send when a response cannot be serialized: a constant, so
    // that answering cannot fail as well.
    let unserializable = lit(&format!(r#"{{"code":{internal},"msg":"internal error"}}"#));
    quote! {
        //! The runtime (`spec_first_runtime`) plus what this contract
        //! decides: its error envelope and how the framework's faults map
        //! onto its `x-error-codes` registry.

        pub use ::spec_first_runtime::*;

        use ::poem::{Response, http::StatusCode};
        use ::serde_json::Value;

        use crate::error_codes::ErrorCode;

        impl ::std::convert::From<Fault> for ErrorCode {
            fn from(fault: Fault) -> Self {
                match fault { #(#arms)* }
            }
        }

        /// The registry's entry for the fault, with its status, in the
        /// contract's envelope.
        impl ErrorPolicy for ErrorCode {
            fn fault_response(fault: Fault, data: ::std::option::Option<Value>) -> Response {
                let code = ErrorCode::from(fault);
                let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                envelope_response(status, code, ::std::option::Option::None, data)
            }
        }

        /// Why the application refused a credential; `code`'s HTTP status
        /// decides the response (401 normally, 500 when the credential
        /// store cannot answer).
        #[derive(Debug, Clone)]
        pub struct AuthRejection {
            pub code: ErrorCode,
            pub msg: ::std::option::Option<::std::string::String>,
        }

        impl AuthRejection {
            pub fn new(code: ErrorCode) -> Self {
                Self { code, msg: ::std::option::Option::None }
            }
        }

        /// Implemented by the generated error-body models (the schema used
        /// by the framework's 400/401/500 answers), so generated code can
        /// build them.
        pub trait ErrorEnvelope: Sized {
            fn envelope(code: i64, msg: ::std::string::String, data: ::std::option::Option<Value>) -> Self;

            /// The registry's message for `code`.
            fn from_code(code: ErrorCode) -> Self {
                Self::envelope(code.code(), ::std::borrow::ToOwned::to_owned(code.message()), ::std::option::Option::None)
            }

            /// `code` with a specific message (e.g. which field conflicted).
            fn with_msg(code: ErrorCode, msg: impl ::std::convert::Into<::std::string::String>) -> Self {
                Self::envelope(code.code(), msg.into(), ::std::option::Option::None)
            }

            /// The 400 answer naming every failing field.
            fn validation(errs: &FieldErrors) -> Self {
                let code = ErrorCode::from(Fault::ValidationFailed);
                Self::envelope(code.code(), ::std::borrow::ToOwned::to_owned(code.message()), ::std::option::Option::Some(errs.to_data()))
            }
        }

        /// Implemented by every per-operation response enum that documents
        /// error statuses: builds the variant documented for `code`'s status.
        pub trait FromErrorCode: Sized {
            fn from_error(code: ErrorCode, msg: ::std::option::Option<::std::string::String>, data: ::std::option::Option<Value>) -> Self;
        }

        /// Serializes `body` as the response with `status`; a serialization
        /// failure (never expected for generated models) is still an
        /// envelope.
        pub fn json_response<T: ::serde::Serialize>(status: u16, body: &T) -> Response {
            try_json_response(status, body).unwrap_or_else(|_| {
                Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).content_type(JSON).body(#unserializable)
            })
        }

        /// The envelope used where no operation's typed response applies
        /// (unknown routes, wrong methods, panics).
        #[derive(Debug, ::serde::Serialize, ::serde::Deserialize)]
        pub struct Envelope {
            pub code: i64,
            pub msg: ::std::string::String,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub data: ::std::option::Option<Value>,
            pub timestamp: ::chrono::DateTime<::chrono::Utc>,
        }

        /// `code` in the envelope, answered with `status`.
        pub fn envelope_response(status: StatusCode, code: ErrorCode, msg: ::std::option::Option<::std::string::String>, data: ::std::option::Option<Value>) -> Response {
            let body = Envelope {
                code: code.code(),
                msg: msg.unwrap_or_else(|| ::std::borrow::ToOwned::to_owned(code.message())),
                data,
                timestamp: now(),
            };
            json_response(status.as_u16(), &body)
        }
    }
}
