//! Real mail for the tests: SMTP receivers (Exim daemons of the test world) and a sending
//! Exim using the shipped configuration and the library.

use super::*;

/// A loopback address no other running test uses: 127.A.B.N from this process's id.
pub fn next_ip() -> String {
    static N: AtomicU32 = AtomicU32::new(1);
    let pid = std::process::id();
    format!("127.{}.{}.{}", 2 + (pid / 250) % 200, pid % 250, N.fetch_add(1, Ordering::Relaxed))
}

/// An SMTP receiver (an Exim daemon) for one MX host, stopped when dropped.
pub struct Receiver {
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
}

impl Receiver {
    /// `tls`: good, wrong-name, untrusted, expired or none.
    pub fn start(w: &World, name: &str, tls: &str) -> Receiver {
        Receiver::start_at(w, name, &next_ip(), tls)
    }

    /// [`Receiver::start`] on a given address.
    pub fn start_at(w: &World, name: &str, ip: &str, tls: &str) -> Receiver {
        let ip = ip.to_owned();
        let out = std::process::Command::new(testworld())
            .arg("receiver")
            .arg(&w.dir)
            .args([name, &ip, tls])
            .output()
            .unwrap();
        assert!(out.status.success(), "receiver: {}", String::from_utf8_lossy(&out.stderr));
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Receiver { name: name.to_owned(), ip, dir }
    }

    /// The A record line for the zone.
    pub fn a_record(&self) -> String {
        format!("{} A {}\n", self.name, self.ip)
    }

    /// Messages in its mailbox.
    pub fn received(&self) -> usize {
        std::fs::read_to_string(self.dir.join("mailbox"))
            .map(|s| s.lines().filter(|l| l.starts_with("From ")).count())
            .unwrap_or(0)
    }

    /// Messages in its mailbox once it holds `n` (or 10 s have passed): a receiver stores a
    /// message in its own delivery process, after it has answered the sender.
    pub fn received_after_waiting_for(&self, n: usize) -> usize {
        let start = std::time::Instant::now();
        while self.received() < n && start.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.received()
    }

    /// SMTP connections it has accepted.
    pub fn connections(&self) -> usize {
        self.log().lines().filter(|l| l.contains("SMTP connection from")).count()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/mainlog")).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("exim.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // SAFETY: signalling the receiver daemon this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// The sending Exim, configured from the shipped exim-config/ files.
pub struct Sender {
    pub dir: PathBuf,
    pub conf: PathBuf,
    /// The library's configuration file (extra keys via [`Sender::mta_sts_config`]).
    pub toml: PathBuf,
    /// Send with the validating resolver (DNSSEC, for DANE).
    pub validating: bool,
}

impl Sender {
    pub fn new(w: &World, tag: &str) -> Sender {
        let dir = w.scratch(tag).join("sender");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("exim-config");
        let out = std::process::Command::new(testworld())
            .arg("sender")
            .arg(&dir)
            .arg(&shipped)
            .arg(lib_path())
            .output()
            .unwrap();
        assert!(out.status.success(), "sender: {}", String::from_utf8_lossy(&out.stderr));
        let conf = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Sender { toml: dir.join("mta-sts.toml"), dir, conf, validating: false }
    }

    /// Appends lines to the library's configuration file.
    pub fn mta_sts_config(&self, extra: &str) {
        let mut text = std::fs::read_to_string(&self.toml).unwrap();
        text.push_str(extra);
        std::fs::write(&self.toml, text).unwrap();
    }

    /// Submits one message to `rcpt` and delivers it at once (`-odi`); returns the main
    /// log lines about `rcpt`.
    pub fn send(&self, rcpt: &str) -> String {
        self.submit(rcpt, "-odi");
        self.log().lines().filter(|l| l.contains(rcpt)).collect::<Vec<_>>().join("\n")
    }

    /// Submits one message to `rcpt` and only queues it (`-odq`).
    pub fn enqueue(&self, rcpt: &str) {
        self.submit(rcpt, "-odq");
    }

    fn submit(&self, rcpt: &str, mode: &str) {
        use std::io::Write;
        let mut cmd = if self.validating {
            validating(&debian_exim())
        } else {
            std::process::Command::new(debian_exim())
        };
        let mut child = cmd
            .arg("-C")
            .arg(&self.conf)
            .args([mode, "-f", "sender@origin.test", rcpt])
            .env("EXIM_MTA_STS_CONFIG", &self.toml)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("Subject: to {rcpt}\n\nhello {rcpt}\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/mainlog")).unwrap_or_default()
    }

    /// Points the configuration's `MTA_STS_LIB` at `lib`.
    pub fn set_lib(&self, lib: &Path) {
        let text = std::fs::read_to_string(&self.conf).unwrap();
        let lines: Vec<String> = text
            .lines()
            .map(|l| match l.starts_with("MTA_STS_LIB = ") {
                true => format!("MTA_STS_LIB = {}", lib.display()),
                false => l.to_owned(),
            })
            .collect();
        std::fs::write(&self.conf, lines.join("\n") + "\n").unwrap();
    }

    /// Messages in the queue.
    pub fn queued(&self) -> usize {
        let out =
            std::process::Command::new(debian_exim()).arg("-C").arg(&self.conf).arg("-bpc").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// One forced queue run (`-qff`: retry times ignored), waited for.
    pub fn queue_run(&self) {
        self.queue_run_with("-qff");
    }

    /// A queue run with option `opt` (`-qqff`: a two-stage run, which routes every message
    /// first and then carries messages for one host over one connection), waited for.
    pub fn queue_run_with(&self, opt: &str) {
        let st = std::process::Command::new(debian_exim())
            .arg("-C")
            .arg(&self.conf)
            .arg(opt)
            .env("EXIM_MTA_STS_CONFIG", &self.toml)
            .status()
            .unwrap();
        assert!(st.success());
    }
}
