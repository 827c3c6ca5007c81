//! The hot path through the C ABI (`getmta`/`getmx` as Exim calls them) for a cached
//! policy and a negatively cached domain. The store is filled from a child process first
//! (LMDB forbids opening one file twice in one process), so no DNS or HTTPS is involved:
//! a query would show up as a failure to resolve (there is no DNS server here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
// Calls the exports through their C signature.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use criterion::{Criterion, criterion_group, criterion_main};
use mta_sts_core::cache::{Kind, OwnedEntry, Store};
use mta_sts_core::policy::Mode;
use std::ffi::{CStr, CString, c_uchar};
use std::hint::black_box;
use std::time::Duration;

fn fill(state: &std::path::Path, now: u64) {
    let state = state.to_owned();
    let end = mta_sts_core::sys::run_in_child(Duration::from_secs(10), move || {
        let store = Store::open(&state).unwrap();
        let mut p = OwnedEntry::bare(Kind::Policy, now + 86400, now);
        p.mode = Mode::Enforce;
        // The DANE answer ("no DANE") is fresh too, so calls stay on the hot path.
        p.dane_until = now + 86400;
        p.id = "bench1".into();
        p.mx = "mx1.cached.example:*.mx.cached.example".into();
        store.put("cached.example", &p.view()).unwrap();
        let mut n = OwnedEntry::bare(Kind::NoSts, now + 86400, now);
        n.dane_until = now + 86400;
        store.put("nosts.example", &n.view()).unwrap();
        let mut d = p.clone();
        d.dane = true;
        store.put("dane.example", &d.view()).unwrap();
        // A policy as large as a policy may be (64 KiB as served).
        let mut big = p.clone();
        big.text = format!(
            "version: STSv1\nmode: enforce\nmx: mx1.cached.example\nmax_age: 86400\n{}",
            "# padding padding padding\n".repeat(2500)
        );
        store.put("big.example", &big.view()).unwrap();
        // Bulk: 10 000 other domains, so lookups are not in a one-page tree.
        for i in 0..10_000 {
            let mut q = p.clone();
            q.mx = format!("mx.d{i}.example");
            store.put(&format!("d{i}.example"), &q.view()).unwrap();
        }
        0
    })
    .unwrap();
    assert_eq!(end, mta_sts_core::sys::ChildEnd::Exited(0));
}

fn call(f: exim_mta_sts::ffi::EximDlfunc, args: &[&CStr]) -> usize {
    let mut argv: Vec<*mut c_uchar> = args.iter().map(|a| a.as_ptr() as *mut c_uchar).collect();
    let mut out: *mut c_uchar = std::ptr::null_mut();
    // SAFETY: argv holds valid strings; the exported functions have Exim's signature.
    let rc = unsafe { f(&mut out, argv.len() as i32, argv.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: the library's result buffer.
    unsafe { CStr::from_ptr(out.cast()) }.to_bytes().len()
}

fn hot_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mta-sts.toml");
    std::fs::write(
        &cfg,
        format!(
            "database = \"{0}/shared.mdb\"\nstate = \"{0}/state.mdb\"\nrecheck_interval = 86400\n",
            dir.path().display()
        ),
    )
    .unwrap();
    fill(&dir.path().join("state.mdb"), mta_sts_core::clock::now());
    // SAFETY: single-threaded at this point.
    unsafe { std::env::set_var("EXIM_MTA_STS_CONFIG", &cfg) };

    let getmta: exim_mta_sts::ffi::EximDlfunc = exim_mta_sts::ffi::getmta;
    let getmx: exim_mta_sts::ffi::EximDlfunc = exim_mta_sts::ffi::getmx;
    let cached = CString::new("cached.example").unwrap();
    let upper = CString::new("Cached.Example.").unwrap();
    let nosts = CString::new("nosts.example").unwrap();
    let host = CString::new("a.mx.cached.example").unwrap();
    let d5000 = CString::new("d5000.example").unwrap();
    let dane = CString::new("dane.example").unwrap();
    let big = CString::new("big.example").unwrap();
    // Check the answers once (and open the store) before timing.
    assert_eq!(call(getmta, &[&cached]), "enforce".len());
    assert_eq!(call(getmta, &[&nosts]), "none".len());
    assert_eq!(call(getmta, &[&cached, &host]), 0);
    assert_eq!(call(getmta, &[&dane]), "dane".len());

    let mut g = c.benchmark_group("hot_path");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("getmta cached policy", |b| b.iter(|| call(getmta, &[black_box(&cached)])));
    g.bench_function("getmta cached policy, mixed-case name", |b| {
        b.iter(|| call(getmta, &[black_box(&upper)]))
    });
    g.bench_function("getmta cached policy among 10k", |b| b.iter(|| call(getmta, &[black_box(&d5000)])));
    g.bench_function("getmta negatively cached", |b| b.iter(|| call(getmta, &[black_box(&nosts)])));
    g.bench_function("getmta cached policy of 64 KiB", |b| b.iter(|| call(getmta, &[black_box(&big)])));
    g.bench_function("getmta cached DANE answer", |b| b.iter(|| call(getmta, &[black_box(&dane)])));
    g.bench_function("getmta host form, wildcard match", |b| {
        b.iter(|| call(getmta, &[black_box(&cached), black_box(&host)]))
    });
    g.bench_function("getmx cached policy", |b| b.iter(|| call(getmx, &[black_box(&cached)])));
    g.finish();
    let size = std::fs::metadata(dir.path().join("state.mdb")).unwrap().len();
    eprintln!("state store with 10 003 entries: {} KiB on disk", size / 1024);
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
