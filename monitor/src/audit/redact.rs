//! Secrets never leave the audit. The node's files and command lines hold credentials
//! (registry passwords in containerd's config, kubelet's and bootstrap agents' tokens), and
//! evidence quotes files, lines and command lines. [`secrets_of`] collects the values of real
//! secret settings only (not every key with "key" in its name: containerd's
//! `image_decryption.key_model = "node"` is no secret), from flags in every form
//! (`--token=X`, `--token X`) and the known positional tokens (`k0s worker <token>`) and
//! kubeadm-shaped tokens anywhere on a command line; [`redact`] replaces each where it stands
//! as a whole word in any text of a finding, and never rewrites other words.

use std::collections::HashSet;

use crate::{
    findings::Finding,
    node::{kubelet, runtimes, snapshot::NodeSnapshot},
};

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Shorter values are not redacted: they would match ordinary words of the report.
const MIN_SECRET_LEN: usize = 3;
/// Secrets shorter than this are replaced only where they stand as a whole word.
const SHORT_SECRET_LEN: usize = 8;
/// Most secret values kept (a node has a handful; the bound keeps a flood of hostile command
/// lines from costing memory and time).
const MAX_SECRETS: usize = 1024;

/// Whether a containerd configuration key holds a credential (registry `auth`, `password`,
/// `identitytoken`, a `token` or `secret`).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "auth" || k.contains("password") || k.contains("token") || k.contains("secret")
}

