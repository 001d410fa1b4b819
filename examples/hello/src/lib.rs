//! Hello world for Shoal: greets the client and echoes the path it asked for.

use shoal_sdk::{Request, Response, Result};

#[shoal_sdk::http]
fn handle(req: Request) -> Result<Response> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    Ok(shoal_sdk::text(format!(
        "Hello from Shoal! You asked for {path}\n"
    )))
}
