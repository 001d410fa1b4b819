//! The SDK examples, served by the real `shoal` binary — and by `wasmtime
//! serve` where it is installed, to prove them portable.

use std::time::Duration;

use shoal_test_support::{Reply, Shoal, agent, echo_duplex, examples, get, post, upstream};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// Every server the example should behave the same on.
fn servers(component: &str, args: &[&str]) -> Vec<Shoal> {
    let mut servers = vec![Shoal::run(SHOAL, component, args)];
    if args.is_empty() {
        servers.extend(Shoal::wasmtime_serve(component));
    }
    servers
}

#[test]
fn hello_is_small_and_greets() {
    let size = std::fs::metadata(examples::HELLO).unwrap().len();
    eprintln!("examples/hello: {size} bytes");
    assert!(
        size <= 150_000,
        "hello is {size} bytes; the budget is 150 KB"
    );
    for server in servers(examples::HELLO, &[]) {
        let reply = server.get("/hi?x=1");
        assert_eq!(reply.body, "Hello from Shoal! You asked for /hi?x=1\n");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
}

#[test]
fn json_api_answers_json_and_refuses_bad_input_with_400() {
    for server in servers(examples::JSON_API, &[]) {
        let reply = post(&server.url("/greet"), br#"{"name": "Ann", "times": 2}"#);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, r#"{"greeting":"Hello, Ann! Hello, Ann!"}"#)
        );
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let reply = post(&server.url("/greet"), br#"{"nam": 1}"#);
        assert_eq!(reply.status, 400);
        assert!(
            reply.body.contains("missing field `name`"),
            "{}",
            reply.body
        );
        assert_eq!(post(&server.url("/greet"), b"not json").status, 400);
        assert_eq!(post(&server.url("/greet"), br#"{"name": " "}"#).status, 400);
        assert_eq!(get(&server.url("/greet")).status, 404);
    }
}

#[test]
fn router_matches_params_and_answers_404_and_405() {
    for server in servers(examples::ROUTER, &[]) {
        assert_eq!(server.get("/users/7").body, "user 7\n");
        assert_eq!(server.get("/users/seven").status, 400);
        assert_eq!(
            server.get("/search?q=a+b%21").body,
            "searching for \"a b!\"\n"
        );
        let created = post(&server.url("/users"), b"bob");
        assert_eq!(
            (created.status, created.body.as_str()),
            (201, "created bob\n")
        );
        assert_eq!(server.get("/files/a/b.txt").body, "file a/b.txt\n");
        assert_eq!(server.get("/nope").status, 404);
        let refused = shoal_test_support::agent()
            .delete(&server.url("/users"))
            .call()
            .unwrap();
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.headers()["allow"], "POST");
    }
}

#[test]
fn fetch_goes_out_only_where_the_host_allows() {
    let up = upstream("pong");
    let env = format!("UPSTREAM=http://{up}/ping");
    let denied = Shoal::run(SHOAL, examples::FETCH, &["--env", &env]);
    let reply = denied.get("/");
    assert_eq!(reply.status, 403);
    assert!(
        reply.body.contains(&format!("--allow-outbound {up}")),
        "{}",
        reply.body
    );

    let allowed = Shoal::run(
        SHOAL,
        examples::FETCH,
        &["--env", &env, "--allow-outbound", &up.to_string()],
    );
    let reply = allowed.get("/");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "upstream answered 200 OK: pong")
    );
}

#[test]
fn stream_moves_large_bodies_both_ways() {
    for server in servers(examples::STREAM, &[]) {
        assert_eq!(echo_duplex(server.addr, "/echo", 10 << 20), (200, true));
        let reply = shoal_test_support::agent()
            .get(&server.url("/bytes?n=3000000"))
            .call()
            .unwrap();
        assert_eq!(reply.status(), 200);
        let mut reader = reply.into_body().into_reader();
        let length = std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        assert_eq!(length, 3_000_000);
    }
}

/// PUTs, POSTs or DELETEs on the counter example.
fn send(server: &Shoal, method: &str, path: &str, body: &str) -> Reply {
    let url = server.url(path);
    let response = match method {
        "PUT" => agent().put(&url).send(body),
        "POST" => agent().post(&url).send(body),
        _ => agent().delete(&url).call(),
    }
    .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().read_to_string().unwrap();
    Reply {
        status,
        body,
        headers: vec![],
        elapsed: Duration::ZERO,
    }
}

#[test]
fn counter_keeps_its_count_and_notes_across_restarts_and_reads_its_config() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    let args = [
        "--kv",
        "default",
        "--config",
        "greeting=hi",
        "--state-dir",
        dir,
    ];
    let mut server = Shoal::run(SHOAL, examples::COUNTER, &args);
    assert!(
        server.get("/").body.starts_with("hi! "),
        "{}",
        server.get("/").body
    );
    assert_eq!(server.get("/count").body, "1\n");
    assert_eq!(server.get("/count").body, "2\n");

    let created = send(&server, "PUT", "/notes/milk", r#"{"text": "buy milk"}"#);
    assert_eq!(
        (created.status, created.body.as_str()),
        (201, r#"{"text":"buy milk","done":false}"#)
    );
    let done = r#"{"text": "buy milk", "done": true}"#;
    assert_eq!(send(&server, "PUT", "/notes/milk", done).status, 200);
    assert_eq!(
        send(&server, "PUT", "/notes/eggs", r#"{"text": "eggs"}"#).status,
        201
    );
    assert_eq!(send(&server, "PUT", "/notes/x", "not json").status, 400);
    let marked = send(&server, "POST", "/notes/eggs/done", "");
    assert_eq!(
        (marked.status, marked.body.as_str()),
        (200, r#"{"text":"eggs","done":true}"#)
    );
    assert_eq!(send(&server, "POST", "/notes/none/done", "").status, 404);
    assert_eq!(
        server.get("/notes/milk").body,
        r#"{"text":"buy milk","done":true}"#
    );
    assert_eq!(server.get("/notes").body, r#"["milk","eggs"]"#);
    assert_eq!(send(&server, "DELETE", "/notes/eggs", "").status, 204);
    assert_eq!(send(&server, "DELETE", "/notes/eggs", "").status, 404);
    assert_eq!(server.get("/notes/eggs").status, 404);

    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
    let server = Shoal::run(SHOAL, examples::COUNTER, &args);
    assert_eq!(
        server.get("/count").body,
        "3\n",
        "the count survives a restart"
    );
    assert_eq!(server.get("/notes").body, r#"["milk"]"#);

    // Nothing granted: the store is refused with the flag that grants it,
    // and there is no greeting but the default.
    let bare = Shoal::run(SHOAL, examples::COUNTER, &["--state-dir", ":memory:"]);
    let denied = bare.get("/count");
    assert_eq!(denied.status, 403);
    assert!(denied.body.contains("--kv default"), "{}", denied.body);
    assert!(bare.get("/").body.starts_with("hello! "));
}

#[test]
fn counter_lists_past_a_page_of_keys_and_reports_the_hosts_limits() {
    let args = ["--kv", "default", "--state-dir", ":memory:"];
    let server = Shoal::run(SHOAL, examples::COUNTER, &args);
    // More notes than one page of keys (1000): `GET /notes` follows the
    // cursor to the end, listing each once.
    let mut ids: Vec<String> = (0..1100).map(|i| format!("n{i:04}")).collect();
    for id in &ids {
        let put = send(&server, "PUT", &format!("/notes/{id}"), r#"{"text": "x"}"#);
        assert_eq!(put.status, 201, "{id}: {}", put.body);
    }
    let listed = server.get("/notes");
    assert_eq!(listed.status, 200);
    let mut listed: Vec<String> = serde_json::from_str(&listed.body).unwrap();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);

    // A value over the host's 1 MiB limit: the SDK's error names the store,
    // the key and the limit, and nothing is written.
    let big = format!(r#"{{"text": "{}"}}"#, "x".repeat(1 << 20));
    let refused = send(&server, "PUT", "/notes/big", &big);
    assert_eq!(refused.status, 500);
    assert!(
        refused
            .body
            .contains("key `note:big` in key-value store `default`")
            && refused.body.contains("limit"),
        "{}",
        refused.body
    );
    assert_eq!(server.get("/notes/big").status, 404);
}
