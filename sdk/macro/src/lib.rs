//! `#[shoal_sdk::http]`: turns an ordinary function into the exported
//! `wasi:http/incoming-handler` of a component.
//!
//! Use it through `shoal-sdk`, which re-exports it and provides the types
//! the generated code names.

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, PatType, ReturnType, Signature};

/// Marks the function that handles every request of the component.
///
/// ```ignore
/// #[shoal_sdk::http]
/// fn handle(req: shoal_sdk::Request) -> shoal_sdk::Result<shoal_sdk::Response> {
///     Ok(shoal_sdk::text("hello"))
/// }
/// ```
///
/// The function may be `async`; it takes one `shoal_sdk::Request` and
/// returns anything that converts into a response (`Result<Response>`,
/// `Response`, `String`, ...). A component has one such function.
#[proc_macro_attribute]
pub fn http(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

const SHAPE: &str = "expected `fn handle(req: shoal_sdk::Request) -> shoal_sdk::Result<shoal_sdk::Response>` (or `async fn`)";

fn expand(
    attr: proc_macro2::TokenStream,
    item: TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            "`#[shoal_sdk::http]` takes no arguments",
        ));
    }
    let function: ItemFn = syn::parse(item).map_err(|error| {
        syn::Error::new(
            error.span(),
            format!("`#[shoal_sdk::http]` goes on a function: {SHAPE}"),
        )
    })?;
    let signature = &function.sig;
    let argument = request_argument(signature)?;
    let name = &signature.ident;
    // The generated code carries the user's spans: an argument that is not
    // a request is reported on the argument's type, a return type that is
    // not a response on the return type.
    let request = quote_spanned! {argument.ty.span()=> request};
    let output_span = signature.output.span();
    let call = if signature.asyncness.is_some() {
        quote_spanned! {output_span=> ::shoal_sdk::__private::run_async(#name(#request)) }
    } else {
        quote_spanned! {output_span=> ::shoal_sdk::__private::into_response(#name(#request)) }
    };
    Ok(quote! {
        #function

        #[doc(hidden)]
        struct __ShoalHttpHandler;

        impl ::shoal_sdk::__private::Guest for __ShoalHttpHandler {
            fn handle(
                incoming: ::shoal_sdk::__private::IncomingRequest,
                out: ::shoal_sdk::__private::ResponseOutparam,
            ) {
                ::shoal_sdk::__private::serve(incoming, out, |request: ::shoal_sdk::Request| #call);
            }
        }

        ::shoal_sdk::__private::wasip2::http::proxy::export!(
            __ShoalHttpHandler with_types_in ::shoal_sdk::__private::wasip2
        );
    })
}

/// The handler's one argument, once the signature is checked to be that of
/// a handler (see [`SHAPE`]).
fn request_argument(signature: &Signature) -> syn::Result<&PatType> {
    if let Some(unsafety) = &signature.unsafety {
        return Err(syn::Error::new_spanned(
            unsafety,
            "an HTTP handler cannot be `unsafe`",
        ));
    }
    if let Some(variadic) = &signature.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            format!("an HTTP handler takes exactly one argument, the request: {SHAPE}"),
        ));
    }
    if !signature.generics.params.is_empty() || signature.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &signature.generics,
            format!("an HTTP handler cannot be generic: {SHAPE}"),
        ));
    }
    let argument = match (signature.inputs.first(), signature.inputs.len()) {
        (Some(FnArg::Typed(argument)), 1) => argument,
        (Some(FnArg::Receiver(receiver)), _) => {
            return Err(syn::Error::new_spanned(
                receiver,
                format!("an HTTP handler is a free function, not a method: {SHAPE}"),
            ));
        }
        (None, _) => {
            // Point at the empty parentheses.
            return Err(syn::Error::new(
                signature.paren_token.span.join(),
                format!("an HTTP handler takes the request as its argument: {SHAPE}"),
            ));
        }
        _ => {
            return Err(syn::Error::new_spanned(
                &signature.inputs,
                format!("an HTTP handler takes exactly one argument, the request: {SHAPE}"),
            ));
        }
    };
    if let ReturnType::Default = signature.output {
        return Err(syn::Error::new_spanned(
            signature,
            "an HTTP handler returns a response: add `-> shoal_sdk::Result<shoal_sdk::Response>`",
        ));
    }
    Ok(argument)
}
