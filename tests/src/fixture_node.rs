//! Fixture nodes (`tests/fixtures/nodes/<name>`: a host root and the recorded answers of its CRI
//! sockets, `<name>.cri.json`), audited in process; copies of them to change for one test; and
//! each node's expected findings (`<name>.findings`), the reviewed record of what the audit
//! must conclude there. `NRM_BLESS=1` rewrites the records from what the audit says.

use std::path::{Path, PathBuf};

use monitor::{
    audit::{Audit, AuditReport},
    node::{
        cri_facts::CriFacts,
        snapshot::{CriSource, SnapshotOptions},
    },
};

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/nodes")
}

/// Every fixture node, by name.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/nodes")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn audit_root(root: &Path, cri: CriFacts) -> AuditReport {
    let options = SnapshotOptions { cri: CriSource::Recorded(cri), ..Default::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(Audit::new(root, options).run_once())
}

fn recorded_cri(path: &Path) -> CriFacts {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    CriFacts::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Audits a fixture node as it is.
pub fn audit(name: &str) -> AuditReport {
    let root = fixtures_dir().join(name);
    audit_root(&root, recorded_cri(&root.with_extension("cri.json")))
}

/// One finding as its record line: `severity rule subject`.
pub fn line(f: &monitor::findings::Finding) -> String {
    format!("{} {} {}", f.severity, f.rule, f.subject)
}

/// The audit's findings as record lines, in report order.
pub fn lines(report: &AuditReport) -> Vec<String> {
    report.findings.iter().map(line).collect()
}

/// The evidence of a rule's findings, a `source | detail` line each.
pub fn evidence_of(report: &AuditReport, rule: &str) -> String {
    report
        .findings
        .iter()
        .filter(|f| f.rule == rule)
        .flat_map(|f| f.evidence.iter().map(|e| format!("{} | {}", e.source, e.detail)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The reviewed findings of a fixture node (`<name>.findings`, `#` comments allowed).
pub fn expected(name: &str) -> Vec<String> {
    let path = fixtures_dir().join(format!("{name}.findings"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (every fixture node records its expected findings; NRM_BLESS=1 writes it)", path.display()));
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

/// Asserts a fixture node's findings are its record; `NRM_BLESS=1` rewrites the record's lines
/// (its leading comment is kept).
pub fn assert_expected(name: &str, report: &AuditReport) {
    let got = lines(report);
    if std::env::var_os("NRM_BLESS").is_some() {
        let path = fixtures_dir().join(format!("{name}.findings"));
        let header: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let body: String = got.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, header + &body).expect("bless");
        return;
    }
    assert_eq!(got, expected(name), "{name}: the audit's findings differ from {name}.findings:\n{}", monitor::exporters::check_report::text(report, false));
}

/// A copy of a fixture node in a fresh temporary directory, removed on drop.
pub struct FixtureNode {
    pub root: PathBuf,
    pub cri: CriFacts,
}

impl FixtureNode {
    pub fn copy_of(fixture: &str, tag: &str) -> FixtureNode {
        let src = fixtures_dir().join(fixture);
        let root = std::env::temp_dir().join(format!("nrm-audit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let status = std::process::Command::new("cp").arg("-a").arg(&src).arg(&root).status().expect("cp");
        assert!(status.success(), "copying {}", src.display());
        FixtureNode { root, cri: recorded_cri(&src.with_extension("cri.json")) }
    }

    /// Writes a host file of the copy (replacing a directory of that name).
    pub fn write(&self, host_path: &str, bytes: impl AsRef<[u8]>) {
        let p = self.root.join(host_path.trim_start_matches('/'));
        if p.is_dir() {
            std::fs::remove_dir_all(&p).expect("rm dir");
        }
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    /// Reads a host file of the copy.
    pub fn read(&self, host_path: &str) -> String {
        let p = self.root.join(host_path.trim_start_matches('/'));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Replaces `from` by `to` in a host file of the copy; `from` must be there.
    pub fn edit(&self, host_path: &str, from: &str, to: &str) {
        let text = self.read(host_path);
        assert!(text.contains(from), "{host_path} has no {from:?}:\n{text}");
        self.write(host_path, text.replacen(from, to, 1));
    }

    pub fn remove(&self, host_path: &str) {
        let p = self.root.join(host_path.trim_start_matches('/'));
        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
    }

    pub fn audit(&self) -> AuditReport {
        audit_root(&self.root, self.cri.clone())
    }
}

impl Drop for FixtureNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
