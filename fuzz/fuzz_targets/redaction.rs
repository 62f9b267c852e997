//! Redaction as a no-leak property: a secret put in one of the places `audit::redact` says it
//! handles never reaches what the audit shows. The input picks a secret (at least 8 characters
//! of a token's alphabet: base64, base64url, hex, JWT dots) and a command line around it (a
//! node agent, filler flags and words, the secret as `--<secret flag>=X`, `--<secret flag> X`,
//! `k0s worker|controller X` or a kubeadm bootstrap token), then:
//!
//! - `argv_shown` (what the kubelet rules quote of a process);
//! - `redact` over a finding quoting the whole command line, with the secrets `secrets_of` finds
//!   in a snapshot whose kubelet flags and running processes are that command line;
//! - a YAML document holding the secret where a value goes (a KubeletConfiguration, a static
//!   pod, a k0s ClusterConfig), in every quoting, read by the parsers whose errors the audit shows.
//!
//! Property: no substring of 8 characters of the secret is in the output, unless the words
//! around the secret hold it too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::{
    arbitrary::{Result, Unstructured},
    fuzz_target,
};
use monitor::{
    audit::redact,
    findings::{Finding, Rule, Severity},
    node::{binaries::Process, k0s, kubelet, snapshot::NodeSnapshot, static_pods},
};

/// Every suffix `kubelet::is_sensitive_flag` reads as a secret, with prefixes real flags have.
const SECRET_FLAGS: [&str; 14] = [
    "token",
    "bootstrap-token",
    "discovery-token",
    "registry-password",
    "password",
    "passwd",
    "client-secret",
    "secret",
    "credential",
    "aws-credentials",
    "certificate-key",
    "join_token",
    "Token",
    "api.key",
];
/// Words around the secret, in groups that keep a command line coherent: flags in both forms,
/// switches, paths, arguments.
const FILLER: [&[&str]; 12] = [
    &["--v=2"],
    &["--config=/var/lib/kubelet/config.yaml"],
    &["--anonymous-auth=false"],
    &["--labels=a=b"],
    &["--node-ip", "10.0.0.1"],
    &["--debug"],
    &["--token-file", "/etc/k0s/token"],
    &["--discovery-token-ca-cert-hash", "sha256:0f1e2d3c"],
    &["--client-key=/etc/pki/k.pem"],
    &["--data-dir", "/var/lib/k0s"],
    &["--kubelet-extra-args", "--node-ip=10.0.0.1"],
    &["--labels", "a=b"],
];
const PROGRAMS: [&str; 6] = ["kubelet", "/usr/bin/kubelet", "kubeadm", "k0s", "/usr/local/bin/k0s", "containerd"];
/// Characters of tokens, passwords and keys as installers write them.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_.~:@";

fn secret(u: &mut Unstructured) -> Result<String> {
    let len = u.int_in_range(8..=48)?;
    let mut s = String::new();
    for _ in 0..len {
        s.push(ALPHABET[u.choose_index(ALPHABET.len())?] as char);
    }
    Ok(s)
}

fn bootstrap_token(u: &mut Unstructured) -> Result<String> {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::new();
    for i in 0..23 {
        s.push(if i == 6 { '.' } else { alphabet[u.choose_index(alphabet.len())?] as char });
    }
    Ok(s)
}

