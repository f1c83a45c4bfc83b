//! Link flags of the daemon's binaries.

fn main() {
    // Relative relocations packed (DT_RELR, glibc ≥ 2.36, lld/ld ≥ 2.38):
    // ld.so reads a few KiB at start instead of ~300 KiB of `.rela.dyn`,
    // pages that would stay resident for the life of the daemon.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
