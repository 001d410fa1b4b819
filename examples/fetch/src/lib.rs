//! Calls the upstream named by the `UPSTREAM` variable (granted with
//! `--env UPSTREAM=http://host:port/path`) through the outbound client and
//! answers with what came back. The host decides where a component may go:
//! without `--allow-outbound host:port` the call is denied and this answers
//! 403 with the flag to add.
//!
//! The handler is `async`, to show that form: it awaits the upstream's
//! response and reads its body chunk by chunk as it arrives.

use shoal_sdk::{Error, Request, Response, Result};

#[shoal_sdk::http]
async fn handle(_req: Request) -> Result<Response> {
    let upstream = shoal_sdk::env("UPSTREAM")
        .ok_or_else(|| Error::internal("set UPSTREAM with `--env UPSTREAM=http://...`"))?;
    let request = shoal_sdk::http_types::Request::get(upstream.as_str()).body(Vec::new())?;
    // A denied destination is a `FetchError::Denied`; `?` answers it with
    // 403 and the `--allow-outbound` flag that would allow it.
    let response = shoal_sdk::fetch_async(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.next_chunk().await? {
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(text)?;
    Ok(shoal_sdk::text(format!(
        "upstream answered {status}: {text}"
    )))
}