/// A command line holding `secret` in one of the forms the redactor handles (anywhere, for a
/// bootstrap token).
fn command_line(u: &mut Unstructured, secret: &str, bootstrap: bool) -> Result<Vec<String>> {
    let mut words = vec![u.choose(&PROGRAMS)?.to_string()];
    let filler = |u: &mut Unstructured, words: &mut Vec<String>| -> Result<()> {
        for _ in 0..u.int_in_range(0..=3)? {
            words.extend(u.choose(&FILLER)?.iter().map(|w| w.to_string()));
        }
        Ok(())
    };
    let flag = |u: &mut Unstructured| -> Result<String> {
        let dashes = if u.ratio(1, 4)? { "-" } else { "--" };
        let name = u.choose(&SECRET_FLAGS)?;
        // The one exception the redactor makes: a key flag's `/...` names the key's file.
        if name.to_ascii_lowercase().ends_with("key") && secret.starts_with('/') {
            return Err(libfuzzer_sys::arbitrary::Error::IncorrectFormat);
        }
        Ok(format!("{dashes}{name}"))
    };
    match u.int_in_range(0..=if bootstrap { 3 } else { 2 })? {
        0 => {
            filler(u, &mut words)?;
            words.push(format!("{}={secret}", flag(u)?));
        }
        1 => {
            filler(u, &mut words)?;
            words.push(flag(u)?);
            words.push(secret.to_string());
        }
        2 => {
            // k0s's join token: the first argument after the subcommand.
            words[0] = u.choose(&["k0s", "/usr/local/bin/k0s"])?.to_string();
            words.push(u.choose(&["worker", "controller"])?.to_string());
            filler(u, &mut words)?;
            // A word starting with a dash is a flag to cobra, never the token.
            if secret.starts_with('-') {
                return Err(libfuzzer_sys::arbitrary::Error::IncorrectFormat);
            }
            words.push(secret.to_string());
        }
        _ => {
            // A bootstrap token anywhere: its own word, or a flag's value.
            filler(u, &mut words)?;
            let prefix = u.choose(&["", "--token=", "--discovery-token=", "token="])?;
            words.push(format!("{prefix}{secret}"));
        }
    }
    filler(u, &mut words)?;
    Ok(words)
}

/// The first 8-character piece of `secret` in `output` that `benign` (what surrounds the secret)
/// does not explain.
fn leak<'a>(output: &str, secret: &'a str, benign: &str) -> Option<&'a str> {
    let chars: Vec<(usize, char)> = secret.char_indices().collect();
    (0..=chars.len().saturating_sub(8)).find_map(|i| {
        let start = chars[i].0;
        let end = chars.get(i + 8).map(|c| c.0).unwrap_or(secret.len());
        let piece = &secret[start..end];
        (piece.len() >= 8 && output.contains(piece) && !benign.contains(piece)).then_some(piece)
    })
}

const RULE: Rule = Rule { id: "fuzz", severity: Severity::Info, title: "", description: "" };

fn check_command_line(argv: &[String], secret: &str) {
    // What surrounds the secret: every word but the secret, and what replaces it.
    let benign: String =
        argv.iter().map(|w| w.replace(secret, "\u{0}")).chain([redact::REDACTED.to_string()]).collect::<Vec<_>>().join("\u{0}");
    let shown = redact::argv_shown(argv).join("\u{0}");
    if let Some(piece) = leak(&shown, secret, &benign) {
        panic!("argv_shown leaks {piece:?} of {secret:?}: {argv:?} -> {shown:?}");
    }
    // The audit's path: secrets of the node (kubelet's flags, node agents' command lines), then
    // every text of every finding.
    let mut snapshot = NodeSnapshot::default();
    snapshot.kubelet.flags = kubelet::parse_args(&argv[1..], "/proc/1/cmdline");
    snapshot.processes = Some(vec![Process { pid: 1, argv: argv.to_vec() }]);
    let secrets = redact::secrets_of(&snapshot);
    let line = argv.join(" ");
    let mut findings = vec![Finding::new(&RULE, line.clone(), format!("runs {line}")).evidence("/proc/1/cmdline", line.clone())];
    redact::redact(&mut findings, &secrets);
    let f = &findings[0];
    for text in [&f.subject, &f.title, &f.evidence[0].detail] {
        if let Some(piece) = leak(text, secret, &benign) {
            panic!("redact leaks {piece:?} of {secret:?}: {argv:?} -> {text:?} (secrets {secrets:?})");
        }
    }
}

