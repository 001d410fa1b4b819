//! A small router: method and path patterns (`/users/:id`, `/files/*rest`)
//! to handlers, with 404 and 405 answers.

use std::collections::HashMap;

use http::{HeaderValue, Method, StatusCode, header};

use crate::query::Params;
use crate::request::Request;
use crate::response::{IntoResponse, Response, text};

type Handler = Box<dyn Fn(Request) -> Response>;

enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

struct Route {
    method: Method,
    segments: Vec<Segment>,
    handler: Handler,
}

/// Dispatches requests by method and path.
///
/// ```
/// use shoal_sdk::{Body, Request, RequestExt, Result, Router, StatusCode};
///
/// fn user(req: Request) -> Result<String> {
///     Ok(format!("user {}\n", req.param("id").unwrap_or_default()))
/// }
///
/// let router = Router::new()
///     .get("/users/:id", user)
///     .post("/users", |_req| (StatusCode::CREATED, "created\n"));
///
/// let get = |path: &str| {
///     let request = shoal_sdk::http_types::Request::get(path).body(Body::empty()).unwrap();
///     Request::from(request)
/// };
/// assert_eq!(router.handle(get("/users/7")).status(), 200);
/// assert_eq!(router.handle(get("/users")).status(), 405); // Allow: POST
/// assert_eq!(router.handle(get("/nope")).status(), 404);
/// ```
///
/// Route handlers are plain functions; build the router in the handler
/// (`Router::new()...handle(req)`): it costs a few allocations per request.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// A router with no routes.
    pub fn new() -> Router {
        Router::default()
    }

    /// Routes `method` requests for `pattern` to `handler`. A segment
    /// `:name` matches any one segment; a last segment `*name` matches the
    /// rest of the path.
    pub fn route<R: IntoResponse>(
        mut self,
        method: Method,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Router {
        let segments = split(pattern)
            .map(|s| match s.strip_prefix(':') {
                Some(name) => Segment::Param(name.to_string()),
                None => match s.strip_prefix('*') {
                    Some(name) => Segment::Rest(name.to_string()),
                    None => Segment::Literal(s.to_string()),
                },
            })
            .collect();
        self.routes.push(Route {
            method,
            segments,
            handler: Box::new(move |request| handler(request).into_response()),
        });
        self
    }

    /// Routes GET (and HEAD) requests.
    pub fn get<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Router {
        self.route(Method::GET, pattern, handler)
    }

    /// Routes POST requests.
    pub fn post<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Router {
        self.route(Method::POST, pattern, handler)
    }

    /// Routes PUT requests.
    pub fn put<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Router {
        self.route(Method::PUT, pattern, handler)
    }

    /// Routes DELETE requests.
    pub fn delete<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Router {
        self.route(Method::DELETE, pattern, handler)
    }

    /// Answers `request` with the first matching route; 405 (with `Allow`)
    /// if the path matches only for other methods; else 404.
    pub fn handle(&self, mut request: Request) -> Response {
        let path = request.uri().path().to_string();
        let mut allowed: Vec<&Method> = Vec::new();
        for route in &self.routes {
            let Some(params) = matches(&route.segments, &path) else {
                continue;
            };
            let method_ok = route.method == request.method()
                || (route.method == Method::GET && request.method() == Method::HEAD);
            if !method_ok {
                if !allowed.contains(&&route.method) {
                    allowed.push(&route.method);
                }
                continue;
            }
            request.extensions_mut().insert(Params(params));
            return (route.handler)(request);
        }
        if allowed.is_empty() {
            let mut response = text(format!("no route for {path}\n"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
        let mut allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
        if allow.contains(&"GET") {
            allow.push("HEAD");
        }
        let mut response = text(format!("{} is not allowed on {path}\n", request.method()));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        response
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches(segments: &[Segment], path: &str) -> Option<HashMap<String, String>> {
    let parts: Vec<&str> = split(path).collect();
    let mut params = HashMap::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Rest(name) => {
                params.insert(
                    name.clone(),
                    parts.get(i..).map(|p| p.join("/")).unwrap_or_default(),
                );
                return Some(params);
            }
            Segment::Literal(literal) => {
                if parts.get(i) != Some(&literal.as_str()) {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.insert(name.clone(), crate::query::decode(parts.get(i)?));
            }
        }
    }
    (parts.len() == segments.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;
    use crate::query::RequestExt;

    fn request(method: Method, path: &str) -> Request {
        http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap()
            .into()
    }

    fn body(response: &Response) -> String {
        String::from_utf8(response.body().as_bytes().unwrap_or_default().to_vec()).unwrap()
    }

    #[test]
    fn routes_match_params_and_methods() {
        let router = Router::new()
            .get("/users/:id", |req: Request| {
                format!("user {}", req.param("id").unwrap())
            })
            .post("/users", |_| StatusCode::CREATED)
            .get("/files/*path", |req: Request| {
                req.param("path").unwrap().to_string()
            })
            .get("/", |_| "root");
        assert_eq!(
            body(&router.handle(request(Method::GET, "/users/42"))),
            "user 42"
        );
        assert_eq!(
            body(&router.handle(request(Method::GET, "/users/a%20b"))),
            "user a b"
        );
        assert_eq!(router.handle(request(Method::POST, "/users")).status(), 201);
        assert_eq!(
            body(&router.handle(request(Method::GET, "/files/a/b.txt"))),
            "a/b.txt"
        );
        assert_eq!(body(&router.handle(request(Method::GET, "/"))), "root");
        assert_eq!(
            router.handle(request(Method::HEAD, "/users/1")).status(),
            200
        );
        assert_eq!(
            router.handle(request(Method::GET, "/users/1/x")).status(),
            404
        );
        let refused = router.handle(request(Method::DELETE, "/users"));
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.headers()[header::ALLOW], "POST");
        let refused = router.handle(request(Method::PUT, "/users/1"));
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.headers()[header::ALLOW], "GET, HEAD");
    }
}
