//! The whole configuration audit over a node made of the input: `Audit::run_once` on a host root
//! whose files are the input's NUL-separated parts (containerd config, kubelet config, flags env
//! file, unit drop-in, a static pod, meminfo, a process command line, k0s config, recorded CRI
//! answers), so every rule sees parsed-but-hostile values. Properties: no panic; the JSON
//! report is JSON; the text report renders.
#![no_main]

use std::{path::PathBuf, sync::OnceLock, time::Duration};

use libfuzzer_sys::fuzz_target;
use monitor::{
    audit::Audit,
    exporters::check_report as report,
    node::{
        cri_facts::CriFacts,
        snapshot::{CriSource, SnapshotOptions},
    },
};

#[path = "../shared/scratch.rs"]
mod scratch;

/// Host files, in the order of the input's parts.
const FILES: [&str; 8] = [
    "etc/containerd/config.toml",
    "var/lib/kubelet/config.yaml",
    "var/lib/kubelet/kubeadm-flags.env",
    "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "etc/kubernetes/manifests/kube-apiserver.yaml",
    "proc/meminfo",
    "proc/1/cmdline",
    "etc/k0s/k0s.yaml",
];

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = scratch::fresh("audit");
        for file in FILES {
            std::fs::create_dir_all(root.join(file).parent().unwrap()).expect("scratch host root");
        }
        root
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime"))
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    let mut parts = data.split(|b| *b == 0);
    for file in FILES {
        let path = root.join(file);
        match parts.next() {
            // The command line's words are separated by spaces in the input.
            Some(part) if file.ends_with("cmdline") => {
                let argv: Vec<u8> = part.iter().map(|b| if *b == b' ' { 0 } else { *b }).collect();
                std::fs::write(&path, argv).expect("write scratch file");
            }
            Some(part) => std::fs::write(&path, part).expect("write scratch file"),
            None => drop(std::fs::remove_file(&path)),
        }
    }
    let cri = parts
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|t| CriFacts::from_json(t).ok())
        .unwrap_or_default();
    let options = SnapshotOptions { cri: CriSource::Recorded(cri), read_timeout: Duration::from_millis(100) };
    let report = runtime().block_on(Audit::new(root, options).run_once());
    let json = report::json(&report);
    serde_json::from_str::<serde_json::Value>(&json).expect("the JSON report is JSON");
    let _ = (report::text(&report, true), report::exit_code(&report.findings));
});
