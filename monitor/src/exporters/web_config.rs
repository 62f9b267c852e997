//! The web configuration file (`--web.config.file`) in the format every Prometheus exporter
//! takes (prometheus/exporter-toolkit's `docs/web-configuration.md`): TLS for the HTTP server
//! (`tls_server_config`), basic authentication with bcrypt hashes (`basic_auth_users`) and
//! security headers (`http_server_config.headers`).
//!
//! Read strictly, as the toolkit reads it: an unknown key, or a key this server does not
//! implement, stops the daemon at start with an error naming it, rather than leaving the
//! operator believing a setting is in force. Relative paths are taken from the file's
//! directory. The certificate and key files are read again when their modification time
//! changes (a renewed Secret is served without a restart); the rest is read once, at start.

use std::{
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use anyhow::{Context as _, anyhow, bail};
use axum::http::{HeaderName, HeaderValue};
use base64::Engine as _;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tokio_rustls::rustls::{
    self, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
    version::{TLS12, TLS13},
};
use tracing::{info, warn};

/// The file as written: every key of the toolkit's format, so that the ones not implemented
/// here are named as such rather than as unknown.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsServerFile>,
    http_server_config: Option<HttpServerFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerFile {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerFile {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The headers `http_server_config.headers` may set, with the values allowed (none listed:
/// any value), as the toolkit allows them.
const EXTRA_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// What the server applies of a web configuration file.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// TLS, when `tls_server_config` is set; plain HTTP otherwise.
    pub tls: Option<Arc<ServerConfig>>,
    /// Basic authentication, when `basic_auth_users` lists users.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebConfig {
    /// Reads and checks the file at `path` (certificates and keys included).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the web configuration file {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).with_context(|| format!("web configuration file {}", path.display()))
    }

    /// Parses a web configuration whose relative paths are taken from `dir`.
    pub fn parse(text: &str, dir: &Path) -> anyhow::Result<Self> {
        // An empty file is a valid, empty configuration (the toolkit's too).
        let file: WebConfigFile = if text.trim().is_empty() { WebConfigFile::default() } else { serde_yaml::from_str(text)? };
        if file.rate_limit.as_ref().is_some_and(|v| !v.is_null()) {
            bail!("rate_limit is not supported by node-runtime-monitor (its server bounds connections and concurrent requests itself); remove it");
        }
        let http = file.http_server_config.unwrap_or_default();
        if http.http2 == Some(true) {
            // The toolkit's default, so in many files: told, not refused.
            info!("http_server_config.http2: the server speaks HTTP/1.1 only");
        }
        let headers = headers(http.headers.unwrap_or_default())?;
        let users = file.basic_auth_users.unwrap_or_default();
        let basic_auth = if users.is_empty() { None } else { Some(Arc::new(BasicAuth::new(users)?)) };
        let tls = match file.tls_server_config {
            Some(tls) if tls.is_enabled() => Some(Arc::new(tls.server_config(dir)?)),
            Some(tls) => {
                tls.reject_unsupported()?;
                None
            }
            None => None,
        };
        Ok(Self { tls, basic_auth, headers })
    }
}

fn headers(configured: BTreeMap<String, String>) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    let mut out = Vec::new();
    for (name, value) in configured {
        let Some((_, allowed)) = EXTRA_HEADERS.iter().find(|(known, _)| *known == name) else {
            let known: Vec<&str> = EXTRA_HEADERS.iter().map(|(n, _)| *n).collect();
            bail!("http_server_config.headers: header {name:?} can not be configured (one of {known:?})");
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            bail!("http_server_config.headers.{name}: {value:?} is not one of {allowed:?}");
        }
        // An empty value leaves the header unset, as in the toolkit.
        if value.is_empty() {
            continue;
        }
        let header_value = HeaderValue::from_str(&value).map_err(|_| anyhow!("http_server_config.headers.{name}: not a valid header value"))?;
        out.push((HeaderName::from_bytes(name.as_bytes())?, header_value));
    }
    Ok(out)
}

/// A path of the file, taken from the file's directory when relative; an empty one is unset.
fn resolve(dir: &Path, path: Option<PathBuf>) -> Option<PathBuf> {
    path.filter(|p| !p.as_os_str().is_empty()).map(|p| if p.is_absolute() { p } else { dir.join(p) })
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

impl TlsServerFile {
    /// Whether TLS is asked for: any of its certificate, key or client settings (the toolkit's rule).
    fn is_enabled(&self) -> bool {
        [&self.cert, &self.key, &self.client_ca, &self.client_auth_type].iter().any(|v| v.as_deref().is_some_and(|v| !v.is_empty()))
            || [&self.cert_file, &self.key_file, &self.client_ca_file].iter().any(|p| p.as_ref().is_some_and(|p| !p.as_os_str().is_empty()))
    }

    /// The toolkit's settings this server does not implement: refused by name rather than ignored.
    fn reject_unsupported(&self) -> anyhow::Result<()> {
        if self.cipher_suites.as_ref().is_some_and(|s| !s.is_empty()) {
            bail!("tls_server_config.cipher_suites is not supported: rustls's own suites apply (TLS 1.3's, and TLS 1.2's ECDHE with AES-GCM or ChaCha20-Poly1305); remove it");
        }
        if self.curve_preferences.as_ref().is_some_and(|c| !c.is_empty()) {
            bail!("tls_server_config.curve_preferences is not supported: rustls's own key exchange groups apply (X25519, P-256, P-384); remove it");
        }
        if self.client_allowed_sans.as_ref().is_some_and(|s| !s.is_empty()) {
            bail!("tls_server_config.client_allowed_sans is not supported: every client certificate the client CA signed is accepted; remove it, or give the scraper a CA of its own");
        }
        Ok(())
    }

    fn server_config(self, dir: &Path) -> anyhow::Result<ServerConfig> {
        self.reject_unsupported()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = versions(self.min_version.as_deref(), self.max_version.as_deref())?;
        let auth_type = non_empty(self.client_auth_type).unwrap_or_else(|| "NoClientCert".to_string());
        let client_auth = match auth_type.as_str() {
            "NoClientCert" => ClientAuth::None,
            "VerifyClientCertIfGiven" => ClientAuth::IfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::Required,
            "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => bail!(
                "tls_server_config.client_auth_type {auth_type} is not supported: it accepts a client certificate without verifying it; use RequireAndVerifyClientCert with client_ca_file"
            ),
            other => bail!(
                "tls_server_config.client_auth_type: invalid value {other:?} (NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            ),
        };
        let certificate = match (resolve(dir, self.cert_file), non_empty(self.cert)) {
            (Some(_), Some(_)) => bail!("tls_server_config: set cert or cert_file, not both"),
            (Some(path), None) => CertSource::File(path),
            (None, Some(pem)) => CertSource::Inline(pem),
            (None, None) => bail!("tls_server_config: missing one of cert or cert_file"),
        };
        let key = match (resolve(dir, self.key_file), non_empty(self.key)) {
            (Some(_), Some(_)) => bail!("tls_server_config: set key or key_file, not both"),
            (Some(path), None) => CertSource::File(path),
            (None, Some(pem)) => CertSource::Inline(pem),
            (None, None) => bail!("tls_server_config: missing one of key or key_file"),
        };

        let client_ca = match (resolve(dir, self.client_ca_file), non_empty(self.client_ca)) {
            (Some(_), Some(_)) => bail!("tls_server_config: set client_ca or client_ca_file, not both"),
            (Some(path), None) => Some(client_roots(&std::fs::read(&path).with_context(|| format!("tls_server_config.client_ca_file {}", path.display()))?)
                .with_context(|| format!("tls_server_config.client_ca_file {}", path.display()))?),
            (None, Some(pem)) => Some(client_roots(pem.as_bytes()).context("tls_server_config.client_ca")?),
            (None, None) => None,
        };
        let verifier = match (client_auth, client_ca) {
            (ClientAuth::None, None) => None,
            (ClientAuth::None, Some(_)) => bail!("tls_server_config: a client CA is configured but client_auth_type is NoClientCert (set RequireAndVerifyClientCert)"),
            (_, None) => bail!("tls_server_config.client_auth_type {auth_type} needs client_ca_file (the CA that signs the scrapers' certificates)"),
            (ClientAuth::Required, Some(roots)) => Some(WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build()?),
            (ClientAuth::IfGiven, Some(roots)) => {
                Some(WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).allow_unauthenticated().build()?)
            }
        };
        let resolver = Arc::new(ReloadingCert::new(certificate, key, provider.clone())?);
        let builder = ServerConfig::builder_with_provider(provider).with_protocol_versions(&versions)?;
        let mut config = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier).with_cert_resolver(resolver),
            None => builder.with_no_client_auth().with_cert_resolver(resolver),
        };
        config.ignore_client_order = self.prefer_server_cipher_suites.unwrap_or(true);
        // HTTP/1.1 only: the server has no HTTP/2 (`http_server_config.http2` is not in force).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// `client_auth_type`s implemented: those that verify the certificate a client presents.
enum ClientAuth {
    None,
    IfGiven,
    Required,
}

/// The protocol versions between `min` (default TLS12) and `max` (default TLS13).
fn versions(min: Option<&str>, max: Option<&str>) -> anyhow::Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    fn rank(key: &str, value: &str) -> anyhow::Result<u8> {
        match value {
            "TLS12" => Ok(2),
            "TLS13" => Ok(3),
            "TLS10" | "TLS11" => bail!("tls_server_config.{key}: {value} is not supported (TLS 1.2 and 1.3 only)"),
            other => bail!("tls_server_config.{key}: unknown TLS version {other:?} (TLS12 or TLS13)"),
        }
    }
    let min = rank("min_version", min.filter(|v| !v.is_empty()).unwrap_or("TLS12"))?;
    let max = rank("max_version", max.filter(|v| !v.is_empty()).unwrap_or("TLS13"))?;
    if min > max {
        bail!("tls_server_config: min_version is above max_version");
    }
    Ok([(2, &TLS12), (3, &TLS13)].into_iter().filter(|(rank, _)| (min..=max).contains(rank)).map(|(_, v)| v).collect())
}

