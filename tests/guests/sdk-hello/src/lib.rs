//! Answers every request with `hello from shoal\n`, like `../hello`, but
//! through the SDK.

use shoal_sdk::{Request, Response};

#[shoal_sdk::http]
fn handle(_req: Request) -> Response {
    Response::new("hello from shoal\n".into())
}
