//! exim-mta-sts: diagnose domains and inspect, refresh and purge the MTA-STS policy cache
//! that libexim_mta_sts.so keeps for Exim. Everything goes through the library's own code
//! (`exim_mta_sts_tool::admin`, `engine`, `lookup`); this file parses arguments and prints.

use clap::{Parser, Subcommand};
use exim_mta_sts_tool::admin::{self, EntryInfo};
use exim_mta_sts_tool::cache::Store;
use exim_mta_sts_tool::config::Config;
use exim_mta_sts_tool::decide::{self, Why};
use exim_mta_sts_tool::engine::{Engine, LiveNet, SharedWrites};
use exim_mta_sts_tool::{clock, domain, log};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod check;
mod helper;
mod refresh;
mod report;
mod stats;
use refresh::refresh;

#[derive(Parser)]
#[command(
    name = "exim-mta-sts",
    version,
    about = "Diagnose MTA-STS domains and manage the policy cache of libexim_mta_sts.so",
    long_about = "Diagnose MTA-STS (RFC 8461) domains and inspect, warm, refresh and purge the policy \
cache that libexim_mta_sts.so keeps for Exim. It reads the library's configuration \
(/etc/exim4/mta-sts.toml, or $EXIM_MTA_STS_CONFIG, or --config) and works on the same databases, \
safely while Exim runs. Run it as root or as the Exim user: files it creates get the owner of \
their directory, so Exim can always write them.",
    after_help = "Exit status: 0 when all is well, 1 when the command found a problem (it says which), \
2 for a usage or configuration error."
)]
struct Cli {
    /// Configuration file [default: $EXIM_MTA_STS_CONFIG or /etc/exim4/mta-sts.toml]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Live diagnosis of DOMAIN: its _mta-sts record, policy fetch, parsed policy,
    /// TLSRPT record, DANE state, MX hosts (each probed over STARTTLS), and what getmta
    /// would answer and why
    Check {
        domain: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Do not connect to the MX hosts (by default each is probed on port 25: EHLO,
        /// STARTTLS with SNI, certificate chain, name and dates)
        #[arg(long)]
        no_probe: bool,
    },
    /// What the cache holds for DOMAIN
    Show {
        domain: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Every cached domain, one per line
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Fetch cached policies again before they expire (RFC 8461 §3.3: daily), for domains
    /// used recently; run it from a timer or cron
    Refresh {
        /// Only domains Exim used within this many days
        #[arg(long, default_value_t = exim_mta_sts_tool::stats::IN_USE / 86_400, value_name = "DAYS")]
        used_within: u64,
        /// Skip policies fetched less than this many hours ago
        #[arg(long, default_value_t = 12, value_name = "HOURS")]
        min_age: u64,
        /// Fetches at the same time
        #[arg(long, short, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
        jobs: u64,
        /// Spread the fetches over SECONDS: each starts at a random time in the window
        /// (no lease is held while waiting; the run lasts about SECONDS plus the fetches)
        #[arg(long, default_value_t = 0, value_name = "SECONDS")]
        jitter: u64,
    },
    /// Warm the cache from a list of domains, one per line ("-" for standard input)
    Prefetch {
        /// File of domains, or "-"
        file: String,
    },
    /// Drop expired entries
    Purge,
    /// Drop everything cached about DOMAIN
    Forget { domain: String },
    /// The TLS reports (RFC 8460) for one UTC day, from what Exim's deliveries recorded;
    /// `report send` sends each to its domain's TLSRPT rua (once per day and destination);
    /// `report export` writes this host's counts, for another host's `--merge`
    Report {
        /// `send` the reports, or `export` this host's counts as JSON
        #[arg(value_parser = ["send", "export"])]
        action: Option<String>,
        /// Add other hosts' counts (files written by `report export`): one report per
        /// organisation, not per host
        #[arg(long, value_name = "FILE", num_args = 1..)]
        merge: Vec<PathBuf>,
        /// The day, YYYY-MM-DD [default: yesterday, UTC]
        #[arg(long)]
        date: Option<String>,
        /// Print the JSON reports exactly as they would be sent
        #[arg(long)]
        json: bool,
    },
    /// How the cache, its fetches and the TLS reports are doing (for people, JSON, or
    /// Prometheus's node_exporter textfile collector)
    Stats {
        /// Print JSON
        #[arg(long, conflicts_with_all = ["prometheus", "textfile"])]
        json: bool,
        /// Print the Prometheus text format
        #[arg(long, conflicts_with = "textfile")]
        prometheus: bool,
        /// Write the Prometheus text format to PATH atomically (e.g.
        /// /var/lib/prometheus/node-exporter/exim-mta-sts.prom)
        #[arg(long, value_name = "PATH")]
        textfile: Option<PathBuf>,
    },
    /// Internal: writes the man pages (roff) into DIR, for the package (scripts/package)
    #[command(hide = true)]
    Manpage { dir: PathBuf },
    /// Internal: the cold path, run by libexim_mta_sts.so (SPEC §9); see helper.rs
    #[command(hide = true)]
    Helper {
        /// Seed a new state store from the shared database
        #[arg(long)]
        seed: bool,
        /// Pass debug lines on too
        #[arg(long)]
        debug: bool,
        domain: Option<String>,
    },
}

/// An error for the user: what went wrong, and the exit status.
struct Failure(String, u8);

type Outcome = Result<ExitCode, Failure>;

fn usage(msg: String) -> Failure {
    Failure(msg, 2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let as_helper = matches!(cli.command, Command::Helper { .. });
    if let Command::Helper { debug, .. } = &cli.command {
        log::use_pipe();
        if *debug {
            log::pipe_debug();
        }
    } else {
        log::use_stderr();
    }
    match run(cli) {
        Ok(code) => code,
        Err(Failure(msg, code)) if as_helper => {
            log::alert(&format!("helper: {msg}"));
            ExitCode::from(code)
        }
        Err(Failure(msg, code)) => {
            let _ = writeln!(std::io::stderr(), "exim-mta-sts: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Outcome {
    // Needs no configuration (the package is built where none is installed).
    if let Command::Manpage { dir } = &cli.command {
        return manpage(dir);
    }
    let path = cli.config.clone().unwrap_or_else(Config::path_from_env);
    let cfg = Config::load_from(&path).map_err(|e| usage(e.to_string()))?;
    if let Command::Stats { textfile: Some(file), .. } = &cli.command
        && exim_mta_sts_tool::sys::euid() == 0
    {
        return stats::textfile_as_root(&path, file);
    }
    // SPEC §9: nothing from the network is parsed as root. Run by root, the tool becomes
    // the owner of the state directory (the Exim user) before anything else.
    exim_mta_sts_tool::account::leave_root(&cfg)
        .map_err(|e| Failure(format!("refusing to run as root: {e}"), 2))?;
    let now = clock::now();
    match cli.command {
        Command::Check { domain, json, no_probe } => check::check(&cfg, &domain, json, !no_probe, now),
        Command::Show { domain, json } => show(&cfg, &domain, json, now),
        Command::List { json } => list(&cfg, json, now),
        Command::Refresh { used_within, min_age, jobs, jitter } => {
            refresh(&cfg, now, used_within * 86_400, min_age * 3600, jobs as usize, jitter)
        }
        Command::Prefetch { file } => prefetch(&cfg, &file, now),
        Command::Purge => purge(&cfg, now),
        Command::Forget { domain } => forget(&cfg, &domain),
        Command::Report { action, date, json, merge } => {
            report::run(&cfg, action.as_deref(), date.as_deref(), json, &merge, now)
        }
        Command::Stats { json, prometheus, textfile } => {
            let form = match (json, prometheus) {
                (true, _) => stats::Form::Json,
                (_, true) => stats::Form::Prometheus,
                _ => stats::Form::Words,
            };
            stats::stats(&cfg, form, textfile.as_deref(), now)
        }
        Command::Manpage { dir } => manpage(&dir),
        Command::Helper { seed, domain, .. } => Ok(helper::helper(&cfg, domain.as_deref(), seed)),
    }
}

/// The man pages, exim-mta-sts(8) and one per command (exim-mta-sts-show(8), ...), from
/// the argument definitions above (clap_mangen), written into `dir`.
fn manpage(dir: &std::path::Path) -> Outcome {
    fn write(cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, dir)?;
        }
        clap_mangen::Man::new(cmd).section("8").generate_to(dir).map(|_| ())
    }
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir).map_err(|e| Failure(format!("{}: {e}", dir.display()), 1))?;
    Ok(ExitCode::SUCCESS)
}

fn normalize(d: &str) -> Result<String, Failure> {
    domain::normalize(d).map_err(|_| usage(format!("{d:?} is not a domain name")))
}

/// Opens the state store; `must_exist` for commands that only read it.
fn open_store(cfg: &Config, must_exist: bool) -> Result<Store, Failure> {
    // A lost state store is rebuilt from the shared database (reseed), when there is one.
    if must_exist && !cfg.state.exists() && !cfg.database.exists() {
        return Err(Failure(
            format!(
                "no state database at {} yet: nothing is cached (Exim creates it on first use)",
                cfg.state.display()
            ),
            1,
        ));
    }
    exim_mta_sts_tool::reseed::open_store(&cfg.state, &cfg.database).map_err(|e| Failure(e.to_string(), 1))
}

fn print_json(v: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Failure(e.to_string(), 1))?;
    println!("{text}");
    Ok(())
}

fn ok_if(clean: bool) -> ExitCode {
    if clean { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

// ---------------------------------------------------------------------------- show, list

/// "3d 4h", "5m", "42s".
fn span(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn ago(t: u64, now: u64) -> String {
    if t == 0 { "never".into() } else { format!("{} ago", span(now.saturating_sub(t))) }
}

fn until(t: u64, now: u64) -> String {
    if t > now { format!("in {}", span(t - now)) } else { format!("{} ago (expired)", span(now - t)) }
}

fn show(cfg: &Config, d: &str, json: bool, now: u64) -> Outcome {
    let d = normalize(d)?;
    let mut store = open_store(cfg, true)?;
    let info = store
        .read(&d, |e| e.map(|e| EntryInfo::new(&d, &e, cfg, now)))
        .map_err(|e| Failure(e.to_string(), 1))?
        .ok_or_else(|| Failure(format!("{d} is not cached (try: exim-mta-sts check {d})"), 1))?;
    if json {
        print_json(&info)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", info.domain);
    let state = match &info.mode {
        Some(m) => format!("{} (mode {m})", info.state),
        None => info.state.clone(),
    };
    println!("  state:       {state}");
    println!("  getmta now:  {}", info.getmta_now);
    if !info.mx.is_empty() {
        println!("  mx:          {}", info.mx.join(", "));
    }
    if let Some(id) = &info.id {
        println!("  id:          {id}");
    }
    println!("  expires:     {}", until(info.expires, now));
    println!("  last check:  {}", ago(info.checked, now));
    if let Some(f) = info.fetched {
        println!("  fetched:     {}", ago(f, now));
    }
    println!(
        "  report:      {}",
        if info.report.is_empty() { "(none)".into() } else { info.report.join(", ") }
    );
    let dane = if info.dane_until == 0 {
        "not checked".into()
    } else {
        format!("{} (until {})", if info.dane { "yes" } else { "no" }, until(info.dane_until, now))
    };
    println!("  DANE:        {dane}");
    println!("  last used:   {}", info.last_used.map_or_else(|| "never".into(), |u| ago(u, now)));
    if let Some(c) = &info.cause {
        let rt = info.result_type.as_deref().map(|r| format!(" (TLSRPT: {r})")).unwrap_or_default();
        println!("  last problem: {c}{rt}");
    }
    if let Some(n) = &info.note {
        println!("  note:        {n}");
    }
    Ok(ExitCode::SUCCESS)
}

fn list(cfg: &Config, json: bool, now: u64) -> Outcome {
    let store = open_store(cfg, true)?;
    let all = admin::list(&store, cfg, now).map_err(|e| Failure(e, 1))?;
    if json {
        print_json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = all.iter().map(|i| i.domain.len()).max().unwrap_or(6).max(6);
    println!(
        "{:width$}  {:<12} {:<8} {:<22} {:<12} {:<5} ID",
        "DOMAIN", "STATE", "MODE", "EXPIRES", "CHECKED", "DANE"
    );
    for i in &all {
        println!(
            "{:width$}  {:<12} {:<8} {:<22} {:<12} {:<5} {}",
            i.domain,
            i.state,
            i.mode.as_deref().unwrap_or("-"),
            until(i.expires, now),
            ago(i.checked, now),
            if i.dane { "yes" } else { "no" },
            i.id.as_deref().unwrap_or("-")
        );
    }
    println!("{} domain(s)", all.len());
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------- prefetch, purge, forget

fn prefetch(cfg: &Config, file: &str, now: u64) -> Outcome {
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).map_err(|e| usage(format!("{file}: {e}")))?,
        ))
    };
    let mut store = open_store(cfg, false)?;
    let mut net = LiveNet::new(cfg);
    let (mut warmed, mut cached, mut bad) = (0, 0, 0);
    log::quiet();
    for line in reader.lines() {
        let line = line.map_err(|e| usage(format!("{file}: {e}")))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Ok(d) = domain::normalize(line) else {
            let _ = writeln!(std::io::stderr(), "{line:?}: not a domain name, skipped");
            bad += 1;
            continue;
        };
        let prior = store.read(&d, |e| e.map(|e| (decide::hot(&e, now, cfg).is_some(), e.to_owned_entry())));
        let prior = prior.map_err(|e| Failure(e.to_string(), 1))?;
        if let Some((true, _)) = prior {
            cached += 1;
            continue;
        }
        let entry = Engine { cfg, store: &mut store, shared: SharedWrites::Direct }.run(
            &d,
            prior.map(|(_, e)| e),
            clock::now(),
            Why::Prefetch,
            &mut net,
        );
        println!("{d}: {}", decide::fresh(&entry.view(), cfg).as_str());
        warmed += 1;
    }
    if let Err(e) = exim_mta_sts_tool::tally::Tallies::open(&cfg.reports)
        .and_then(|t| t.count(clock::now(), &net.outcomes))
    {
        let _ =
            writeln!(std::io::stderr(), "prefetch: fetch counts not kept in {}: {e}", cfg.reports.display());
    }
    println!("prefetch: {warmed} looked up, {cached} already cached, {bad} not domain names");
    Ok(ok_if(bad == 0))
}

fn purge(cfg: &Config, now: u64) -> Outcome {
    let store = open_store(cfg, true)?;
    let dropped = admin::purge(&store, cfg, now).map_err(|e| Failure(e, 1))?;
    for d in &dropped {
        println!("dropped {d}");
    }
    println!("purge: {} expired entr{} dropped", dropped.len(), if dropped.len() == 1 { "y" } else { "ies" });
    Ok(ExitCode::SUCCESS)
}

fn forget(cfg: &Config, d: &str) -> Outcome {
    let d = normalize(d)?;
    let store = open_store(cfg, true)?;
    if admin::forget(&store, cfg, &d).map_err(|e| Failure(e, 1))? {
        println!("forgot {d}");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure(format!("{d} is not cached"), 1))
    }
}
