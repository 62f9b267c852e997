//! The HTTP server under hostile clients, for real: ten thousand connections held open, half
//! of them idle and half sending a request's first line and then nothing (slowloris). The
//! daemon keeps answering a scraper, keeps its connections and its memory bounded (under the
//! DaemonSet's 128 MiB limit), and counts the connections it evicted.

use std::{
    io::Write as _,
    net::TcpStream,
    time::{Duration, Instant},
};

use monitor_tests::daemon::{Daemon, metric_value};

const CLIENTS: usize = 10_000;
/// The DaemonSet's memory limit.
const MEMORY_LIMIT: u64 = 128 << 20;

fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(wanted);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(limit.rlim_cur >= wanted, "this test needs {wanted} open files, the hard limit is {}", limit.rlim_max);
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[test]
fn ten_thousand_idle_and_slow_clients_cannot_lock_out_a_scraper() {
    raise_fd_limit(CLIENTS as u64 + 1024);
    let daemon = Daemon::start(&[]);
    let pid = daemon.child.id();
    let mut held = Vec::with_capacity(CLIENTS);
    let mut served = 0;
    let mut peak_rss = 0;
    for i in 0..CLIENTS {
        let Ok(mut stream) = TcpStream::connect_timeout(&daemon.address, Duration::from_secs(5)) else { continue };
        if i % 2 == 1 {
            // A request that never ends: the header timeout closes it.
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        }
        held.push(stream);
        if i % 2_000 == 1_999 {
            // A scraper is served in the middle of the flood.
            assert!(daemon.get("/healthz").is_some(), "/healthz not answered after {} clients", i + 1);
            assert!(daemon.get("/metrics").is_some_and(|m| m.trim_end().ends_with("# EOF")));
            served += 1;
            peak_rss = peak_rss.max(rss_bytes(pid));
        }
    }
    assert!(held.len() >= CLIENTS * 9 / 10, "only {} of {CLIENTS} connections were made", held.len());
    assert_eq!(served, CLIENTS / 2_000);
    // /metrics is encoded at most once a second: the figures after the flood are awaited.
    let (mut open, mut evicted) = (f64::MAX, 0.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while open > 257.0 || evicted < (held.len() - 256) as f64 {
        assert!(Instant::now() < deadline, "connections open {open} (the cap is 256, and this scrape), evicted {evicted} of {}", held.len());
        std::thread::sleep(Duration::from_millis(200));
        let metrics = daemon.get("/metrics").expect("metrics after the flood, every client still connected");
        open = metric_value(&metrics, "node_runtime_monitor_http_connections_open", &[]).expect("open gauge");
        evicted = metric_value(&metrics, "node_runtime_monitor_http_connections_evicted_total", &[]).expect("evicted counter");
    }
    peak_rss = peak_rss.max(rss_bytes(pid));
    assert!(peak_rss < MEMORY_LIMIT, "resident memory {} MiB under the flood", peak_rss >> 20);
    eprintln!("{} clients held, {evicted} evicted, {open} open, peak RSS {} MiB", held.len(), peak_rss >> 20);

    // Every connection the clients close is released.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = metric_value(&daemon.get("/metrics").unwrap_or_default(), "node_runtime_monitor_http_connections_open", &[]);
        if open.is_some_and(|o| o <= 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "connections never went down: {open:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A slow client alone is closed by the header timeout (5 s), not kept.
    let mut slow = TcpStream::connect(daemon.address).expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let read = std::io::Read::read(&mut slow, &mut buf);
    assert!(read.is_ok(), "the server closed or answered the slow request: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(14), "closed only after {:?}", started.elapsed());
    assert!(daemon.get("/findings").is_some());
    assert_eq!(daemon.stop(), Some(0));
}
