//! Kubelet flags as installers write them: env files (`parse_env_file`, with continuations and
//! multi-line quotes), shell words, argument vectors (`parse_args`), and systemd unit lines
//! (`Environment=`, `ExecStart=`) as `Kubelet::load` reads them. Properties: no panic; every
//! env line number exists; flag names never start with a dash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::node::kubelet::{is_sensitive_flag, parse_args, parse_env_file, shell_words};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count();
    for (key, value, line) in parse_env_file(text) {
        assert!(line >= 1 && line <= lines, "line {line} of {lines}");
        assert!(!key.is_empty());
        check(&parse_args(&shell_words(&value), &key));
    }
    // The unit file path of `Kubelet::load`.
    for line in text.lines() {
        let t = line.trim();
        if let Some(env) = t.strip_prefix("Environment=") {
            for assignment in shell_words(env) {
                if let Some((_, v)) = assignment.split_once('=') {
                    check(&parse_args(&shell_words(v), "unit"));
                }
            }
        } else if let Some(exec) = t.strip_prefix("ExecStart=") {
            let words = shell_words(exec);
            check(&parse_args(&words[1.min(words.len())..], "unit"));
        }
    }
    // /proc/<pid>/cmdline: NUL-separated.
    let argv: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
    check(&parse_args(&argv, "cmdline"));
});

fn check(flags: &[monitor::node::kubelet::Flag]) {
    for flag in flags {
        assert!(!flag.name.contains('='), "flag name {:?}", flag.name);
        let _ = is_sensitive_flag(&flag.name);
    }
}
