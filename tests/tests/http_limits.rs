//! The HTTP server under hostile clients, for real: ten thousand connections held open from ten
//! addresses (127.0.0.2 to 127.0.0.11), half of them idle and half sending a request's first
//! line and then nothing (slowloris), while the real Prometheus scrapes the daemon every second
//! from 127.0.0.1 and a scrape is in progress all through the flood's start (its password's
//! bcrypt check takes seconds). That scrape is answered in full, every one of Prometheus's
//! succeeds, the daemon keeps answering, keeps its connections and its memory bounded (under the
//! DaemonSet's 128 MiB limit), and counts the connections it evicted.

use std::{
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use monitor_tests::{
    daemon::{Daemon, http_get_with, metric_value},
    prometheus::Prometheus,
};

/// `Authorization` of Prometheus and of the test's own requests: `prometheus:flood-test`.
const PROMETHEUS_AUTH: &str = "Authorization: Basic cHJvbWV0aGV1czpmbG9vZC10ZXN0\r\n";
/// `Authorization` of the scrape in progress during the flood: `scraper:in-flight`, whose hash
/// costs 2^14 rounds (seconds of work for the server, then remembered).
const SCRAPER_AUTH: &str = "Authorization: Basic c2NyYXBlcjppbi1mbGlnaHQ=\r\n";

const CLIENTS: usize = 10_000;
/// The flood's source addresses: 127.0.0.2 and up (Prometheus and the test's own requests come
/// from 127.0.0.1).
const FLOOD_ADDRESSES: u8 = 10;
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

/// A connection to `to` from the loopback address `from`.
fn connect_from(runtime: &tokio::runtime::Runtime, from: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::from((from, 0))).ok()?;
        let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await.ok()?.ok()?;
        let stream = stream.into_std().ok()?;
        stream.set_nonblocking(false).ok()?;
        Some(stream)
    })
}

#[test]
fn ten_thousand_idle_and_slow_clients_cannot_lock_out_a_scraper() {
    raise_fd_limit(CLIENTS as u64 + 1024);
    let config = std::env::temp_dir().join(format!("nrm-http-limits-{}.yml", std::process::id()));
    let hashes = (bcrypt::hash("flood-test", 4).expect("bcrypt"), bcrypt::hash("in-flight", 14).expect("bcrypt"));
    std::fs::write(&config, format!("basic_auth_users:\n  prometheus: '{}'\n  scraper: '{}'\n", hashes.0, hashes.1)).expect("web config");
    let daemon = Daemon::start(&[&format!("--web.config.file={}", config.display())]);
    let get = |path: &str| http_get_with(daemon.address, path, PROMETHEUS_AUTH).filter(|(status, _)| *status == 200).map(|(_, body)| body);
    let pid = daemon.child.id();
    let prometheus = Prometheus::start_scraping("nrm-flood", &[daemon.address], "basic_auth:\n  username: prometheus\n  password: flood-test\n", &[]);
    prometheus.wait_for("up{job=\"nrm-flood\"} == 1", Duration::from_secs(30));

    // A scrape in progress when the flood starts, from Prometheus's address.
    let scrape_done = Arc::new(AtomicBool::new(false));
    let in_flight = std::thread::spawn({
        let (address, done) = (daemon.address, scrape_done.clone());
        move || {
            let started = Instant::now();
            let answer = http_get_with(address, "/metrics", SCRAPER_AUTH);
            done.store(true, Ordering::Release);
            (answer, started.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut opened_during_scrape = None;
    let flood_started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut held = Vec::with_capacity(CLIENTS);
    let mut served = 0;
    let mut peak_rss = 0;
    for i in 0..CLIENTS {
        let from = Ipv4Addr::new(127, 0, 0, 2 + (i % FLOOD_ADDRESSES as usize) as u8);
        let Some(mut stream) = connect_from(&runtime, from, daemon.address) else { continue };
        if i % 2 == 1 {
            // A request that never ends: the header timeout closes it.
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        }
        held.push(stream);
        if opened_during_scrape.is_none() && scrape_done.load(Ordering::Acquire) {
            opened_during_scrape = Some(held.len());
        }
        if i % 2_000 == 1_999 {
            // A scraper is served in the middle of the flood.
            assert!(daemon.get("/healthz").is_some(), "/healthz not answered after {} clients", i + 1);
            assert!(get("/metrics").is_some_and(|m| m.trim_end().ends_with("# EOF")));
            served += 1;
            peak_rss = peak_rss.max(rss_bytes(pid));
        }
    }
    assert!(held.len() >= CLIENTS * 9 / 10, "only {} of {CLIENTS} connections were made", held.len());
    assert_eq!(served, CLIENTS / 2_000);
    // The total cap (256) holds, whatever the addresses.
    // /metrics is encoded at most once a second: the figures after the flood are awaited.
    let (mut open, mut evicted) = (f64::MAX, 0.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while open > 256.0 || evicted < (held.len() - 256) as f64 {
        assert!(Instant::now() < deadline, "connections open {open} (the cap is 256), evicted {evicted} of {}", held.len());
        std::thread::sleep(Duration::from_millis(200));
        let metrics = get("/metrics").expect("metrics after the flood, every client still connected");
        open = metric_value(&metrics, "node_runtime_monitor_http_connections_open", &[]).expect("open gauge");
        evicted = metric_value(&metrics, "node_runtime_monitor_http_connections_evicted_total", &[]).expect("evicted counter");
    }
    peak_rss = peak_rss.max(rss_bytes(pid));
    assert!(peak_rss < MEMORY_LIMIT, "resident memory {} MiB under the flood", peak_rss >> 20);
    eprintln!("{} clients held, {evicted} evicted, {open} open, peak RSS {} MiB", held.len(), peak_rss >> 20);

    // The scrape in progress was answered in full, while connections past the cap came in.
    let (answer, took) = in_flight.join().expect("scrape thread");
    let (status, body) = answer.expect("the scrape in progress was cut");
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "a truncated scrape: {} bytes", body.len());
    let opened = opened_during_scrape.unwrap_or(held.len());
    assert!(opened > 512, "the scrape ({took:?}) ended before the cap was passed twice ({opened} connections): raise its hash's cost");
    eprintln!("a scrape in progress for {took:?} while {opened} connections came in: answered in full");

    // Prometheus scraped all along, every scrape a success: no eviction cut one.
    std::thread::sleep(Duration::from_secs(2));
    let window = flood_started.elapsed().as_secs() + 2;
    let scrapes = prometheus.query(&format!("count_over_time(up{{job=\"nrm-flood\"}}[{window}s])"));
    let scrapes: f64 = scrapes[0]["value"][1].as_str().and_then(|v| v.parse().ok()).expect("scrape count");
    assert!(scrapes >= (window as f64 / 2.0), "{scrapes} scrapes in {window} s");
    let failed = prometheus.query(&format!("min_over_time(up{{job=\"nrm-flood\"}}[{window}s]) < 1"));
    assert!(failed.is_empty(), "a scrape failed during the flood ({scrapes} scrapes in {window} s): {failed:?}");
    eprintln!("{scrapes} scrapes by Prometheus during the flood ({window} s), all up");

    // Every connection the clients close is released.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = metric_value(&get("/metrics").unwrap_or_default(), "node_runtime_monitor_http_connections_open", &[]);
        // This request's connection and Prometheus's.
        if open.is_some_and(|o| o <= 2.0) {
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
    assert!(get("/findings").is_some());
    let _ = std::fs::remove_file(&config);
    assert_eq!(daemon.stop(), Some(0));
}
