//! Workload drivers. Each runs in its own process (`cargo xtask bench --worker KIND ...`, the
//! xtask binary re-executed), so that the bench can take the CPU time of exactly the workload
//! and of everything it caused (`wait4` rusage: the worker plus the children it reaped). Kernel
//! programs run in the context of the task that hits the hook, so their cost is in that figure.
//!
//! Each driver counts what it did and prints one `RESULT key=value ...` line on stdout.

use std::{
    ffi::CString,
    io::Write as _,
    net::TcpListener,
    os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _, io::AsRawFd as _, net::UnixListener},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use anyhow::{Context as _, bail};

/// A worker's report: `key=value` pairs.
pub type Report = Vec<(String, f64)>;

/// Report key: the CPU time of the typical operation, ns: the median over the operations of
/// what each cost the task that made it (and, for a fork+exec, the child it reaped). A median
/// over thousands of operations is hardly moved by the bursts of other work a shared machine
/// has, which move a run's total CPU time by several percent.
pub const TYPICAL_NS: &str = "typical_ns";

fn print_report(report: &Report) {
    let line: Vec<String> = report.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT {}", line.join(" "));
    let _ = std::io::stdout().flush();
}

pub fn parse_report(stdout: &str) -> Option<Report> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "))?;
    Some(
        line.split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect(),
    )
}

pub fn get(report: &Report, key: &str) -> f64 {
    report.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap_or(0.0)
}

/// `--worker KIND ARGS...`
pub fn run_worker(args: &[String]) -> anyhow::Result<()> {
    let arg = |i: usize| args.get(i).cloned().with_context(|| format!("worker argument {i} missing: {args:?}"));
    let report = match arg(0)?.as_str() {
        "exec" => exec_storm(Path::new(&arg(1)?), arg(2)?.parse()?, arg(3)?.parse()?)?,
        "exec-chain" => exec_chain(Path::new(&arg(1)?), arg(2)?.parse()?, arg(3)?.parse()?, arg(4)?.parse()?)?,
        "connect" => connect_storm(arg(1)?.parse()?)?,
        "syscall" => syscall_loop(arg(1)?.parse()?),
        "oom" => oom_storm(Path::new(&arg(1)?), arg(2)?.parse()?)?,
        "oom-latency" => oom_latency(Path::new(&arg(1)?), arg(2)?.parse()?, &arg(3)?)?,
        other => bail!("unknown worker {other}"),
    };
    print_report(&report);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// exec storm

/// A complete static x86_64 ELF executable of 129 bytes: `exit_group(0)`. The cheapest
/// possible exec, so the probes' share of an exec is as large as it can be (the worst case).
fn tiny_true_elf() -> Vec<u8> {
    tiny_elf(&[0xb8, 0xe7, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05]) // mov eax,231; xor edi,edi; syscall
}

/// A static x86_64 ELF of 168 bytes that re-executes itself: run with argv `[p, p, ..., p]`
/// (k copies of its own path), it calls `execve(argv[1], &argv[1], NULL)` until one argument
/// is left, then `exit_group(0)` (`exit_group(1)` if an execve fails). k execs, one process:
/// no fork, exit or wait in between, the fastest way to make execs (the 20k execs/s target).
fn exec_chain_elf() -> Vec<u8> {
    tiny_elf(&[
        0x48, 0x8b, 0x04, 0x24, // mov rax, [rsp]          ; argc
        0x48, 0x83, 0xf8, 0x02, // cmp rax, 2
        0x7c, 0x1d, //             jl done
        0x48, 0x8d, 0x74, 0x24, 0x10, // lea rsi, [rsp+16]  ; &argv[1]
        0x48, 0x8b, 0x3e, //       mov rdi, [rsi]           ; argv[1]
        0x31, 0xd2, //             xor edx, edx             ; envp = NULL
        0xb8, 0x3b, 0x00, 0x00, 0x00, // mov eax, 59        ; execve
        0x0f, 0x05, //             syscall                  ; returns only on failure
        0xbf, 0x01, 0x00, 0x00, 0x00, // mov edi, 1
        0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231       ; exit_group(1)
        0x0f, 0x05, //             syscall
        0x31, 0xff, //             done: xor edi, edi
        0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231       ; exit_group(0)
        0x0f, 0x05, //             syscall
    ])
}

/// A static x86_64 ELF: one read+execute segment holding the headers and `code` (the entry).
fn tiny_elf(code: &[u8]) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let size = 64 + 56 + code.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86_64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + 120).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    elf.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    elf.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // phnum
    elf.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // R+X
    elf.extend_from_slice(&0u64.to_le_bytes()); // offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // paddr
    elf.extend_from_slice(&size.to_le_bytes()); // filesz
    elf.extend_from_slice(&size.to_le_bytes()); // memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    elf.extend_from_slice(code);
    elf
}