fn client_roots(pem: &[u8]) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.context("not a PEM certificate")?).context("not a CA certificate")?;
    }
    if roots.is_empty() {
        bail!("no certificate in it");
    }
    Ok(Arc::new(roots))
}

/// Where a certificate or key comes from: a file (read again when it changes) or the
/// configuration file itself.
#[derive(Debug)]
enum CertSource {
    File(PathBuf),
    Inline(String),
}

impl CertSource {
    fn read(&self, what: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::File(path) => std::fs::read(path).with_context(|| format!("tls_server_config.{what}_file {}", path.display())),
            Self::Inline(pem) => Ok(pem.clone().into_bytes()),
        }
    }

    fn modified(&self) -> Option<SystemTime> {
        match self {
            Self::File(path) => std::fs::metadata(path).and_then(|m| m.modified()).ok(),
            Self::Inline(_) => None,
        }
    }
}

/// The server's certificate, read again at a handshake when a file's modification time changed
/// (a kubelet-updated Secret, cert-manager's renewal); a file that does not load then keeps the
/// certificate in use and is logged.
#[derive(Debug)]
struct ReloadingCert {
    certificate: CertSource,
    key: CertSource,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    fn new(certificate: CertSource, key: CertSource, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
        let stamps = (certificate.modified(), key.modified());
        let loaded = Arc::new(load_certified_key(&certificate, &key, &provider)?);
        Ok(Self { certificate, key, provider, current: Mutex::new((stamps.0, stamps.1, loaded)) })
    }
}

