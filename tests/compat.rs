//! Components built with the ecosystem's SDKs, exactly as their users build
//! them, are served unchanged.

use shoal_test_support::{Shoal, echo_duplex, guests};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

#[test]
fn a_wstd_component_is_served_and_streams() {
    let shoal = Shoal::run(SHOAL, guests::COMPAT_WSTD, &[]);
    assert!(shoal.logs().contains("wasip2"));
    assert_eq!(shoal.get("/x").body, "hello from wstd at /x\n");
    assert_eq!(echo_duplex(shoal.addr, "/echo", 4 << 20), (200, true));
}

#[test]
fn a_spin_sdk_7_component_is_served() {
    let shoal = Shoal::run(SHOAL, guests::COMPAT_SPIN, &[]);
    assert!(shoal.logs().contains("wasip3"));
    let reply = shoal.get("/hello");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello from spin-sdk at /hello\n")
    );
}
