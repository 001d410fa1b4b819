//! A JSON API: `POST /greet` with `{"name": "...", "times": N}` answers
//! `{"greeting": "..."}`; bad JSON or a missing field is a 400 that says why.

use serde::{Deserialize, Serialize};
use shoal_sdk::{Error, Method, Request, Response, Result};

#[derive(Deserialize)]
struct Greet {
    name: String,
    #[serde(default = "one")]
    times: u8,
}

fn one() -> u8 {
    1
}

#[derive(Serialize)]
struct Greeting {
    greeting: String,
}

#[shoal_sdk::http]
fn handle(req: Request) -> Result<Response> {
    if req.method() != Method::POST || req.uri().path() != "/greet" {
        return Err(Error::not_found().with_message("POST a JSON body to /greet"));
    }
    let greet: Greet = req.into_body().json()?;
    if greet.name.trim().is_empty() {
        return Err(Error::bad_request("`name` must not be empty"));
    }
    let greeting =
        vec![format!("Hello, {}!", greet.name); greet.times.clamp(1, 10) as usize].join(" ");
    shoal_sdk::json(&Greeting { greeting })
}