fn load_certified_key(certificate: &CertSource, key: &CertSource, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(&certificate.read("cert")?)
        .collect::<Result<Vec<_>, _>>()
        .context("tls_server_config: cert is not PEM")?;
    if chain.is_empty() {
        bail!("tls_server_config: no certificate in cert");
    }
    let key = PrivateKeyDer::from_pem_slice(&key.read("key")?).context("tls_server_config: no PEM private key in key")?;
    CertifiedKey::from_der(chain, key, provider).context("tls_server_config: the key does not fit the certificate")
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let stamps = (self.certificate.modified(), self.key.modified());
        let mut current = self.current.lock().ok()?;
        if (current.0, current.1) != stamps {
            match load_certified_key(&self.certificate, &self.key, &self.provider) {
                Ok(loaded) => *current = (stamps.0, stamps.1, Arc::new(loaded)),
                // Keep serving the certificate in use; a Secret's files may change one at a time.
                Err(err) => warn!("TLS certificate not reloaded: {err:#}"),
            }
        }
        Some(current.2.clone())
    }
}

/// Credentials remembered once verified: bcrypt costs ~70 ms a check at cost 10, and a
/// scraper sends the same credentials every scrape.
const VERIFIED_CACHE: usize = 16;

/// `basic_auth_users`: user names and their passwords' bcrypt hashes.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash of a password nobody has, at the users' cost: unknown users are checked against
    /// it, so that the time of an answer does not tell which users exist (as in the toolkit).
    unknown_user_hash: String,
    verified: Mutex<VecDeque<(String, Vec<u8>)>>,
    /// One bcrypt check at a time (CPU-bound): a flood of wrong passwords costs one core at most.
    checking: tokio::sync::Semaphore,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth").field("users", &self.users.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> anyhow::Result<Self> {
        let mut cost = 0;
        for (user, hash) in &users {
            let parts = hash.parse::<bcrypt::HashParts>().map_err(|err| anyhow!("basic_auth_users.{user}: not a bcrypt hash ({err})"))?;
            cost = cost.max(parts.get_cost());
        }
        let unknown_user_hash = bcrypt::hash(b"no user has this password", cost)?;
        Ok(Self { users, unknown_user_hash, verified: Mutex::new(VecDeque::new()), checking: tokio::sync::Semaphore::new(1) })
    }

    /// Whether the `Authorization` header's credentials are a user's.
    pub async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return false };
        if self.remembered(&user, &password) {
            return true;
        }
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.unknown_user_hash).clone();
        let Ok(_turn) = self.checking.acquire().await else { return false };
        let candidate = password.clone();
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(candidate, &hash).unwrap_or(false)).await.unwrap_or(false);
        if known.is_some() && matches {
            if let Ok(mut verified) = self.verified.lock() {
                if verified.len() >= VERIFIED_CACHE {
                    verified.pop_front();
                }
                verified.push_back((user, password));
            }
            return true;
        }
        false
    }

    fn remembered(&self, user: &str, password: &[u8]) -> bool {
        let Ok(verified) = self.verified.lock() else { return false };
        verified.iter().any(|(known, remembered)| known == user && bool::from(remembered.as_slice().ct_eq(password)))
    }
}

