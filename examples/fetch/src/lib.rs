//! Calls the upstream named by the `UPSTREAM` variable (granted with
//! `--env UPSTREAM=http://host:port/path`) through the outbound client and
//! answers with what came back. The host decides where a component may go:
//! without `--allow-outbound host:port` the call is denied and this answers
//! 403 with the flag to add.

use shoal_sdk::{Error, Request, Response, Result};

#[shoal_sdk::http]
fn handle(_req: Request) -> Result<Response> {
    let upstream = shoal_sdk::env("UPSTREAM")
        .ok_or_else(|| Error::internal("set UPSTREAM with `--env UPSTREAM=http://...`"))?;
    let request = shoal_sdk::http_types::Request::get(upstream.as_str()).body(Vec::new())?;
    let response = shoal_sdk::fetch(request)?;
    let status = response.status();
    let body = response.into_body().text()?;
    Ok(shoal_sdk::text(format!(
        "upstream answered {status}: {body}"
    )))
}
