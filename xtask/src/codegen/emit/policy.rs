//! The error policy: the trait through which the application writes the
//! error bodies its spec documents, and the framework's use of it —
//! `fault` (a framework failure as a problem, with the registry's status
//! and code when there is a registry), `FromProblem` / `answer` (a problem
//! as an operation's documented response, else problem+json) and
//! `Fallback` (answers outside any operation).

use heck::ToSnakeCase;
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::doc_attrs;
use super::ident;
use crate::codegen::ir::Api;
use crate::codegen::ir::errors::{self, error_body_types, fallback_body};
use crate::codegen::ir::responses::Response;

/// The policy's method building error body type `t`.
pub(super) fn policy_method(t: &str) -> proc_macro2::Ident {
    format_ident!("{}", t.to_snake_case())
}

pub(super) fn policy(api: &Api) -> TokenStream {
    let methods = error_body_types(api).into_iter().map(|t| {
        let m = policy_method(&t);
        let ty = ident(&t);
        let uses: Vec<String> = api
            .operations
            .iter()
            .flat_map(|o| o.responses.iter().map(move |r| (o, r)))
            .filter(|(_, r)| r.is_error() && errors::named_body(r) == Some(t.as_str()))
            .map(|(o, r): (_, &Response)| format!("`{}` {}", o.id, r.status))
            .collect();
        let doc = doc_attrs(&[
            Some(&format!("The `{t}` body for `problem` (its status is the response's).")),
            Some(&format!("Documented for: {}.", uses.join(", "))),
        ]);
        quote!(#doc fn #m(problem: &rt::Problem) -> crate::models::#ty;)
    });
    let fault = fault_fn(api);
    let fallback_arms = errors::global_faults(api).into_iter().filter_map(|(_, status)| {
        let t = fallback_body(api, status)?;
        let m = policy_method(&t);
        let s = Literal::u16_unsuffixed(status);
        Some(quote!(#s => rt::json_response(problem.status, &P::#m(&problem)),))
    });
    quote! {
        /// How this application writes the error bodies its spec documents.
        /// The framework calls it for the failures it finds itself
        /// (validation, missing credentials, unreadable bodies, unknown
        /// routes, panics), and a handler's `Err(problem)` goes through it
        /// too; a status an operation does not document is answered as
        /// RFC 9457 `application/problem+json` instead.
        pub trait ErrorPolicy: ::std::marker::Send + ::std::marker::Sync + 'static {
            #(#methods)*
        }

        /// Implemented by every operation's response enum: a problem as the
        /// variant documented for its status, or the problem back when the
        /// operation documents none.
        pub trait FromProblem: ::std::marker::Sized {
            fn from_problem<P: ErrorPolicy>(problem: rt::Problem) -> ::std::result::Result<Self, rt::Problem>;
        }

        /// `problem` as `R`'s documented response, else as problem+json.
        pub fn answer<R: FromProblem, P: ErrorPolicy>(problem: rt::Problem) -> rt::Answer<R> {
            match R::from_problem::<P>(problem) {
                ::std::result::Result::Ok(r) => rt::Answer::Documented(r),
                ::std::result::Result::Err(p) => rt::Answer::Undocumented(p),
            }
        }

        #fault

        /// Answers where no operation does, over the error policy `P`: the
        /// error body the spec uses most for that status, else problem+json.
        pub struct Fallback<P>(::std::marker::PhantomData<fn() -> P>);

        impl<P: ErrorPolicy> rt::Fallback for Fallback<P> {
            fn problem(f: rt::Fault) -> rt::Problem {
                fault(f)
            }

            fn respond(problem: rt::Problem) -> ::poem::Response {
                match problem.status {
                    #(#fallback_arms)*
                    _ => problem.to_problem_json(),
                }
            }
        }
    }
}

fn fault_fn(api: &Api) -> TokenStream {
    if api.error_codes.is_empty() {
        return quote! {
            /// The problem the framework answers `fault` with (HTTP's status:
            /// the spec has no error registry).
            pub fn fault(fault: rt::Fault) -> rt::Problem {
                rt::Problem::from_fault(fault)
            }
        };
    }
    quote! {
        /// The problem the framework answers `fault` with: the registry's
        /// entry for it (status, code, message), else HTTP's status.
        pub fn fault(fault: rt::Fault) -> rt::Problem {
            match ErrorCode::for_fault(fault) {
                ::std::option::Option::Some(code) => rt::Problem { fault: ::std::option::Option::Some(fault), ..code.problem() },
                ::std::option::Option::None => rt::Problem::from_fault(fault),
            }
        }
    }
}
