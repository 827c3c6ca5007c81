//! Opening the library's two LMDB files (SPEC §3) the way both need it: one file
//! (`MDB_NOSUBDIR`, lock file `PATH-lock`), the system liblmdb that Exim links, a missing
//! file created so that the Exim user can write it and its lock file, and a damaged or
//! incompatible file moved aside and rebuilt, with a log line saying so.

use crate::log;
use lmdb::{Environment, EnvironmentFlags, Transaction};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Virtual size of the map: room for far more than 10 000 policies. The file itself only
/// grows with the pages in use.
pub const MAP_SIZE: usize = 256 << 20;
/// Reader slots in the lock file: one per concurrent Exim process reading.
pub const MAX_READERS: u32 = 1022;
/// Mode of the files we create (before ownership is fixed).
const MODE: u32 = 0o660;

/// Why a database could not be opened.
#[derive(Debug)]
pub struct OpenError {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for OpenError {}

pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-lock");
    PathBuf::from(s)
}

/// The errors that mean "this file is not an LMDB 0.9 database we can use".
pub fn is_damage(e: &lmdb::Error) -> bool {
    matches!(
        e,
        lmdb::Error::Invalid
            | lmdb::Error::VersionMismatch
            | lmdb::Error::Corrupted
            | lmdb::Error::PageNotFound
            | lmdb::Error::Panic
            | lmdb::Error::Incompatible
    )
}

fn open_raw(path: &Path, flags: EnvironmentFlags) -> Result<Environment, lmdb::Error> {
    Environment::new()
        .set_flags(flags | EnvironmentFlags::NO_SUB_DIR)
        .set_map_size(MAP_SIZE)
        .set_max_readers(MAX_READERS)
        .open_with_permissions(path, MODE)
}

/// Opens (creating if needed) the LMDB file at `path` for reading and writing.
/// A file that LMDB rejects as damaged or of another version is moved aside and a new one
/// is created. `validate` may reject an environment that opened (for instance a schema
/// mismatch); it is then moved aside the same way.
pub fn open(
    path: &Path,
    flags: EnvironmentFlags,
    validate: impl Fn(&Environment) -> Result<(), String>,
) -> Result<Environment, OpenError> {
    let err = |reason: String| OpenError { path: path.to_owned(), reason };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir_meta = std::fs::metadata(dir).map_err(|e| err(format!("directory {}: {e}", dir.display())))?;
    let existed = (path.exists(), lock_path(path).exists());
    let problem = match open_raw(path, flags) {
        Ok(env) => match validate(&env) {
            Ok(()) => {
                fix_new_files(path, existed, &dir_meta);
                crate::sys::lmdb_cloexec(&env);
                return Ok(env);
            }
            Err(why) => {
                // Close before moving the file: nothing else may use this handle.
                drop(env);
                why
            }
        },
        Err(e) if is_damage(&e) => e.to_string(),
        Err(e) => return Err(err(e.to_string())),
    };
    let aside =
        move_aside(path).map_err(|e| err(format!("damaged ({problem}) and cannot be moved aside: {e}")))?;
    log::alert(&format!(
        "database {} was unusable ({problem}); moved it to {} and started a new one",
        path.display(),
        aside.display()
    ));
    let env = open_raw(path, flags).map_err(|e| err(format!("cannot create a new database: {e}")))?;
    validate(&env).map_err(err)?;
    fix_new_files(path, (false, false), &dir_meta);
    crate::sys::lmdb_cloexec(&env);
    Ok(env)
}

/// Runs `body` in a write transaction and commits it. When another process has grown the
/// map beyond ours (`MDB_MAP_RESIZED`), adopts the new size and tries once more.
pub fn write<R>(
    env: &Environment,
    body: impl Fn(&mut lmdb::RwTransaction<'_>) -> Result<R, lmdb::Error>,
) -> Result<R, lmdb::Error> {
    for attempt in 0..2 {
        let result = env.begin_rw_txn().and_then(|mut txn| {
            let r = body(&mut txn)?;
            txn.commit()?;
            Ok(r)
        });
        match result {
            Err(lmdb::Error::MapResized) if attempt == 0 => env.set_map_size(0)?,
            other => return other,
        }
    }
    Err(lmdb::Error::MapResized)
}

/// Renames a damaged file to `PATH.broken-UNIXTIME-PID` and removes its lock file.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".broken-{now}-{}", std::process::id()));
    let aside = PathBuf::from(aside);
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        // Another process moved it first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(lock_path(path)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(aside)
}

/// Files we just created get mode 0660 whatever the umask (Exim's is 022), and, when we
/// run as root, the owner and group of their directory (on Debian `Debian-exim`), so that
/// Exim's transports, which run as the Exim user, can open them (readers need write
/// access to the lock file too).
fn fix_new_files(path: &Path, existed: (bool, bool), dir_meta: &std::fs::Metadata) {
    for (file, was_there) in [(path.to_owned(), existed.0), (lock_path(path), existed.1)] {
        if was_there {
            continue;
        }
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(MODE));
        if crate::sys::euid() == 0
            && let Err(e) = std::os::unix::fs::chown(&file, Some(dir_meta.uid()), Some(dir_meta.gid()))
        {
            log::warn(&format!("cannot give {} to the owner of its directory: {e}", file.display()));
        }
    }
}