/// A YAML document with `secret` where a value goes, in one of YAML's quotings.
fn yaml_doc(u: &mut Unstructured, secret: &str) -> Result<(usize, String)> {
    let quoted = match u.int_in_range(0..=5)? {
        0 => secret.to_string(),
        1 => format!("\"{secret}\""),
        2 => format!("'{secret}'"),
        3 => format!("\"{secret}"), // unterminated
        4 => format!("|\n  {secret}"),
        _ => format!("[{secret}, {secret}]"),
    };
    let which = u.int_in_range(0..=2)?;
    let doc = match (which, u.int_in_range(0..=4)?) {
        (0, 0) => format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: {quoted}\n"),
        (0, 1) => format!("kind: KubeletConfiguration\nauthentication:\n  webhook: {quoted}\n"),
        (0, 2) => format!("kind: KubeletConfiguration\nsystemReserved: {quoted}\n"),
        (0, 3) => format!("{{\"kind\": \"KubeletConfiguration\", \"token\": {quoted}}}"),
        (0, _) => format!("kind: KubeletConfiguration\n  bad: {quoted}\n\ttab: x\n"),
        (1, 0) => format!("kind: Pod\nmetadata:\n  name: {quoted}\nspec:\n  containers: {quoted}\n"),
        (1, 1) => format!("kind: Pod\nmetadata: {quoted}\n"),
        (1, 2) => format!("kind: {quoted}\n"),
        (1, 3) => format!("kind: Pod\nspec:\n  containers:\n  - name: c\n    image: x\n    env: {quoted}\n    resources: {{requests: {{memory: {quoted}}}}}\n"),
        (1, _) => format!("kind: Pod\nmetadata: {{name: x, labels: {quoted}\n"),
        (_, 0) => format!("apiVersion: k0s.k0sproject.io/v1beta1\nkind: ClusterConfig\nspec:\n  images: {quoted}\n"),
        (_, 1) => format!("kind: ClusterConfig\nspec:\n  images:\n    default_pull_policy: {quoted}\n    konnectivity: {quoted}\n"),
        (_, 2) => format!("kind: ClusterConfig\nspec: {quoted}\n"),
        (_, 3) => format!("kind: ClusterConfig\nspec:\n  api:\n    sans: {quoted}\n  images:\n    coredns: {{image: {quoted}, version: {quoted}}}\n"),
        (_, _) => format!("spec:\n  images:\n    - {quoted}\n  - {quoted}\n"),
    };
    Ok((which, doc))
}

fn check_yaml(which: usize, doc: &str, secret: &str) {
    let message = match which {
        0 => kubelet::ConfigFile::parse(Path::new("/var/lib/kubelet/config.yaml"), doc.to_string()).err().map(|e| e.to_string()),
        1 => static_pods::parse(doc, Path::new("/etc/kubernetes/manifests/pod.yaml")).err().map(|e| e.to_string()),
        _ => k0s::parse(Path::new("/etc/k0s/k0s.yaml"), doc).err().map(|e| e.to_string()),
    };
    let Some(message) = message else { return };
    let benign = format!("{}\u{0}{}", doc.replace(secret, "\u{0}"), "/var/lib/kubelet/config.yaml /etc/kubernetes/manifests/pod.yaml /etc/k0s/k0s.yaml");
    if let Some(piece) = leak(&message, secret, &benign) {
        panic!("a YAML error leaks {piece:?} of {secret:?}: {doc:?} -> {message:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(use_bootstrap) = u.ratio(1, 8) else { return };
    let Ok(secret) = (if use_bootstrap { bootstrap_token(&mut u) } else { secret(&mut u) }) else { return };
    if let Ok(argv) = command_line(&mut u, &secret, use_bootstrap) {
        check_command_line(&argv, &secret);
    }
    if let Ok((which, doc)) = yaml_doc(&mut u, &secret) {
        check_yaml(which, &doc, &secret);
    }
});
