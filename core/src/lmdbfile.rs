//! Opening the library's two LMDB files (SPEC §3) the way both need it: one file
//! (`MDB_NOSUBDIR`, lock file `PATH-lock`), the system liblmdb that Exim links, a missing
//! file created so that the Exim user can write it and its lock file, and a damaged or
//! incompatible file moved aside and rebuilt, with a log line saying so.

use crate::log;
use lmdb::{Environment, EnvironmentFlags, Transaction};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// Runs `f`, which opens, creates, renames or removes files next to `path`, with file
/// access that a link planted in that directory cannot abuse. The databases live in a
/// directory the Exim user can write (`/var/spool/exim4`), and root (Exim routing, the
/// admin tool) opens them: liblmdb opens `PATH` and `PATH-lock` by name, following links,
/// so root would create or truncate whatever file a planted link names (CVE-2020-28007's
/// class). When the caller is root and the directory belongs to another user, `f` runs with
/// that user's file access (its uid and the directory's group, no other group): a link then
/// reaches only what that user could reach anyway. A root-owned directory that others may
/// write is refused outright. Anyone else runs `f` as is.
pub fn as_dir_owner<R>(path: &Path, f: impl FnOnce() -> R) -> Result<R, String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let meta = std::fs::metadata(dir).map_err(|e| format!("directory {}: {e}", dir.display()))?;
    if crate::sys::euid() != 0 {
        return Ok(f());
    }
    if meta.uid() != 0 {
        return crate::sys::with_fs_identity(meta.uid(), meta.gid(), f)
            .map_err(|e| format!("cannot take the file access of {}'s owner: {e}", dir.display()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "directory {} belongs to root but others may write it: refusing to open a database there as root \
             (give the directory to the Exim user, or make it writable by root only)",
            dir.display()
        ));
    }
    Ok(f())
}

/// Opens (creating if needed) the LMDB file at `path` for reading and writing.
/// A file that LMDB rejects as damaged or of another version is moved aside and a new one
/// is created. `validate` may reject an environment that opened (for instance a schema
/// mismatch); it is then moved aside the same way. So is a symbolic link (or anything but a
/// plain file) in place of the file or its lock file: nobody but an attacker puts one there.
/// All of it happens under [`as_dir_owner`]. The flag says whether the data file is new
/// (it did not exist, or was just rebuilt): whatever it held before is not there.
pub fn open(
    path: &Path,
    flags: EnvironmentFlags,
    validate: impl Fn(&Environment) -> Result<(), String>,
) -> Result<(Environment, bool), OpenError> {
    let err = |reason: String| OpenError { path: path.to_owned(), reason };
    as_dir_owner(path, || open_here(path, flags, validate)).map_err(err)?
}

fn open_here(
    path: &Path,
    flags: EnvironmentFlags,
    validate: impl Fn(&Environment) -> Result<(), String>,
) -> Result<(Environment, bool), OpenError> {
    let err = |reason: String| OpenError { path: path.to_owned(), reason };
    let existed = (path.exists(), lock_path(path).exists());
    let problem = match not_a_plain_file(path) {
        Some(problem) => problem,
        None => match reserve_lock(path).and_then(|()| open_raw(path, flags)) {
            Ok(env) => match validate(&env) {
                Ok(()) => {
                    fix_new_files(path, existed);
                    crate::sys::lmdb_cloexec(&env);
                    return Ok((env, !existed.0));
                }
                Err(why) => {
                    // Close before moving the file: nothing else may use this handle.
                    drop(env);
                    why
                }
            },
            Err(e) if is_damage(&e) => e.to_string(),
            Err(e) => return Err(err(e.to_string())),
        },
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
    fix_new_files(path, (false, false));
    crate::sys::lmdb_cloexec(&env);
    Ok((env, true))
}

/// The size of the lock file with [`MAX_READERS`] slots: liblmdb's `MDB_txninfo` (two
/// cache lines of header, then one 64-byte slot per reader, the first inside the struct).
const LOCK_SIZE: u64 = (MAX_READERS as u64 + 2) * 64;

/// Gives the lock file real blocks before liblmdb maps it. liblmdb extends a new lock file
/// with `ftruncate` and writes its header and reader slots through a shared mapping: on a
/// full disk, that write raises SIGBUS and kills the process (Exim's, found by
/// `a_full_disk_under_the_databases_never_crashes_exim`). Reserved first, the lock file
/// makes a full disk an ordinary error (`fail`/`0`, or a count not kept). Costs a `stat`
/// when the lock file is already there and large enough.
fn reserve_lock(path: &Path) -> Result<(), lmdb::Error> {
    let lock = lock_path(path);
    if std::fs::symlink_metadata(&lock).is_ok_and(|m| m.is_file() && m.len() >= LOCK_SIZE) {
        return Ok(());
    }
    let io = |e: std::io::Error| lmdb::Error::Other(e.raw_os_error().unwrap_or(libc::EIO));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock)
        .map_err(io)?;
    crate::sys::reserve(&file, LOCK_SIZE).map_err(io)
}

/// Says what is wrong when `path` or its lock file exists but is not a plain file (a
/// symbolic link, a directory, a device...), without following links.
fn not_a_plain_file(path: &Path) -> Option<String> {
    [path.to_owned(), lock_path(path)].into_iter().find_map(|file| {
        let meta = std::fs::symlink_metadata(&file).ok()?;
        if meta.file_type().is_symlink() {
            let to = std::fs::read_link(&file).map(|t| t.display().to_string()).unwrap_or_default();
            Some(format!("{} is a symbolic link to {to:?}, never followed", file.display()))
        } else if !meta.is_file() {
            Some(format!("{} is not a plain file", file.display()))
        } else {
            None
        }
    })
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

/// Files we just created get mode 0660 whatever the umask (Exim's is 022), so that Exim's
/// transports, which run as the Exim user, can open them (readers need write access to the
/// lock file too). Their owner is already right: the directory's owner when root created
/// them (see [`as_dir_owner`]), else the creator.
fn fix_new_files(path: &Path, existed: (bool, bool)) {
    for (file, was_there) in [(path.to_owned(), existed.0), (lock_path(path), existed.1)] {
        if !was_there && let Err(e) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(MODE)) {
            log::warn(&format!("cannot make {} mode 0660: {e}", file.display()));
        }
    }
}
