//! TLS and authentication of the HTTP server, for real: certificates made by the `openssl`
//! command (a CA, the server's and a scraper's), the daemon started with `--web.config.file`
//! (the exporter-toolkit format, its paths relative to the file), the real Prometheus scraping
//! it over HTTPS with a client certificate and basic auth, and `curl` for what must be refused.
//! A renewed certificate is served without a restart. A configuration the daemon does not
//! implement stops it at start, naming the key.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use monitor_tests::{
    daemon::{Daemon, binary, http_get},
    prometheus::Prometheus,
};

const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse battery staple";

/// A temporary directory with a CA, a server certificate for 127.0.0.1 and a client
/// certificate, all signed by the CA (P-256 keys, PKCS#8 PEM as `openssl` writes them).
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nrm-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pki dir");
        let pki = Self { dir };
        pki.openssl(&[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=nrm test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pki.leaf("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
        pki.leaf("client", "subjectAltName=DNS:prometheus\nextendedKeyUsage=clientAuth\n");
        // A client certificate no CA of the test signed.
        pki.openssl(&[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "stranger.key", "-out",
            "stranger.pem", "-days", "2", "-subj", "/CN=stranger", "-addext", "extendedKeyUsage=clientAuth",
        ]);
        pki
    }

    fn leaf(&self, name: &str, extensions: &str) {
        std::fs::write(self.dir.join(format!("{name}.ext")), format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"))
            .expect("extensions");
        let (key, csr, pem, ext) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        self.openssl(&[
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-out", &pem,
            "-extfile", &ext,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(&self.dir).output().expect("openssl (Debian package openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes the web configuration file `name` into the directory.
    fn web_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("web config");
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What `curl` got: its exit code, the status and headers (lower-cased names) and the body.
struct Answer {
    exit: i32,
    status: u16,
    head: String,
    body: String,
}

/// `curl` over HTTPS to the daemon, trusting the test CA, with `extra` arguments.
fn curl(pki: &Pki, daemon: &Daemon, path: &str, extra: &[&str]) -> Answer {
    let url = format!("https://{}{path}", daemon.address);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "-", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(extra)
        .arg(&url)
        .output()
        .expect("curl (Debian package curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Answer { exit: out.status.code().unwrap_or(-1), status, head: head.to_ascii_lowercase(), body: body.to_string() }
}

fn with_client_cert(pki: &Pki) -> Vec<String> {
    vec!["--cert".into(), pki.path("client.pem").display().to_string(), "--key".into(), pki.path("client.key").display().to_string()]
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 10).expect("bcrypt")
}

#[test]
fn prometheus_scrapes_over_tls_with_a_client_certificate_and_basic_auth() {
    let pki = Pki::new("mtls");
    // Relative paths: the file's directory's, as exporter-toolkit takes them.
    let config = pki.web_config(
        "web-config.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  \
             client_ca_file: ca.pem\n  min_version: TLS12\nbasic_auth_users:\n  {USER}: '{}'\nhttp_server_config:\n  headers:\n    \
             X-Content-Type-Options: nosniff\n",
            bcrypt_hash(PASSWORD)
        ),
    );
    let flag = format!("--web.config.file={}", config.display());
    let client = with_client_cert(&pki);
    let client: Vec<&str> = client.iter().map(String::as_str).collect();
    let daemon = Daemon::start_until(Command::new(binary()), &[&flag], |daemon| curl(&pki, daemon, "/healthz", &client).status == 200);

    // The real Prometheus, as a scrape config would say it.
    let settings = format!(
        "scheme: https\nbasic_auth:\n  username: {USER}\n  password: '{PASSWORD}'\ntls_config:\n  ca_file: {}\n  cert_file: {}\n  key_file: {}\n",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display()
    );
    let prometheus = Prometheus::start_scraping("nrm-tls", &[daemon.address], &settings, &[]);
    prometheus.wait_for("up{job=\"nrm-tls\"} == 1", Duration::from_secs(60));
    let info = prometheus.wait_for("node_runtime_monitor_build_info{job=\"nrm-tls\"}", Duration::from_secs(30));
    assert_eq!(info.len(), 1, "{info:?}");
    let targets = prometheus.api("/api/v1/targets");
    let target = &targets["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["scrapeUrl"], format!("https://{}/metrics", daemon.address));

    // curl, with what Prometheus has: served, with the configured header.
    let user = format!("{USER}:{PASSWORD}");
    let ok = curl(&pki, &daemon, "/metrics", &[&client[..], &["-u", user.as_str()][..]].concat());
    assert_eq!(ok.status, 200, "exit {} {}", ok.exit, ok.head);
    assert!(ok.body.trim_end().ends_with("# EOF"));
    assert!(ok.head.contains("x-content-type-options: nosniff"), "{}", ok.head);

    // A wrong password, and none: 401 with the challenge, and the header still set.
    let no_auth: Vec<&str> = Vec::new();
    for auth in [vec!["-u", "prometheus:wrong"], vec!["-u", "nobody:wrong"], no_auth] {
        let refused = curl(&pki, &daemon, "/metrics", &[&client[..], &auth].concat());
        assert_eq!(refused.status, 401, "{auth:?}: exit {} {}", refused.exit, refused.head);
        assert!(refused.head.contains("www-authenticate: basic"), "{}", refused.head);
        assert!(!refused.body.contains("node_runtime_monitor"));
    }
    let findings = curl(&pki, &daemon, "/findings", &client);
    assert_eq!(findings.status, 401, "/findings needs the password too");
    // /healthz needs no password (the kubelet's probes have none), but the client certificate.
    assert_eq!(curl(&pki, &daemon, "/healthz", &client).status, 200);

    // No client certificate: the handshake fails, nothing is served.
    let anonymous = curl(&pki, &daemon, "/healthz", &["-u", user.as_str()]);
    assert_eq!(anonymous.status, 0, "served without a client certificate: {}", anonymous.head);
    assert_ne!(anonymous.exit, 0);
    // A client certificate the CA did not sign: refused as well.
    let (stranger_pem, stranger_key) = (pki.path("stranger.pem").display().to_string(), pki.path("stranger.key").display().to_string());
    let stranger = curl(&pki, &daemon, "/healthz", &["--cert", &stranger_pem, "--key", &stranger_key]);
    assert_eq!(stranger.status, 0, "served a certificate that is not a client's: {}", stranger.head);

    // Plain HTTP to the TLS port: no HTTP answer.
    assert_eq!(http_get(daemon.address, "/healthz"), None);
    assert_eq!(http_get(daemon.address, "/metrics"), None);

    // Prometheus is still scraping fine.
    assert!(prometheus.query("up{job=\"nrm-tls\"} == 0").is_empty());
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn tls_without_client_certificates_serves_any_client_that_trusts_the_certificate() {
    let pki = Pki::new("tls");
    let config = pki.web_config("web-config.yml", "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  max_version: TLS13\n");
    let flag = format!("--web.config.file={}", config.display());
    let daemon = Daemon::start_until(Command::new(binary()), &[&flag], |daemon| curl(&pki, daemon, "/healthz", &[]).status == 200);
    let metrics = curl(&pki, &daemon, "/metrics", &[]);
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.trim_end().ends_with("# EOF"));
    // TLS 1.2 and 1.3 both speak.
    assert_eq!(curl(&pki, &daemon, "/healthz", &["--tls-max", "1.2"]).status, 200);
    assert_eq!(curl(&pki, &daemon, "/healthz", &["--tlsv1.3"]).status, 200);
    // A client that does not trust the certificate refuses it (curl without the CA).
    let untrusting = Command::new("curl").args(["-sS", "--max-time", "5"]).arg(format!("https://{}/healthz", daemon.address)).output().expect("curl");
    assert!(!untrusting.status.success());
    assert_eq!(http_get(daemon.address, "/metrics"), None);

    // A renewed certificate (as a Secret's update or cert-manager writes it) is served at the
    // next handshake, without a restart.
    assert!(served_subject(&pki, &daemon).contains("CN = server"), "{}", served_subject(&pki, &daemon));
    pki.leaf("renewed", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    std::fs::copy(pki.path("renewed.key"), pki.path("server.key")).expect("key");
    std::fs::copy(pki.path("renewed.pem"), pki.path("server.pem")).expect("cert");
    assert!(served_subject(&pki, &daemon).contains("CN = renewed"), "{}", served_subject(&pki, &daemon));
    assert_eq!(curl(&pki, &daemon, "/healthz", &[]).status, 200);
    assert_eq!(daemon.stop(), Some(0));
}

/// The subject of the certificate the daemon presents, as `openssl s_client` prints it.
fn served_subject(pki: &Pki, daemon: &Daemon) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &daemon.address.to_string(), "-CAfile"])
        .arg(pki.path("ca.pem"))
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find(|l| l.starts_with("subject=")).unwrap_or("no subject").to_string()
}

/// Runs the daemon with `--web.config.file=config` and returns its exit code and log; it must
/// stop by itself.
fn refused_config(config: &Path) -> (Option<i32>, String) {
    let state = config.with_extension("state");
    let mut child = Command::new(binary())
        .args(["run", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .arg(format!("--web.config.file={}", config.display()))
        .env("NRM_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon kept running with {}", config.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_configuration_the_daemon_does_not_take_stops_it_naming_the_key() {
    let pki = Pki::new("bad");
    for (name, text, expected) in [
        ("unknown-key.yml", "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  cert_fil: x\n", "unknown field `cert_fil`"),
        ("unknown-top.yml", "basic_auth:\n  prometheus: x\n", "unknown field `basic_auth`"),
        ("no-key.yml", "tls_server_config:\n  cert_file: server.pem\n", "missing one of key or key_file"),
        ("ciphers.yml", "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites"),
        ("tls11.yml", "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS11\n", "min_version: TLS11 is not supported"),
        ("unverified.yml", "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n", "RequireAnyClientCert is not supported"),
        ("missing-cert.yml", "tls_server_config:\n  cert_file: nothere.pem\n  key_file: server.key\n", "nothere.pem"),
        ("wrong-key.yml", "tls_server_config:\n  cert_file: server.pem\n  key_file: client.key\n", "the key does not fit the certificate"),
        ("plain-password.yml", "basic_auth_users:\n  prometheus: hunter2\n", "basic_auth_users.prometheus: not a bcrypt hash"),
    ] {
        let config = pki.web_config(name, text);
        let (code, log) = refused_config(&config);
        assert_ne!(code, Some(0), "{name}: exit {code:?}\n{log}");
        assert!(log.contains(expected), "{name}: the error does not say {expected:?}:\n{log}");
        assert!(log.contains(&config.display().to_string()), "{name}: the error does not name the file:\n{log}");
        assert!(!log.contains("serving /metrics"), "{name}: served:\n{log}");
    }
    let (code, log) = refused_config(&pki.path("absent.yml"));
    assert_ne!(code, Some(0));
    assert!(log.contains("cannot read the web configuration file"), "{log}");
}
