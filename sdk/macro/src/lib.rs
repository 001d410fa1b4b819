//! `#[shoal_sdk::http]`: turns an ordinary function into the exported
//! `wasi:http/incoming-handler` of a component.

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

/// Marks the function that handles every request of the component.
///
/// ```ignore
/// #[shoal_sdk::http]
/// fn handle(req: shoal_sdk::Request) -> shoal_sdk::Result<shoal_sdk::Response> {
///     Ok(shoal_sdk::text("hello"))
/// }
/// ```
///
/// The function may be `async`; it takes one [`Request`] and returns
/// anything that converts into a response (`Result<Response>`,
/// `Response`, ...).
#[proc_macro_attribute]
pub fn http(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

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
    let function: ItemFn = syn::parse(item)?;
    let signature = &function.sig;
    if signature.inputs.len() != 1 || matches!(signature.inputs.first(), Some(FnArg::Receiver(_))) {
        return Err(syn::Error::new_spanned(
            &signature.inputs,
            "an HTTP handler takes exactly one argument, the request: `fn handle(req: Request) -> Result<Response>`",
        ));
    }
    if !signature.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &signature.generics,
            "an HTTP handler cannot be generic",
        ));
    }
    if let ReturnType::Default = signature.output {
        return Err(syn::Error::new_spanned(
            signature,
            "an HTTP handler returns a response: add `-> shoal_sdk::Result<shoal_sdk::Response>`",
        ));
    }
    let name = &signature.ident;
    // Spanned on the user's return type, so a type that is not a response
    // is reported there, not in generated code.
    let output_span = signature.output.span();
    let call = if signature.asyncness.is_some() {
        quote_spanned! {output_span=> ::shoal_sdk::__private::into_response(::shoal_sdk::__private::block_on(#name(request))) }
    } else {
        quote_spanned! {output_span=> ::shoal_sdk::__private::into_response(#name(request)) }
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
                ::shoal_sdk::__private::serve(incoming, out, |request| #call);
            }
        }

        ::shoal_sdk::__private::wasip2::http::proxy::export!(
            __ShoalHttpHandler with_types_in ::shoal_sdk::__private::wasip2
        );
    })
}
