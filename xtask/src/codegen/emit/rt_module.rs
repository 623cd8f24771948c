//! `rt.rs`: the generated crate's runtime module. It re-exports the runtime
//! crate (`spec-first-runtime`), so generated code and the application keep
//! one path (`rt::…`), and adds the one helper whose failure answer must
//! not fail itself.

use proc_macro2::TokenStream;
use quote::quote;

pub(super) fn rt_rs() -> TokenStream {
    quote! {
        //! The runtime (`spec_first_runtime`), re-exported under one path.

        pub use ::spec_first_runtime::*;

        /// Serializes `body` as the JSON response with `status`; a
        /// serialization failure (never expected for generated models) is
        /// answered as a problem+json 500, which cannot fail.
        pub fn json_response<T: ::serde::Serialize>(status: u16, body: &T) -> ::poem::Response {
            try_json_response(status, body).unwrap_or_else(|_| Problem::from_fault(Fault::Internal).to_problem_json())
        }

        /// [`json_response`] with another JSON media type.
        pub fn json_response_as<T: ::serde::Serialize>(status: u16, body: &T, content_type: &'static str) -> ::poem::Response {
            try_json_response_as(status, body, content_type).unwrap_or_else(|_| Problem::from_fault(Fault::Internal).to_problem_json())
        }
    }
}
