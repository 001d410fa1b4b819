//! Link settings of the `shoal` binary.

fn main() {
    // Pack the binary's ~100,000 relative relocations into a bitmap
    // (DT_RELR, glibc 2.36+ and binutils 2.38+; older linkers ignore the
    // flag with a warning). The dynamic loader then reads a few kilobytes
    // at start instead of a 1.2 MB table, which no longer stays resident.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
