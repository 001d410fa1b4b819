//! The dashboard's page, script and style, embedded in the binary (from
//! `host/ui/`), and the HTML pages that refuse a browser. The page is the
//! only thing templated: `{{CSRF}}` becomes the session's CSRF token and
//! `{{NODE}}` this node's name. The script and style are sent with
//! `Cache-Control: no-cache` and an `ETag` of their sha256, so a browser
//! revalidates them and a new binary's are seen at once.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::admin::error::ApiError;
use crate::admin::reply::{AdminBody, body};

const PAGE: &str = include_str!("../../../ui/index.html");
const SCRIPT: &str = include_str!("../../../ui/app.js");
const STYLE: &str = include_str!("../../../ui/app.css");

/// An embedded file and its `ETag`.
struct Asset {
    text: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(text: &'static str, content_type: &'static str) -> Asset {
        Asset {
            text,
            content_type,
            etag: format!("\"{}\"", hex::encode(Sha256::digest(text.as_bytes()))),
        }
    }
}

static SCRIPT_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(SCRIPT, "text/javascript; charset=utf-8"));
static STYLE_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(STYLE, "text/css; charset=utf-8"));

/// `GET /ui/app.js`.
pub(super) fn script<B>(request: &Request<B>) -> Response<AdminBody> {
    serve(request, &SCRIPT_ASSET)
}

/// `GET /ui/app.css`.
pub(super) fn style<B>(request: &Request<B>) -> Response<AdminBody> {
    serve(request, &STYLE_ASSET)
}

fn serve<B>(request: &Request<B>, asset: &Asset) -> Response<AdminBody> {
    let fresh = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == asset.etag);
    let mut response = if fresh {
        body(StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        body(StatusCode::OK, Bytes::from_static(asset.text.as_bytes()))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// `GET /ui/`: the page, with the session's CSRF token and this node's
/// name in its meta tags.
pub(super) fn page(node: &str, csrf: &str) -> Response<AdminBody> {
    let text = PAGE
        .replace("{{CSRF}}", &escape(csrf))
        .replace("{{NODE}}", &escape(node));
    html(StatusCode::OK, text)
}

/// A page that tells a browser why it was refused, and what to do.
pub(super) fn refused(error: &ApiError) -> Response<AdminBody> {
    let title = error.status.canonical_reason().unwrap_or("Refused");
    let text = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Shoal: {title}</title><link rel=\"stylesheet\" href=\"/ui/app.css\"></head>\
         <body><main><h1>{title}</h1><p>{}</p></main></body></html>\n",
        escape(&error.message)
    );
    html(error.status, text)
}

fn html(status: StatusCode, text: String) -> Response<AdminBody> {
    let mut response = body(status, Bytes::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// `text` safe inside HTML text and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_the_token_and_the_escaped_node_name() {
        assert!(PAGE.contains("{{CSRF}}") && PAGE.contains("{{NODE}}"));
        let text = PAGE
            .replace("{{CSRF}}", &escape("c0ffee"))
            .replace("{{NODE}}", &escape("n\"1<"));
        assert!(text.contains("content=\"c0ffee\""), "{text}");
        assert!(text.contains("n&quot;1&lt;"), "{text}");
    }

    #[test]
    fn an_asset_is_not_sent_again_to_a_browser_that_has_it() {
        let etag = SCRIPT_ASSET.etag.clone();
        let ask = |tag: &str| {
            let request = Request::builder()
                .header(header::IF_NONE_MATCH, tag)
                .body(())
                .unwrap();
            script(&request).status()
        };
        assert_eq!(ask(&etag), StatusCode::NOT_MODIFIED);
        assert_eq!(ask(&format!("\"x\", {etag}")), StatusCode::NOT_MODIFIED);
        assert_eq!(ask("\"other\""), StatusCode::OK);
    }
}
