//! `error_codes.rs`: the `ErrorCode` enum of the spec's `x-error-codes`
//! registry, with each code's number, status and message.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{doc_attrs, ident, lit};
use crate::codegen::ir::Api;

pub(super) fn error_codes_rs(api: &Api) -> TokenStream {
    let variants = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        let doc =
            doc_attrs(&[Some(&format!("{} — HTTP {}: {}", c.code, c.status, c.message)), c.description.as_deref()]);
        quote!(#doc #v,)
    });
    let all = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        quote!(Self::#v)
    });
    let code_arms = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        let code = Literal::i64_unsuffixed(c.code);
        quote!(Self::#v => #code,)
    });
    let status_arms = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        let s = Literal::u16_unsuffixed(c.status);
        quote!(Self::#v => #s,)
    });
    let msg_arms = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        let m = lit(&c.message);
        quote!(Self::#v => #m,)
    });
    let fault_arms = api.error_codes.iter().filter_map(|c| {
        let f = ident(c.fault?);
        let v = ident(&c.name);
        Some(quote!(crate::rt::Fault::#f => ::std::option::Option::Some(Self::#v),))
    });
    quote! {
        //! The error-code registry declared in the spec's `x-error-codes`.

        /// Every error code the service answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { #(#variants)* }

        impl ErrorCode {
            /// The whole registry, in the spec's order.
            pub const ALL: &'static [Self] = &[#(#all),*];

            /// The numeric code.
            pub const fn code(self) -> i64 { match self { #(#code_arms)* } }

            /// The HTTP status this code is answered with.
            pub const fn status(self) -> u16 { match self { #(#status_arms)* } }

            /// The registry's message (a problem's title).
            pub const fn message(self) -> &'static str { match self { #(#msg_arms)* } }

            /// This code as a problem: its status, code and message.
            pub fn problem(self) -> crate::rt::Problem {
                crate::rt::Problem::new(self.status()).with_code(self.code()).with_title(self.message())
            }

            /// The entry that answers a framework fault, if the registry has one.
            pub fn for_fault(fault: crate::rt::Fault) -> ::std::option::Option<Self> {
                match fault {
                    #(#fault_arms)*
                    // Unreachable when the registry answers every fault.
                    #[allow(unreachable_patterns)]
                    _ => ::std::option::Option::None,
                }
            }

            /// The entry with numeric code `code`.
            pub fn from_code(code: i64) -> ::std::option::Option<Self> {
                Self::ALL.iter().copied().find(|c| c.code() == code)
            }
        }
    }
}
