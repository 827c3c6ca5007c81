//! The local test world for exim-mta-sts's tests and demo (see TESTING.md and
//! `scripts/in-world`): a DNS server, HTTPS policy hosts and a test CA, all on loopback
//! addresses inside a private network namespace. Test-only: never shipped.
//!
//! ```text
//! testworld serve WORLD_DIR            DNS on 127.0.0.1:53, HTTPS on 127.0.1.1:443
//! testworld cert WORLD_DIR NAME [good|wrong-name|untrusted|expired]
//!                                      writes WORLD_DIR/certs/NAME.{crt,key}
//! testworld receiver WORLD_DIR NAME IP good|wrong-name|untrusted|expired|none
//!                                      starts an SMTP receiver (Exim) for MX host NAME
//! testworld sender DIR EXIM_CONFIG_DIR LIB
//!                                      writes a sending Exim's config using exim-config/
//! ```

mod ca;
mod dns;
mod exim;
mod https;

use std::path::{Path, PathBuf};

fn cas(dir: &Path) -> Result<(ca::Ca, ca::Ca), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    Ok((ca::Ca::load_or_create(dir, "test-ca")?, ca::Ca::load_or_create(dir, "rogue-ca")?))
}

fn serve(world: &Path) -> Result<(), String> {
    for sub in ["dns", "https", "certs"] {
        std::fs::create_dir_all(world.join(sub)).map_err(|e| e.to_string())?;
    }
    let (good, rogue) = cas(world)?;
    dns::start("127.0.0.1:53".parse().map_err(|_| "addr")?, world.join("dns"))
        .map_err(|e| format!("dns: {e}"))?;
    https::start("127.0.1.1:443".parse().map_err(|_| "addr")?, world.join("https"), good, rogue)
        .map_err(|e| format!("https: {e}"))?;
    std::fs::write(world.join("ready"), b"ready\n").map_err(|e| e.to_string())?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

pub(crate) fn cert(world: &Path, name: &str, flavour: &str) -> Result<(), String> {
    let flavour = ca::Flavour::parse(flavour).ok_or("flavour: good, wrong-name, untrusted or expired")?;
    let (good, rogue) = cas(world)?;
    let issuer = if flavour == ca::Flavour::Untrusted { &rogue } else { &good };
    let leaf = issuer.issue(name, flavour)?;
    let dir = world.join("certs");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(format!("{name}.crt")), leaf.cert_pem + &issuer.cert_pem)
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join(format!("{name}.key")), leaf.key_pem).map_err(|e| e.to_string())?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve", dir] => serve(&PathBuf::from(dir)),
        ["cert", dir, name] => cert(&PathBuf::from(dir), name, "good"),
        ["cert", dir, name, flavour] => cert(&PathBuf::from(dir), name, flavour),
        ["receiver", dir, name, ip, tls] => {
            exim::receiver(&PathBuf::from(dir), name, ip, tls).map(|d| println!("{}", d.display()))
        }
        ["sender", dir, shipped, lib] => {
            exim::sender(&PathBuf::from(dir), &PathBuf::from(shipped), &PathBuf::from(lib)).map(|c| println!("{}", c.display()))
        }
        _ => Err("usage: testworld serve DIR | cert DIR NAME [FLAVOUR] | receiver DIR NAME IP TLS | sender DIR EXIM_CONFIG LIB".into()),
    };
    if let Err(e) = r {
        eprintln!("testworld: {e}");
        std::process::exit(1);
    }
}