/// The user and password of an `Authorization: Basic ...` header.
fn basic_credentials(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        format!("{:#}", WebConfig::parse(text, Path::new("/nonexistent")).expect_err(text))
    }

    #[test]
    fn an_empty_file_is_plain_http_without_authentication() {
        let config = WebConfig::parse("", Path::new("/")).unwrap();
        assert!(config.tls.is_none() && config.basic_auth.is_none() && config.headers.is_empty());
        let config = WebConfig::parse("tls_server_config:\nbasic_auth_users:\n", Path::new("/")).unwrap();
        assert!(config.tls.is_none() && config.basic_auth.is_none());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = error_of("tls_server_config:\n  cert_fil: a.pem\n");
        assert!(err.contains("unknown field `cert_fil`"), "{err}");
        assert!(err.contains("tls_server_config"), "{err}");
        let err = error_of("basic_auth:\n  alice: x\n");
        assert!(err.contains("unknown field `basic_auth`"), "{err}");
        let err = error_of("http_server_config:\n  http3: true\n");
        assert!(err.contains("unknown field `http3`"), "{err}");
    }

    #[test]
    fn settings_not_implemented_are_refused_by_name() {
        for (text, key) in [
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites"),
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  curve_preferences: [X25519]\n", "curve_preferences"),
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_allowed_sans: [a]\n", "client_allowed_sans"),
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAnyClientCert\n", "RequireAnyClientCert"),
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Sometimes\n", "client_auth_type"),
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS11\n", "min_version"),
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  max_version: TLS14\n", "max_version"),
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS13\n  max_version: TLS12\n", "min_version"),
            ("rate_limit:\n  interval: 1s\n  burst: 5\n", "rate_limit"),
        ] {
            let err = error_of(text);
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn a_certificate_needs_its_key_and_a_readable_file() {
        assert!(error_of("tls_server_config:\n  cert_file: c.pem\n").contains("missing one of key or key_file"));
        assert!(error_of("tls_server_config:\n  key_file: k.pem\n").contains("missing one of cert or cert_file"));
        // Relative paths are the configuration file's directory's.
        let err = error_of("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n");
        assert!(err.contains("cert_file /nonexistent/c.pem"), "{err}");
        let err = error_of("tls_server_config:\n  cert: x\n  key: y\n  client_auth_type: RequireAndVerifyClientCert\n");
        assert!(err.contains("needs client_ca_file"), "{err}");
    }

    #[test]
    fn headers_are_the_toolkits_with_their_values() {
        let config = WebConfig::parse(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: ''\n",
            Path::new("/"),
        )
        .unwrap();
        let names: Vec<&str> = config.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["strict-transport-security", "x-frame-options"]);
        assert!(error_of("http_server_config:\n  headers:\n    X-Frame-Options: allow\n").contains("X-Frame-Options"));
        assert!(error_of("http_server_config:\n  headers:\n    Set-Cookie: a\n").contains("\"Set-Cookie\" can not be configured"));
    }

    #[test]
    fn a_user_needs_a_bcrypt_hash() {
        let err = error_of("basic_auth_users:\n  alice: hunter2\n");
        assert!(err.contains("basic_auth_users.alice: not a bcrypt hash"), "{err}");
    }

    #[tokio::test]
    async fn basic_auth_checks_the_password_against_its_hash() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let config = WebConfig::parse(&format!("basic_auth_users:\n  prometheus: '{hash}'\n"), Path::new("/")).unwrap();
        let auth = config.basic_auth.expect("basic auth");
        let header = |user: &str, password: &str| {
            HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))).unwrap()
        };
        assert!(auth.allows(Some(&header("prometheus", "s3cret"))).await);
        // Remembered, and still exact.
        assert!(auth.allows(Some(&header("prometheus", "s3cret"))).await);
        assert!(!auth.allows(Some(&header("prometheus", "s3cre"))).await);
        assert!(!auth.allows(Some(&header("prometheus", "s3cret2"))).await);
        assert!(!auth.allows(Some(&header("alice", "s3cret"))).await);
        assert!(!auth.allows(None).await);
        assert!(!auth.allows(Some(&HeaderValue::from_static("Bearer abc"))).await);
        assert!(!auth.allows(Some(&HeaderValue::from_static("Basic !!!"))).await);
        let lower = HeaderValue::from_str(&header("prometheus", "s3cret").to_str().unwrap().replacen("Basic", "basic", 1)).unwrap();
        assert!(auth.allows(Some(&lower)).await);
    }
}
