//! Query parameters and the path parameters a [`crate::Router`] matched.

use std::collections::HashMap;

/// Path parameters (`/users/:id`) matched by a [`crate::Router`]; kept in
/// the request's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub(crate) HashMap<String, String>);

impl Params {
    /// The value of `:name` in the route.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Parameter accessors on [`http::Request`].
pub trait RequestExt {
    /// The first value of query parameter `name`, percent-decoded.
    fn query_param(&self, name: &str) -> Option<String>;
    /// Path parameter `:name` of the route that matched (see [`crate::Router`]).
    fn param(&self, name: &str) -> Option<&str>;
}

impl<B> RequestExt for http::Request<B> {
    fn query_param(&self, name: &str) -> Option<String> {
        let query = self.uri().query()?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.extensions().get::<Params>()?.get(name)
    }
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
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