/// The binary the exec storm runs: our 129-byte ELF on x86_64, else busybox `true`.
/// Returns the program and its arguments.
pub fn exec_target(dir: &Path) -> anyhow::Result<(PathBuf, Vec<String>)> {
    if cfg!(target_arch = "x86_64") {
        let path = dir.join("true");
        std::fs::write(&path, tiny_true_elf()).with_context(|| format!("write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        if Command::new(&path).status().is_ok_and(|s| s.success()) {
            return Ok((path, vec![]));
        }
    }
    for busybox in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(busybox).exists() {
            return Ok((PathBuf::from(busybox), vec!["true".into()]));
        }
    }
    bail!("no tiny static binary to exec: install busybox-static")
}

/// The program of the exec chain (x86_64 only).
pub fn exec_chain_target(dir: &Path) -> anyhow::Result<PathBuf> {
    if !cfg!(target_arch = "x86_64") {
        bail!("the exec chain is an x86_64 program");
    }
    let path = dir.join("exec-chain");
    std::fs::write(&path, exec_chain_elf()).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    let p = path.display().to_string();
    match Command::new(&path).args([&p, &p]).status() {
        Ok(s) if s.success() => Ok(path),
        other => bail!("{} does not run: {other:?}", path.display()),
    }
}

/// Runs `program args` to its end `n` times, spread over `threads` threads. Returns how many
/// runs succeeded, how many failed, the wall time in seconds, and the CPU time of each
/// successful run (ns; see [`fork_exec_wait`]).
///
/// Each run is the bare operation: fork, execve, wait4. (std's `Command` spawns through
/// glibc's posix_spawn, whose child resets every signal's action: about 130 more syscalls per
/// run, which would measure glibc rather than fork+exec.)
fn run_many(program: &Path, args: &[&str], n: u64, threads: u64) -> (u64, u64, f64, Vec<u64>) {
    let argv: Vec<CString> = std::iter::once(program.as_os_str().as_bytes())
        .chain(args.iter().map(|a| a.as_bytes()))
        .map(|a| CString::new(a).expect("no NUL in a bench program's path or arguments"))
        .collect();
    let ok = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let threads = threads.max(1);
    let start = Instant::now();
    let costs = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let count = n / threads + u64::from(t < n % threads);
                let (ok, failed, argv) = (&ok, &failed, &argv);
                scope.spawn(move || {
                    let argv: Vec<*const libc::c_char> =
                        argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
                    let mut costs = Vec::with_capacity(count as usize);
                    for _ in 0..count {
                        match fork_exec_wait(&argv) {
                            Some(cost) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                costs.push(cost);
                            }
                            None => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    costs
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("exec worker")).collect()
    });
    (ok.into_inner(), failed.into_inner(), start.elapsed().as_secs_f64(), costs)
}

