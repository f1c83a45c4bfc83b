//! Link flags of the daemon's binaries.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Relative relocations packed (DT_RELR): ld.so reads a few KiB at start
    // instead of ~300 KiB of `.rela.dyn`, pages that would stay resident for
    // the life of the daemon. The binary then needs glibc 2.36 (it links
    // against this machine's glibc anyway), so only where the build's own
    // glibc has it; `KEEPALIVED_RS_NO_RELR=1` leaves it out.
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    // `getconf` tells the build machine's glibc: a cross build is left
    // without (its target's glibc is not asked).
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    println!("cargo:rerun-if-env-changed=KEEPALIVED_RS_NO_RELR");
    if linux_gnu
        && native
        && std::env::var_os("KEEPALIVED_RS_NO_RELR").is_none()
        && glibc_has_relr()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the build machine's glibc is 2.36 or later (`getconf
/// GNU_LIBC_VERSION` prints `glibc 2.36`).
fn glibc_has_relr() -> bool {
    let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}