/// Credential values present on the node: containerd's registry credentials (and any secret
/// key of CRI-O's files), secret flags of kubelet and of any running process, positional join
/// tokens.
pub fn secrets_of(snapshot: &NodeSnapshot) -> Vec<String> {
    fn walk(v: &toml::Value, key: &str, out: &mut Vec<String>, depth: usize) {
        match v {
            toml::Value::Table(t) if depth < 64 => t.iter().for_each(|(k, v)| walk(v, k, out, depth + 1)),
            toml::Value::Array(a) if depth < 64 => a.iter().for_each(|v| walk(v, key, out, depth + 1)),
            toml::Value::String(s) if is_secret_key(key) => out.push(s.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for f in snapshot.containerd_config.files.iter().chain(&snapshot.crio_config.files) {
        for (k, v) in &f.table {
            walk(v, k, &mut out, 0);
        }
    }
    for flag in &snapshot.kubelet.flags {
        if kubelet::is_sensitive_flag(&flag.name) && is_secret_value(&flag.name, &flag.value) {
            out.push(flag.value.clone());
        }
    }
    // Only the node's own agents: a pod's process could otherwise make any word a "secret"
    // and blank it out of every finding.
    for process in snapshot.processes.iter().flatten().filter(|p| is_node_agent(p.name())) {
        out.extend(argv_secrets(&process.argv));
    }
    let mut seen = HashSet::new();
    out.retain(|s| s.len() >= MIN_SECRET_LEN && seen.insert(s.clone()));
    out.truncate(MAX_SECRETS);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// kubelet, the runtimes and the installers: the processes whose command lines evidence quotes.
fn is_node_agent(name: &str) -> bool {
    name == "kubelet" || runtimes::is_node_daemon(name)
}

/// Whether the value of a secret flag is the secret itself: not a switch (`--anonymous-auth=false`),
/// nor the file a key flag names (`--client-key=/etc/pki/k.pem`). A token, password or secret
/// flag's value is always one, a number or a `/...` word included: base64 starts with `/` one
/// time in 64.
fn is_secret_value(flag: &str, value: &str) -> bool {
    let names_a_file = flag.to_ascii_lowercase().ends_with("key") && value.starts_with('/');
    !matches!(value, "true" | "false") && !names_a_file
}

/// The secrets of one command line: values of secret flags in both forms, `k0s worker
/// <token>` / `k0s controller <token>`, and kubeadm bootstrap tokens (`abcdef.0123456789abcdef`).
pub fn argv_secrets(argv: &[String]) -> Vec<String> {
    let mut out: Vec<String> = kubelet::parse_args(argv.get(1..).unwrap_or_default(), "")
        .into_iter()
        .filter(|f| kubelet::is_sensitive_flag(&f.name) && is_secret_value(&f.name, &f.value))
        .map(|f| f.value)
        .collect();
    // A secret flag is never a switch: in the spaced form the next word is its value whatever it
    // starts with (pflag and Go's `flag` take it; `parse_args` reads a dashed word as a flag).
    out.extend(argv.get(1..).unwrap_or_default().windows(2).filter_map(|pair| {
        let flag = pair[0].strip_prefix("--").or_else(|| pair[0].strip_prefix('-'))?;
        let value = &pair[1];
        (value.starts_with('-') && !flag.contains('=') && kubelet::is_sensitive_flag(flag) && is_secret_value(flag, value))
            .then(|| value.clone())
    }));
    let name = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or("");
    if name == "k0s"
        && let Some(pos) = argv.iter().position(|a| a == "worker" || a == "controller")
    {
        // The token is the one argument after the subcommand; which other words are flags'
        // values (`--labels a=b <token>`) only k0s's own flag table says, so every word that is
        // neither a flag nor a flag's file or directory (`--token-file <path>`) is taken.
        out.extend(argv[pos + 1..].iter().enumerate().filter_map(|(i, word)| {
            let after_path_flag = i > 0 && {
                let previous = &argv[pos + i];
                previous.starts_with('-') && !previous.contains('=') && ["file", "dir", "path", "config"].iter().any(|s| previous.ends_with(s))
            };
            (!word.starts_with('-') && !after_path_flag).then(|| word.clone())
        }));
    }
    out.extend(argv.iter().flat_map(|a| a.split(['=', ' '])).filter(|w| is_bootstrap_token(w)).map(str::to_string));
    out
}

/// kubeadm's token format: `[a-z0-9]{6}.[a-z0-9]{16}`.
fn is_bootstrap_token(word: &str) -> bool {
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    word.split_once('.').is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// A command line to show: every secret of it replaced.
pub fn argv_shown(argv: &[String]) -> Vec<String> {
    let secrets = argv_secrets(argv);
    argv.iter().map(|a| redact_text(a, &secrets)).collect()
}

/// `text` with every occurrence of a secret replaced; a short secret only where it stands as a
/// whole word (`node` in `nodeup` is not one).
fn redact_text(text: &str, secrets: &[String]) -> String {
    let word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '-' || c == '.';
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find(secret.as_str()) {
            let before = rest[..at].chars().next_back();
            let after = rest[at + secret.len()..].chars().next();
            out.push_str(&rest[..at]);
            if secret.len() < SHORT_SECRET_LEN && (before.is_some_and(word_char) || after.is_some_and(word_char)) {
                out.push_str(secret);
            } else {
                out.push_str(REDACTED);
            }
            rest = &rest[at + secret.len()..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

/// Replaces every secret value in every text of every finding.
pub fn redact(findings: &mut [Finding], secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let clean = |s: &mut String| {
        if secrets.iter().any(|secret| s.contains(secret.as_str())) {
            *s = redact_text(s, secrets);
        }
    };
    for f in findings {
        clean(&mut f.subject);
        clean(&mut f.title);
        clean(&mut f.remediation);
        for e in &mut f.evidence {
            clean(&mut e.source);
            clean(&mut e.detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn tokens_in_every_form_are_secrets() {
        let join = argv("kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:aa");
        assert!(argv_secrets(&join).contains(&"abcdef.0123456789abcdef".to_string()), "{:?}", argv_secrets(&join));
        let shown = argv_shown(&join).join(" ");
        assert!(!shown.contains("0123456789abcdef") && shown.contains("--token [REDACTED]"), "{shown}");
        let eq = argv("kubelet --bootstrap-token=s3cr3tvalue --v=2");
        assert_eq!(argv_shown(&eq).join(" "), "kubelet --bootstrap-token=[REDACTED] --v=2");
        let k0s = argv("/usr/local/bin/k0s worker H4sIAAAAAAAC_tokenblob --labels=a=b");
        assert_eq!(argv_shown(&k0s).join(" "), "/usr/local/bin/k0s worker [REDACTED] --labels=a=b");
        let k0s_file = argv("k0s worker --token-file /etc/k0s/token");
        assert_eq!(argv_shown(&k0s_file), k0s_file, "a file path is no secret");
        let k0s_late = argv("k0s worker --labels=a=b H4sIAAAAAAAC_tokenblob");
        assert_eq!(argv_shown(&k0s_late).join(" "), "k0s worker --labels=a=b [REDACTED]");
        // Found by the `redaction` fuzz target: a flag's value in the spaced form comes before
        // the token; both are taken (the token must not be missed).
        let k0s_spaced = argv("k0s controller --labels a=b --v=2 A5s3cr3tToken");
        assert_eq!(argv_shown(&k0s_spaced).join(" "), "k0s controller --labels [REDACTED] --v=2 [REDACTED]");
        // Switches and modes are no secrets (kOps' kubelet flags).
        let kubelet = argv("kubelet --anonymous-auth=false --authentication-token-webhook=true --authorization-mode=Webhook");
        assert!(argv_secrets(&kubelet).is_empty(), "{:?}", argv_secrets(&kubelet));
    }

    /// Found by the `redaction` fuzz target: a token is a secret whatever it looks like (base64
    /// may start with `/`, a password may be all digits); only a key flag's `/...` names a file.
    #[test]
    fn tokens_that_look_like_paths_or_numbers_are_secrets() {
        let line = argv("kubelet -token=/PAAAAAAAAAAA --registry-password 31415926535 --client-key=/etc/pki/k.pem");
        assert_eq!(
            argv_shown(&line).join(" "),
            "kubelet -token=[REDACTED] --registry-password [REDACTED] --client-key=/etc/pki/k.pem"
        );
        // A value that starts with a dash (base64url may) is still the flag's value.
        let dashed = argv("kubeadm join 10.0.0.1:6443 --v=2 -token -st_Pppp0");
        assert_eq!(argv_shown(&dashed).join(" "), "kubeadm join 10.0.0.1:6443 --v=2 -token [REDACTED]");
    }

    #[test]
    fn kubelet_flags_from_units_are_secrets_in_both_forms() {
        let words = ["--token", "s3cr3t-spaced", "--registry-password=s3cr3t-equals", "--anonymous-auth", "--v=2", "--key-model", "node", "--client-key=/etc/pki/k.pem"];
        let mut snapshot = NodeSnapshot::default();
        snapshot.kubelet.flags = kubelet::parse_words(words.iter().map(|w| (*w, "/etc/systemd/system/kubelet.service:9")));
        let secrets = secrets_of(&snapshot);
        assert!(secrets.contains(&"s3cr3t-spaced".to_string()) && secrets.contains(&"s3cr3t-equals".to_string()), "{secrets:?}");
        assert_eq!(secrets.len(), 2, "switches, settings about keys and paths are no secrets: {secrets:?}");
        let mut findings = vec![Finding::new(
            &crate::findings::Rule { id: "r", severity: crate::findings::Severity::Info, title: "", description: "" },
            "node",
            "kubelet --token s3cr3t-spaced --registry-password=s3cr3t-equals on node node1",
        )];
        redact(&mut findings, &secrets);
        assert_eq!(findings[0].title, "kubelet --token [REDACTED] --registry-password=[REDACTED] on node node1");
        assert_eq!(findings[0].subject, "node");
    }

    #[test]
    fn ordinary_words_are_never_rewritten() {
        // containerd's own default config names `key_model = "node"`: no secret.
        assert!(!is_secret_key("key_model") && is_secret_key("password") && is_secret_key("auth") && is_secret_key("identitytoken"));
        let secrets = vec!["node".to_string()];
        assert_eq!(redact_text("nodeup on node node1", &secrets), "nodeup on [REDACTED] node1");
        // A long secret is replaced wherever it stands, even next to punctuation.
        assert_eq!(redact_text("token=s3cr3tlongvalue.", &["s3cr3tlongvalue".to_string()]), "token=[REDACTED].");
        let mut findings = vec![Finding::new(
            &crate::findings::Rule { id: "r", severity: crate::findings::Severity::Info, title: "", description: "" },
            "s",
            "password hunter2x in /etc/containerd/config.toml",
        )];
        redact(&mut findings, &["hunter2x".to_string()]);
        assert_eq!(findings[0].title, "password [REDACTED] in /etc/containerd/config.toml");
    }
}