/// fork, execve `argv[0]` with `argv` and no environment, wait4. When it exited 0, the CPU
/// time the run took (ns): this thread's from fork to the end of wait4, and the child's (its
/// rusage, whose user + system time is its exact run time, in us). Kernel programs run in the
/// task that hits their hook, so theirs is in it.
fn fork_exec_wait(argv: &[*const libc::c_char]) -> Option<u64> {
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: argv is a NULL-terminated array of live C strings. The child of a multi-threaded
    // process only calls execve and _exit, both async-signal-safe.
    unsafe {
        let began = thread_cpu_ns();
        let pid = libc::fork();
        if pid == 0 {
            libc::execve(argv[0], argv.as_ptr(), env.as_ptr());
            libc::_exit(127);
        }
        if pid < 0 {
            return None;
        }
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        while libc::wait4(pid, &mut status, 0, &mut usage) < 0 {
            if os_err() != libc::EINTR {
                return None;
            }
        }
        let own = thread_cpu_ns() - began;
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        let child = (us(usage.ru_utime) + us(usage.ru_stime)) * 1000;
        (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0).then_some(own + child)
    }
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The median of `costs` (ns).
fn median_ns(costs: &[u64]) -> f64 {
    super::stats::median(&costs.iter().map(|&c| c as f64).collect::<Vec<_>>())
}

/// `n` execs in chains of `length` (one process each), on `threads` threads.
fn exec_chain(program: &Path, n: u64, threads: u64, length: u64) -> anyhow::Result<Report> {
    let length = length.max(1);
    let chains = n.div_ceil(length);
    let path = program.display().to_string();
    // argv[0] is the program's path too: `length` copies in all.
    let argv: Vec<&str> = std::iter::repeat_n(path.as_str(), length as usize - 1).collect();
    let (ok, failed, wall, _) = run_many(program, &argv, chains, threads);
    Ok(vec![
        ("ops".into(), (chains * length) as f64),
        ("chains".into(), chains as f64),
        ("chains_ok".into(), ok as f64),
        ("chains_failed".into(), failed as f64),
        ("exec_ok".into(), (ok * length) as f64),
        ("wall_s".into(), wall),
    ])
}

fn exec_storm(program: &Path, n: u64, threads: u64) -> anyhow::Result<Report> {
    let args: &[&str] = if program.ends_with("busybox") { &["true"] } else { &[] };
    let (ok, failed, wall, costs) = run_many(program, args, n, threads);
    Ok(vec![
        ("ops".into(), n as f64),
        (TYPICAL_NS.into(), median_ns(&costs)),
        ("exec_ok".into(), ok as f64),
        ("exec_failed".into(), failed as f64),
        ("wall_s".into(), wall),
    ])
}

// ---------------------------------------------------------------------------------------------
// syscall loop

/// `n` getppid calls: a syscall no program of ours hooks. What it costs more with probes
/// attached is the price every process on the node pays per syscall.
fn syscall_loop(n: u64) -> Report {
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    vec![("ops".into(), n as f64), ("wall_s".into(), start.elapsed().as_secs_f64())]
}

// ---------------------------------------------------------------------------------------------
// connect storm

fn os_err() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// One connect of a fresh socket to `addr`; returns 0 or the errno. TCP sockets close with
/// SO_LINGER 0 (RST), so no TIME_WAIT piles up and no ephemeral port runs out.
fn connect_once(family: i32, addr: *const libc::sockaddr, len: libc::socklen_t) -> i32 {
    // SAFETY: plain syscalls on a socket we own; addr points to a live sockaddr of `len` bytes.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return -os_err();
        }
        if family == libc::AF_INET {
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        let rc = libc::connect(fd, addr, len);
        let err = if rc == 0 { 0 } else { os_err() };
        libc::close(fd);
        err
    }
}

fn sockaddr_in(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
        sin_zero: [0; 8],
    }
}

fn sockaddr_un(path: &Path) -> anyhow::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        bail!("unix socket path too long: {}", path.display());
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = (size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    Ok((addr, len))
}

/// Raises a listening socket's backlog to the system's maximum (std listens with 128).
fn deep_backlog(fd: i32) {
    // SAFETY: listen() again on a listening socket only changes its backlog.
    unsafe { libc::listen(fd, 4096) };
}

