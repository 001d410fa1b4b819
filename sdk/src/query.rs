//! Query parameters, and the path parameters a `Router` matched.

use std::collections::HashMap;

use crate::request::Request;

/// Path parameters (`/users/:id`) matched by a `Router`; kept in
/// the request's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub(crate) HashMap<String, String>);

impl Params {
    /// The value of `:name` in the route.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Parameter accessors on [`Request`] (and on [`http::Request`]).
pub trait RequestExt {
    /// The first value of query parameter `name`, percent-decoded.
    fn query_param(&self, name: &str) -> Option<String>;
    /// Every query parameter in order, percent-decoded (`?a=1&a=2&b` gives
    /// `a=1`, `a=2`, `b=`).
    fn query_params(&self) -> Vec<(String, String)>;
    /// Path parameter `:name` of the route that matched (see `Router`).
    fn param(&self, name: &str) -> Option<&str>;
}

mod sealed {
    /// What the parameters are read from.
    pub trait Head {
        fn uri(&self) -> &http::Uri;
        fn extensions(&self) -> &http::Extensions;
    }
}

use sealed::Head;

impl Head for Request {
    fn uri(&self) -> &http::Uri {
        self.uri()
    }

    fn extensions(&self) -> &http::Extensions {
        self.extensions()
    }
}

impl<B> Head for http::Request<B> {
    fn uri(&self) -> &http::Uri {
        self.uri()
    }

    fn extensions(&self) -> &http::Extensions {
        self.extensions()
    }
}

impl<R: Head> RequestExt for R {
    fn query_param(&self, name: &str) -> Option<String> {
        pairs(self.uri().query()?)
            .find_map(|(key, value)| (decode(key) == name).then(|| decode(value)))
    }

    fn query_params(&self) -> Vec<(String, String)> {
        pairs(self.uri().query().unwrap_or_default())
            .map(|(key, value)| (decode(key), decode(value)))
            .collect()
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.extensions().get::<Params>()?.get(name)
    }
}

/// The raw `key=value` pairs of a query string.
fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Percent-decoding, with `+` as a space (form encoding).
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_and_decoded() {
        let request = http::Request::get("/x?a=1&name=J%C3%BCrgen+S&flag")
            .body(())
            .unwrap();
        assert_eq!(request.query_param("a").as_deref(), Some("1"));
        assert_eq!(request.query_param("name").as_deref(), Some("Jürgen S"));
        assert_eq!(request.query_param("flag").as_deref(), Some(""));
        assert_eq!(request.query_param("missing"), None);
        assert_eq!(
            request.query_params(),
            [("a", "1"), ("name", "Jürgen S"), ("flag", "")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let bare = http::Request::get("/x").body(()).unwrap();
        assert!(bare.query_params().is_empty() && bare.query_param("a").is_none());
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
