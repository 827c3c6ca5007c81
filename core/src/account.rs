//! Who the cold path runs as (SPEC §9): never root. When the library (routing as root) or
//! the tool (run by root) would do network work, it runs as the owner of the directory
//! that holds the state store: the Exim user in a Debian install (`/var/spool/exim4`),
//! who must be able to write the store anyway.

use crate::config::Config;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The (uid, gid) to run the cold path as, when running as root: the configured `user`;
/// else the owner and group of the state store's directory, or else of the shared
/// database's. An error when that would be root (SPEC §9) or cannot be found.
pub fn cold_path_user(cfg: &Config) -> Result<(u32, u32), String> {
    if !cfg.user.is_empty() {
        let (uid, gid) = crate::sys::user_ids(&cfg.user).map_err(|e| format!("user {:?}: {e}", cfg.user))?;
        if uid == 0 {
            return Err(format!("user {:?} is root: the cold path must not run as root (SPEC §9)", cfg.user));
        }
        return Ok((uid, gid));
    }
    let mut seen = Vec::new();
    for file in [&cfg.state, &cfg.database] {
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        match std::fs::metadata(dir) {
            Ok(m) if m.uid() != 0 => return Ok((m.uid(), m.gid())),
            Ok(_) => seen.push(format!("{} belongs to root", dir.display())),
            Err(e) => seen.push(format!("{}: {e}", dir.display())),
        }
    }
    Err(format!(
        "no user to run the cold path as ({}); it must not run as root (SPEC §9): give the directory \
         to the Exim user, or set `user`",
        seen.join("; ")
    ))
}

/// Drops root for the cold path's user ([`cold_path_user`]); does nothing for anyone else.
pub fn leave_root(cfg: &Config) -> Result<(), String> {
    if crate::sys::euid() != 0 {
        return Ok(());
    }
    let (uid, gid) = cold_path_user(cfg)?;
    crate::sys::become_user(uid, gid).map_err(|e| format!("cannot become uid {uid} gid {gid}: {e}"))
}
