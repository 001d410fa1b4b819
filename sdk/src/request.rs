//! The incoming request, read from the host part by part as the handler
//! asks for it.

use std::cell::OnceCell;
use std::fmt;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use wasip2::http::types::{IncomingRequest, Method as WasiMethod, Scheme};

use crate::body::Body;

/// An incoming HTTP request.
///
/// Its method, URI and headers come from the host the first time they are
/// asked for, so a handler pays only for what it reads: one that never
/// looks at the headers never copies them. The accessors are those of
/// [`http::Request`] (`method`, `uri`, `headers`, `extensions`, `into_body`,
/// ...), and it converts to and from one (`into_http`, `From`).
pub struct Request {
    /// The host's request, until its parts are read and its body is taken.
    incoming: Option<IncomingRequest>,
    method: OnceCell<Method>,
    uri: OnceCell<Uri>,
    headers: OnceCell<HeaderMap>,
    extensions: Extensions,
    /// The body once taken out of `incoming` (or given by `From`).
    body: Option<Body>,
}

impl Request {
    pub(crate) fn from_incoming(incoming: IncomingRequest) -> Request {
        Request {
            incoming: Some(incoming),
            method: OnceCell::new(),
            uri: OnceCell::new(),
            headers: OnceCell::new(),
            extensions: Extensions::new(),
            body: None,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.method
            .get_or_init(|| self.incoming.as_ref().map_or(Method::GET, read_method))
    }

    /// The URI, absolute: `http://host/path?query`, as the client asked.
    pub fn uri(&self) -> &Uri {
        self.uri
            .get_or_init(|| self.incoming.as_ref().map_or_else(Uri::default, read_uri))
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.headers.get_or_init(|| {
            self.incoming
                .as_ref()
                .map_or_else(HeaderMap::new, read_headers)
        })
    }

    /// The method, to change it (e.g. before handing the request on).
    pub fn method_mut(&mut self) -> &mut Method {
        self.method();
        self.method.get_mut().expect("the method was just read")
    }

    /// The URI, to change it.
    pub fn uri_mut(&mut self) -> &mut Uri {
        self.uri();
        self.uri.get_mut().expect("the URI was just read")
    }

    /// The headers, to change them.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers();
        self.headers.get_mut().expect("the headers were just read")
    }

    /// Values attached to the request, such as the path parameters a
    /// `Router` matched.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// [`Request::extensions`], to change them.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// The body, to read it while keeping the request.
    pub fn body_mut(&mut self) -> &mut Body {
        // The host's request goes into the body: read its parts first.
        self.read_parts();
        let incoming = self.incoming.take();
        self.body
            .get_or_insert_with(|| incoming.map_or_else(Body::empty, Body::of_request))
    }

    /// The body, giving up the rest of the request.
    pub fn into_body(mut self) -> Body {
        match (self.body.take(), self.incoming.take()) {
            (Some(body), _) => body,
            (None, Some(incoming)) => Body::of_request(incoming),
            (None, None) => Body::empty(),
        }
    }

    /// The head and the body.
    pub fn into_parts(mut self) -> (http::request::Parts, Body) {
        self.read_parts();
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = self.method.take().unwrap_or_default();
        parts.uri = self.uri.take().unwrap_or_default();
        parts.headers = self.headers.take().unwrap_or_default();
        parts.extensions = std::mem::take(&mut self.extensions);
        (parts, self.into_body())
    }

    /// The same request as an [`http::Request`].
    pub fn into_http(self) -> http::Request<Body> {
        let (parts, body) = self.into_parts();
        http::Request::from_parts(parts, body)
    }

    fn read_parts(&self) {
        self.method();
        self.uri();
        self.headers();
    }
}

impl From<http::Request<Body>> for Request {
    fn from(request: http::Request<Body>) -> Request {
        let (parts, body) = request.into_parts();
        Request {
            incoming: None,
            method: OnceCell::from(parts.method),
            uri: OnceCell::from(parts.uri),
            headers: OnceCell::from(parts.headers),
            extensions: parts.extensions,
            body: Some(body),
        }
    }
}

impl From<Request> for http::Request<Body> {
    fn from(request: Request) -> http::Request<Body> {
        request.into_http()
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", self.method())
            .field("uri", self.uri())
            .field("headers", self.headers())
            .finish_non_exhaustive()
    }
}

fn read_method(incoming: &IncomingRequest) -> Method {
    match incoming.method() {
        WasiMethod::Get => Method::GET,
        WasiMethod::Post => Method::POST,
        WasiMethod::Put => Method::PUT,
        WasiMethod::Delete => Method::DELETE,
        WasiMethod::Patch => Method::PATCH,
        WasiMethod::Head => Method::HEAD,
        WasiMethod::Options => Method::OPTIONS,
        WasiMethod::Connect => Method::CONNECT,
        WasiMethod::Trace => Method::TRACE,
        WasiMethod::Other(other) => Method::from_bytes(other.as_bytes()).unwrap_or(Method::GET),
    }
}

fn read_uri(incoming: &IncomingRequest) -> Uri {
    let scheme = match incoming.scheme() {
        Some(Scheme::Https) => "https".to_string(),
        Some(Scheme::Other(other)) => other,
        _ => "http".to_string(),
    };
    let path = incoming.path_with_query().unwrap_or_else(|| "/".into());
    let mut uri = Uri::builder()
        .scheme(scheme.as_str())
        .path_and_query(path.as_str());
    if let Some(authority) = incoming.authority() {
        uri = uri.authority(authority);
    }
    // The host parsed this target already; should it still not parse here,
    // the path alone is the best the handler can get.
    uri.build()
        .or_else(|_| path.parse())
        .unwrap_or_else(|error| {
            eprintln!("shoal-sdk: the request target {path:?} does not parse ({error}); using `/`");
            Uri::from_static("/")
        })
}

fn read_headers(incoming: &IncomingRequest) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in incoming.headers().entries() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}
