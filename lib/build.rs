//! Links the unwinder (libgcc_eh, PIC, from the C compiler) into the library instead of
//! loading libgcc_s.so.1 with it. Rust's std asks for `-lgcc_s`; a `libgcc_s.a` found
//! first on the search path satisfies that name statically. Loading libgcc_s.so.1 cost a
//! fresh Exim process about 120 µs of CPU (bench/fresh-process), more than the library
//! itself, and Exim does not otherwise load it. Unwinding is still there for the panic
//! guard (tests/exim.rs proves a panic becomes a logged `fail` through a real Exim).
//! Where the compiler has no libgcc_eh.a, nothing changes.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return };
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let Ok(found) = Command::new(cc).arg("-print-file-name=libgcc_eh.a").output() else { return };
    let eh = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    if !eh.is_absolute() || !eh.exists() {
        return;
    }
    if std::fs::copy(&eh, out.join("libgcc_s.a")).is_ok() {
        println!("cargo:rustc-link-search=native={}", out.display());
    }
}
