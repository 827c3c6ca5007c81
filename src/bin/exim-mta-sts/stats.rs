//! `exim-mta-sts stats [--json | --prometheus | --textfile PATH]`: see [`exim_mta_sts_tool::stats`].
//!
//! `--textfile` writes the Prometheus text atomically (a new file beside PATH, then
//! `rename`) for node_exporter's textfile collector, whose directory
//! (`/var/lib/prometheus/node-exporter`) belongs to root. Run by root, the tool still reads
//! the databases (written by the Exim user) only as the Exim user: it runs itself with
//! `--prometheus`, which leaves root first, and root only copies those bytes into the file,
//! in a directory nobody else may write (so no planted link or rename race).

use crate::{Failure, Outcome, open_store};
use exim_mta_sts_tool::config::Config;
use exim_mta_sts_tool::stats::{self, Stats};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

/// The most a textfile may hold (the figures are a few kB).
const MAX_TEXT: u64 = 1 << 20;

pub(crate) enum Form {
    Words,
    Json,
    Prometheus,
}

pub(crate) fn stats(cfg: &Config, form: Form, textfile: Option<&Path>, now: u64) -> Outcome {
    let store =
        if cfg.state.exists() || cfg.database.exists() { Some(open_store(cfg, false)?) } else { None };
    let s = stats::gather(cfg, store.as_ref(), now);
    if let Some(path) = textfile {
        write_atomically(path, stats::prometheus(&s).as_bytes())?;
        return Ok(crate::ok_if(s.problems.is_empty()));
    }
    match form {
        Form::Json => crate::print_json(&s)?,
        Form::Prometheus => print!("{}", stats::prometheus(&s)),
        Form::Words => words(&s),
    }
    Ok(crate::ok_if(s.problems.is_empty()))
}

/// Run by root: the figures from this program run again with `--prometheus` (it leaves
/// root before it reads anything), copied into PATH.
pub(crate) fn textfile_as_root(config: &Path, path: &Path) -> Outcome {
    let dir = parent(path);
    let m = std::fs::symlink_metadata(dir).map_err(|e| Failure(format!("{}: {e}", dir.display()), 1))?;
    if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(Failure(
            format!(
                "{}: root writes the textfile only into a root-owned directory nobody else may write; \
                 run as the Exim user to write elsewhere",
                dir.display()
            ),
            2,
        ));
    }
    let exe = std::env::current_exe().map_err(|e| Failure(format!("own program: {e}"), 1))?;
    let mut child = std::process::Command::new(exe)
        .arg("--config")
        .arg(config)
        .args(["stats", "--prometheus"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot run the figures' reader: {e}"), 1))?;
    let mut text = Vec::new();
    let read = child.stdout.take().map(|o| o.take(MAX_TEXT + 1).read_to_end(&mut text));
    let status = child.wait().map_err(|e| Failure(e.to_string(), 1))?;
    if !matches!(read, Some(Ok(_))) || text.len() as u64 > MAX_TEXT || !text.starts_with(b"# HELP ") {
        return Err(Failure(format!("the figures' reader gave no usable text ({status})"), 1));
    }
    write_atomically(path, &text)?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A new file beside `path` (never an existing one, never through a link), synced, then
/// renamed over `path`: a reader sees the old figures or the new, never half.
fn write_atomically(path: &Path, text: &[u8]) -> Result<(), Failure> {
    let name = path.file_name().ok_or_else(|| Failure(format!("{}: not a file name", path.display()), 2))?;
    let tmp: PathBuf = parent(path).join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let fail = |e: std::io::Error| Failure(format!("{}: {e}", tmp.display()), 1);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(fail)?;
    let written = f.write_all(text).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure(format!("{}: {e}", path.display()), 1));
    }
    Ok(())
}

fn list(m: &std::collections::BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

fn words(s: &Stats) {
    let age = |a: Option<u64>| a.map_or_else(|| "-".into(), crate::span);
    println!("policies:          {}", list(&s.policies));
    println!("domains:           {}", list(&s.domains));
    println!("DANE domains:      {}", s.dane_domains);
    println!("expiring in 24h:   {}", s.expiring_within_a_day);
    println!("oldest policy:     {}", age(s.oldest_policy_age));
    println!("refresh failing:   {} (oldest good fetch {})", s.refresh_failing, age(s.refresh_failing_age));
    println!("fetches last hour: {}", list(&s.fetches_last_hour));
    println!("fetches last day:  {}", list(&s.fetches_last_day));
    match &s.last_refresh {
        Some(r) => println!(
            "last refresh:      {}: {} unchanged, {} changed, {} failed, {} busy",
            crate::ago(r.finished, s.time),
            r.unchanged,
            r.changed,
            r.failed,
            r.busy
        ),
        None => println!("last refresh:      never"),
    }
    println!("database bytes:    {}", list(&s.database_bytes));
    let t = &s.tls_sessions_today;
    println!("TLS today:         {} successful, {} failed sessions", t.successes, t.failures);
    let r = &s.reports;
    println!("reports:           {} pending, {} sent, {} failed", r.pending, r.sent, r.failed);
    for p in &s.problems {
        println!("problem:           {p}");
    }
}