/// `n` connects, round-robin: loopback TCP to a listening port (succeeds; filtered in the
/// kernel by design), loopback TCP to a closed port (ECONNREFUSED), unix to a listening socket
/// (succeeds; filtered unless watched), unix to a missing path (ENOENT).
fn connect_storm(n: u64) -> anyhow::Result<Report> {
    let dir = std::env::temp_dir().join(format!("nrm-bench-connect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let tcp = TcpListener::bind("127.0.0.1:0")?;
    deep_backlog(tcp.as_raw_fd());
    let open_port = tcp.local_addr()?.port();
    let closed_port = {
        let probe = TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let unix_path = dir.join("listening.sock");
    let unix = UnixListener::bind(&unix_path)?;
    deep_backlog(unix.as_raw_fd());
    let missing = dir.join("missing.sock");
    // Acceptors: take and drop every connection so that backlogs never fill.
    std::thread::spawn(move || {
        for stream in tcp.incoming() {
            drop(stream);
        }
    });
    std::thread::spawn(move || {
        for stream in unix.incoming() {
            drop(stream);
        }
    });

    let open = sockaddr_in(open_port);
    let closed = sockaddr_in(closed_port);
    let (unix_ok, unix_ok_len) = sockaddr_un(&unix_path)?;
    let (unix_missing, unix_missing_len) = sockaddr_un(&missing)?;
    let in_len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let mut counts = [[0u64; 2]; 4]; // [kind][ok, failed]
    let mut costs: [Vec<u64>; 4] = Default::default();
    let mut unexpected = 0u64;
    let start = Instant::now();
    for i in 0..n {
        let kind = (i % 4) as usize;
        let began = thread_cpu_ns();
        let err = match kind {
            0 => connect_once(libc::AF_INET, (&raw const open).cast(), in_len),
            1 => connect_once(libc::AF_INET, (&raw const closed).cast(), in_len),
            2 => connect_once(libc::AF_UNIX, (&raw const unix_ok).cast(), unix_ok_len),
            _ => connect_once(libc::AF_UNIX, (&raw const unix_missing).cast(), unix_missing_len),
        };
        costs[kind].push(thread_cpu_ns() - began);
        counts[kind][usize::from(err != 0)] += 1;
        let expected_ok = kind == 0 || kind == 2;
        if expected_ok != (err == 0) {
            unexpected += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    // The operation is the mix of the four kinds: the mean of their medians.
    let typical = costs.iter().map(|c| median_ns(c)).sum::<f64>() / 4.0;
    Ok(vec![
        ("ops".into(), n as f64),
        (TYPICAL_NS.into(), typical),
        ("tcp_ok".into(), counts[0][0] as f64),
        ("tcp_open_failed".into(), counts[0][1] as f64),
        ("tcp_refused".into(), counts[1][1] as f64),
        ("tcp_closed_ok".into(), counts[1][0] as f64),
        ("unix_ok".into(), counts[2][0] as f64),
        ("unix_listening_failed".into(), counts[2][1] as f64),
        ("unix_missing".into(), counts[3][1] as f64),
        ("unexpected".into(), unexpected as f64),
        ("wall_s".into(), wall),
    ])
}

// ---------------------------------------------------------------------------------------------
// OOM storm

/// Forks a child that joins the memory cgroup (`procs` is its `cgroup.procs`) and touches
/// anonymous memory until the memcg OOM killer kills it. Returns the wait status.
fn one_oom(procs: &CString) -> i32 {
    // SAFETY: the worker is single-threaded at this point; the child only makes raw syscalls
    // (open, write, mmap, page touches, _exit) before it dies.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(2);
            }
            libc::close(fd);
            const CHUNK: usize = 1 << 20;
            for _ in 0..1024 {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    CHUNK,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p == libc::MAP_FAILED {
                    libc::_exit(4);
                }
                let mut off = 0;
                while off < CHUNK {
                    std::ptr::write_volatile(p.cast::<u8>().add(off), 1);
                    off += 4096;
                }
            }
            libc::_exit(1); // 1 GiB and still alive: the limit did not hold.
        }
        if pid < 0 {
            return -1;
        }
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 && os_err() == libc::EINTR {}
        status
    }
}

fn is_sigkill(status: i32) -> bool {
    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL
}

fn procs_path(memcg: &Path) -> anyhow::Result<CString> {
    Ok(CString::new(memcg.join("cgroup.procs").as_os_str().as_bytes())?)
}

fn oom_storm(memcg: &Path, n: u64) -> anyhow::Result<Report> {
    let procs = procs_path(memcg)?;
    let (mut killed, mut other) = (0u64, 0u64);
    let start = Instant::now();
    for _ in 0..n {
        if is_sigkill(one_oom(&procs)) {
            killed += 1;
        } else {
            other += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    Ok(vec![
        ("ops".into(), n as f64),
        ("oom_killed".into(), killed as f64),
        ("not_killed".into(), other as f64),
        ("wall_s".into(), wall),
    ])
}

/// OOM kill to metric: one OOM kill at a time; from the moment the victim is reaped (the kill
/// has happened: `waitpid` returned) to the first `/metrics` scrape that shows it, for
/// `events_total{kind="oom_kill"}` and for `kills_total{cause="oom"}`. Prints the samples.
fn oom_latency(memcg: &Path, n: u64, address: &str) -> anyhow::Result<Report> {
    let procs = procs_path(memcg)?;
    let scrape = || -> anyhow::Result<(f64, f64)> {
        let m = super::daemon::scrape(address)?;
        Ok((m.sum("node_runtime_monitor_events_total", &[("kind", "oom_kill")]), m.sum("node_runtime_monitor_kills_total", &[("cause", "oom")])))
    };
    let mut events_us = Vec::new();
    let mut kills_us = Vec::new();
    let mut timeouts = 0u64;
    for _ in 0..n {
        let (events_before, kills_before) = scrape()?;
        let status = one_oom(&procs);
        let reaped = Instant::now();
        if !is_sigkill(status) {
            timeouts += 1;
            continue;
        }
        let (mut events_at, mut kills_at) = (None, None);
        while (events_at.is_none() || kills_at.is_none()) && reaped.elapsed().as_secs() < 5 {
            let (events, kills) = scrape()?;
            let now = reaped.elapsed().as_secs_f64() * 1e6;
            if events_at.is_none() && events > events_before {
                events_at = Some(now);
            }
            if kills_at.is_none() && kills > kills_before {
                kills_at = Some(now);
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        match (events_at, kills_at) {
            (Some(e), Some(k)) => {
                events_us.push(e);
                kills_us.push(k);
            }
            _ => timeouts += 1,
        }
    }
    let join = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(",");
    println!("SAMPLES events_us={} kills_us={}", join(&events_us), join(&kills_us));
    Ok(vec![("ops".into(), n as f64), ("samples".into(), events_us.len() as f64), ("timeouts".into(), timeouts as f64)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain really re-executes itself: it ends with status 0 after k execs, and with
    /// status 1 when the next exec fails (a path that does not exist).
    #[test]
    fn the_exec_chain_runs_to_its_end_and_reports_a_failed_exec() {
        if !cfg!(target_arch = "x86_64") {
            return;
        }
        let dir = std::env::temp_dir().join(format!("nrm-exec-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let program = exec_chain_target(&dir).expect("the chain runs");
        let p = program.display().to_string();
        let report = exec_chain(&program, 50, 2, 10).expect("chain");
        assert_eq!((get(&report, "ops"), get(&report, "chains_ok"), get(&report, "chains_failed")), (50.0, 5.0, 0.0));
        let status = Command::new(&program).args([&p, &p, "/nonexistent/exec-chain"]).status().expect("spawn");
        assert_eq!(status.code(), Some(1), "a failed execve exits 1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
