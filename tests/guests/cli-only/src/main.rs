//! A command component: it exports `wasi:cli/run`, not an HTTP handler.

fn main() {
    println!("I am a command, not an HTTP handler");
}
