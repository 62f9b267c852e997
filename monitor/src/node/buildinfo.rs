//! Versions of the runtime binaries read from their files, never by running them: a Go binary's
//! build information (the blob Go's linker leaves in `.go.buildinfo`: the toolchain version and
//! the module information text, whose `build -ldflags=...` line keeps the `-X ...Version=`
//! settings a release build stamps its version with, and whose `mod` line has the main module's
//! version).
//!
//! No binary is executed: the monitor runs as root beside untrusted workloads, and a workload
//! that can write to the host (a hostPath mount, a compromised installer) can put anything at
//! `/usr/bin/containerd`; running it with `--version` would run that. A host binary may not even
//! start in the monitor's container (another libc, missing shared libraries, another
//! architecture). So the file is only read, and read as hostile input: the ELF headers are
//! parsed with `object` (read-only) over a reader that refuses to read more than
//! [`READ_BUDGET`] bytes in all (a binary is up to ~150 MB; only its headers, the section table,
//! and a [`WINDOW`] of the data are read), every length in the file is checked before it is
//! used, and nothing panics on any input.
//!
//! How the blob is found follows Go's `debug/buildinfo`: the `.go.buildinfo` section (or, with
//! no section table, the first writable data segment), then the 32-byte header at a 16-byte
//! aligned offset that starts with the magic `\xff Go buildinf:`; Go 1.18 and later write the
//! two strings inline after the header (flag `0x2`), older Go writes pointers to them.
//!
//! What it does not do: read symbols (release binaries are stripped) or scan the file for
//! version-looking strings (any string of a binary would do for an attacker, and many are
//! versions of other things); read Mach-O or PE files (nodes run ELF); find a version in a
//! binary that is not Go or whose build info records none. Go keeps `-ldflags` out of the build
//! info of a `-trimpath` build (go.dev/issue/52372) and a GOPATH-mode build has no module line,
//! so such binaries (Debian's containerd and runc among them) have no version here: the reason is
//! said, not guessed.

use std::{
    cell::Cell,
    io::{Read, Seek},
    ops::Range,
};

use object::{
    Endianness,
    elf::{FileHeader32, FileHeader64, PF_W, PF_X, PT_LOAD, SHT_PROGBITS},
    read::{
        ReadCache, ReadCacheOps, ReadRef,
        elf::{FileHeader, ProgramHeader, SectionHeader},
    },
};

use super::binaries::version_in;

/// The `-ldflags` text looked at, at most (real ones are a few hundred bytes).
const MAX_LDFLAGS_BYTES: usize = 64 * 1024;
/// The `-ldflags` fields looked at, at most.
const MAX_LDFLAGS_FIELDS: usize = 1024;

/// The largest index at most `max` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, max: usize) -> usize {
    let mut at = max.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// At most this many bytes are read from one file, whatever its headers say.
pub const READ_BUDGET: u64 = 1 << 20;

/// The bytes searched for the build info header, from the start of its section or segment (as
/// Go's reader does).
pub const WINDOW: u64 = 64 * 1024;

/// Longest Go version string taken (`go1.22.5`, `devel go1.23-4f5d...`).
const MAX_GO_VERSION: u64 = 1024;

/// Longest module information text taken (kubelet's is about 15 KiB, k0s's about 60 KiB).
const MAX_MODINFO: u64 = 512 * 1024;

/// Longest section name `object` reads through the cache (`ReadCache` stops there too).
const MAX_NAME: u64 = 4096;

/// The start of the build info header.
const MAGIC: &[u8; 14] = b"\xff Go buildinf:";

/// Framing around the module information text (Go's `modload.infoStart`/`infoEnd`): 16 bytes
/// on each side, the text ending in a newline.
const FRAMING: usize = 16;

/// Why a file gives no build info.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRead {
    #[error("not an ELF binary (a script, or another format)")]
    NotElf,
    #[error("an ELF binary without Go build info")]
    NotGo,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("no Go build info within the first {READ_BUDGET} bytes it may read")]
    OverBudget,
}

/// A module of the build info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    /// `v1.2.3`, a pseudo-version, or `(devel)` for a module built from its own checkout.
    pub version: String,
}

/// What a Go binary says of how it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// The toolchain: `go1.22.5`.
    pub go_version: String,
    /// The main package: `github.com/containerd/containerd/v2/cmd/containerd`.
    pub path: Option<String>,
    /// The main module (none for a GOPATH-mode build).
    pub module: Option<Module>,
    /// Build settings in order: `-ldflags`, `-trimpath`, `CGO_ENABLED`, `GOOS`, `vcs.revision`...
    pub settings: Vec<(String, String)>,
}

/// Where in the build info a version was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `-X <variable>=<version>` of the `-ldflags` setting.
    Ldflags { variable: String },
    /// The main module's version (`mod <path> <version>`).
    Module { path: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Ldflags { variable } => write!(f, "-X {variable}"),
            Source::Module { path } => write!(f, "module {path}"),
        }
    }
}

/// A version and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The version as stamped: `v2.0.2`, `1.6.20`, `v1.30.2+k0s.0`.
    pub version: String,
    pub source: Source,
}

impl BuildInfo {
    /// The value of a build setting (`-ldflags`, `-trimpath`).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The `-X <variable>=<value>` assignments of the `-ldflags` setting, each variable once
    /// with its last value (the linker's), in the order they first appear.
    pub fn ldflags_x(&self) -> Vec<(String, String)> {
        let Some(raw) = self.setting("-ldflags") else { return Vec::new() };
        // `go build -ldflags=<pattern>=<flags>` applies the flags to the packages matched.
        let flags = if raw.starts_with('-') {
            raw
        } else {
            match raw.split_once('=') {
                Some((_, flags)) => flags,
                None => return Vec::new(),
            }
        };
        // A hostile binary's flags are bounded: their text and how many are looked at.
        let flags = &flags[..floor_char_boundary(flags, MAX_LDFLAGS_BYTES)];
        let Some(fields) = split_flags(flags) else { return Vec::new() };
        let mut out: Vec<(String, String)> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut fields = fields.into_iter().take(MAX_LDFLAGS_FIELDS);
        while let Some(field) = fields.next() {
            let assignment = match field.strip_prefix("--").or_else(|| field.strip_prefix('-')) {
                Some("X") => fields.next(),
                Some(flag) => flag.strip_prefix("X="),
                None => None,
            };
            let Some((name, value)) = assignment.and_then(|a| a.split_once('=')) else { continue };
            if name.is_empty() {
                continue;
            }
            match index.get(name) {
                Some(&at) => out[at].1 = value.to_string(),
                None => {
                    index.insert(name.to_string(), out.len());
                    out.push((name.to_string(), value.to_string()));
                }
            }
        }
        out
    }

    /// The version the binary was stamped with: an `-X` setting of a variable named `Version`,
    /// `version` or `gitVersion` (of the binary's own packages first: k0s also stamps
    /// `build.RuncVersion`, kubelet `k8s.io/component-base/version.gitVersion`), then one of its
    /// own packages' variables whose name ends in `Version`, then the main module's version
    /// unless it is `(devel)`. The value must look like a version (`version_in`).
    pub fn version(&self) -> Option<Stamp> {
        let assignments = self.ldflags_x();
        for rank in 0..3 {
            for (variable, value) in &assignments {
                if self.rank(variable) != Some(rank) {
                    continue;
                }
                if let Some(version) = version_in(value) {
                    return Some(Stamp { version, source: Source::Ldflags { variable: variable.clone() } });
                }
            }
        }
        let module = self.module.as_ref().filter(|m| m.version != "(devel)")?;
        let version = version_in(&module.version)?;
        Some(Stamp { version, source: Source::Module { path: module.path.clone() } })
    }

    /// The main package's name: the last element of its path (a major-version suffix `/v2`
    /// skipped): `containerd` for `github.com/containerd/containerd/v2/cmd/containerd`,
    /// `server` for k3s's `github.com/k3s-io/k3s/cmd/server`.
    fn main_package_name(&self) -> Option<&str> {
        let mut elements = self.path.as_deref()?.rsplit('/');
        let last = elements.next()?;
        let is_major = |e: &str| e.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if is_major(last) { elements.next() } else { Some(last) }
    }

    /// The version of the component `name` when this file is another program that embeds it
    /// (a multi-call binary reached under that name through a link: k3s's `containerd`, `ctr`,
    /// `crictl`, `kubectl`): the stamp of the embedded component, or why it is unknown (the
    /// program's own version is never the component's). `None` when the file is the component
    /// itself, or `name` is not a component programs embed: [`BuildInfo::version`] applies.
    pub fn embedded_version(&self, name: &str) -> Option<Result<Stamp, String>> {
        let (_, variables) = EMBEDDED_STAMPS.iter().find(|(component, _)| *component == name)?;
        let program = self.main_package_name()?;
        if program == name {
            return None;
        }
        let path = self.path.as_deref().unwrap_or(program);
        let assignments = self.ldflags_x();
        let stamped = variables.iter().find_map(|wanted| {
            let (variable, value) = assignments.iter().find(|(variable, _)| variable == wanted)?;
            Some(Stamp { version: version_in(value)?, source: Source::Ldflags { variable: variable.clone() } })
        });
        Some(stamped.ok_or_else(|| format!("the file is {path}, a program that runs {name} in itself (a multi-call binary), and its Go build info stamps no version of {name}")))
    }

    /// 0: an exact version name in the binary's own packages; 1: an exact name elsewhere; 2: a
    /// name ending in `Version` in its own packages; none: not a version variable.
    fn rank(&self, variable: &str) -> Option<u8> {
        let (package, name) = variable.rsplit_once('.')?;
        let exact = matches!(name, "Version" | "version" | "gitVersion" | "GitVersion");
        let ends = name.ends_with("Version") || name.ends_with("version");
        match (exact, ends, self.is_own(package)) {
            (true, _, true) => Some(0),
            (true, _, false) => Some(1),
            (false, true, true) => Some(2),
            _ => None,
        }
    }

    /// Whether a package is the binary's own: `main`, in the main module, or (a GOPATH build,
    /// without a module) in the main package's repository.
    fn is_own(&self, package: &str) -> bool {
        let within = |root: &str| !root.is_empty() && (package == root || package.strip_prefix(root).is_some_and(|r| r.starts_with('/')));
        package == "main"
            || match (&self.module, &self.path) {
                (Some(module), _) => within(&module.path),
                (None, Some(path)) => within(&repository_of(path)),
                (None, None) => false,
            }
    }
}

/// Where a program that embeds another stamps the embedded one's version, by the name the
/// embedded one is called under. k3s builds one binary (`./cmd/server`) and links `containerd`,
/// `ctr`, `crictl` and `kubectl` to it, stamping `-X` the versions of the containerd and
/// cri-tools modules it embeds and its Kubernetes release (k3s-io/k3s `scripts/build`,
/// VERSIONFLAGS; `scripts/version.sh`); kubelet runs inside `k3s agent`, with no file of its own.
const EMBEDDED_STAMPS: &[(&str, &[&str])] = &[
    ("containerd", &["github.com/containerd/containerd/v2/version.Version", "github.com/containerd/containerd/version.Version"]),
    ("ctr", &["github.com/containerd/containerd/v2/version.Version", "github.com/containerd/containerd/version.Version"]),
    ("crictl", &["sigs.k8s.io/cri-tools/pkg/version.Version"]),
    ("kubectl", &["k8s.io/component-base/version.gitVersion"]),
    ("kubelet", &["k8s.io/component-base/version.gitVersion"]),
];

/// The repository part of a package path: three elements on the usual forges
/// (`github.com/docker/docker`), two elsewhere (`k8s.io/kubernetes`).
fn repository_of(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let n = if matches!(parts.first(), Some(&("github.com" | "gitlab.com" | "bitbucket.org"))) { 3 } else { 2 };
    if parts.len() < n {
        return String::new();
    }
    parts[..n].join("/")
}

/// Reads the build info of a Go binary, at most [`READ_BUDGET`] bytes of it.
pub fn read<R: Read + Seek>(reader: R) -> Result<BuildInfo, NotRead> {
    let cache = ReadCache::new(reader);
    let budget = Budget { left: Cell::new(READ_BUDGET), refused: Cell::new(false) };
    let data = Budgeted { cache: &cache, budget: &budget };
    match raw_build_info(data) {
        Ok((go_version, modinfo)) => Ok(parse_modinfo(go_version, &modinfo)),
        Err(NotRead::NotElf) => Err(NotRead::NotElf),
        Err(_) if budget.refused.get() => Err(NotRead::OverBudget),
        Err(e) => Err(e),
    }
}

/// Parses the module information text (without its framing): `path`, `mod`, `dep`, `=>` and
/// `build` lines, tab-separated, each ending in a newline. Lines that do not parse are skipped.
pub fn parse_modinfo(go_version: String, text: &str) -> BuildInfo {
    let mut info = BuildInfo { go_version, ..Default::default() };
    for line in text.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else { break };
        if let Some(path) = line.strip_prefix("path\t") {
            info.path = Some(path.to_string());
        } else if let Some(module) = line.strip_prefix("mod\t") {
            let columns: Vec<&str> = module.split('\t').collect();
            if let [path, version] | [path, version, _] = columns.as_slice() {
                info.module = Some(Module { path: path.to_string(), version: version.to_string() });
            }
        } else if let Some(setting) = line.strip_prefix("build\t").and_then(parse_setting) {
            info.settings.push(setting);
        }
    }
    info
}

/// `key=value` of a `build` line; either side may be a Go quoted string.
fn parse_setting(kv: &str) -> Option<(String, String)> {
    let (key, raw) = match kv.as_bytes().first()? {
        b'=' => return None,
        b'"' | b'`' => {
            let (key, used) = quoted_prefix(kv)?;
            (key, kv.get(used..)?.strip_prefix('=')?)
        }
        _ => {
            let (key, raw) = kv.split_once('=')?;
            (key.to_string(), raw)
        }
    };
    let value = match raw.as_bytes().first() {
        Some(b'"' | b'`') => match quoted_prefix(raw)? {
            (value, used) if used == raw.len() => value,
            _ => return None,
        },
        _ => raw.to_string(),
    };
    Some((key, value))
}

/// The Go quoted string (`"..."` with escapes, or `` `...` ``) at the start of `s`, unquoted,
/// and how many bytes it took.
fn quoted_prefix(s: &str) -> Option<(String, usize)> {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'`') {
        let end = s[1..].find('`')? + 1;
        return Some((s[1..end].to_string(), end + 1));
    }
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    loop {
        match *bytes.get(i)? {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\n' => return None,
            b'\\' => {
                let (used, escaped) = unescape(bytes.get(i + 1..)?)?;
                match escaped {
                    Escaped::Byte(b) => out.push(b),
                    Escaped::Char(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
                i += 1 + used;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
}

enum Escaped {
    Byte(u8),
    Char(char),
}

/// One escape after a backslash: what it stands for and how many bytes it took.
fn unescape(s: &[u8]) -> Option<(usize, Escaped)> {
    let hex = |digits: &[u8]| -> Option<u32> {
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(text, 16).ok()
    };
    let simple = |b: u8| Some((1, Escaped::Byte(b)));
    match *s.first()? {
        b'a' => simple(0x07),
        b'b' => simple(0x08),
        b'f' => simple(0x0c),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(0x0b),
        b @ (b'\\' | b'"' | b'\'') => simple(b),
        b'x' => Some((3, Escaped::Byte(u8::try_from(hex(s.get(1..3)?)?).ok()?))),
        b'u' => Some((5, Escaped::Char(char::from_u32(hex(s.get(1..5)?)?)?))),
        b'U' => Some((9, Escaped::Char(char::from_u32(hex(s.get(1..9)?)?)?))),
        b'0'..=b'7' => {
            let digits = s.get(..3)?;
            if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                return None;
            }
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            Some((3, Escaped::Byte(u8::try_from(value).ok()?)))
        }
        _ => None,
    }
}

/// Splits linker flags as `go build` does: on white space, a field that starts with `'` or `"`
/// running to the same quote (no escapes). `None` for an unterminated quote.
fn split_flags(s: &str) -> Option<Vec<&str>> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(is_space);
        let Some(first) = rest.chars().next() else { return Some(out) };
        if first == '\'' || first == '"' {
            let end = rest[1..].find(first)? + 1;
            out.push(&rest[1..end]);
            rest = &rest[end + 1..];
        } else {
            let end = rest.find(is_space).unwrap_or(rest.len());
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
}

/// What may still be read from one file.
struct Budget {
    left: Cell<u64>,
    /// A read was refused for the budget.
    refused: Cell<bool>,
}

impl Budget {
    fn take(&self, size: u64) -> Result<(), ()> {
        match self.left.get().checked_sub(size) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.refused.set(true);
                Err(())
            }
        }
    }
}

/// `object`'s cached reader, charging every read to a [`Budget`] before it is made, so no
/// header value can make it read (or allocate) more.
struct Budgeted<'a, R: ReadCacheOps> {
    cache: &'a ReadCache<R>,
    budget: &'a Budget,
}

impl<R: ReadCacheOps> Clone for Budgeted<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: ReadCacheOps> Copy for Budgeted<'_, R> {}

impl<'a, R: ReadCacheOps> ReadRef<'a> for Budgeted<'a, R> {
    fn len(self) -> Result<u64, ()> {
        self.cache.len()
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        self.budget.take(size)?;
        self.cache.read_bytes_at(offset, size)
    }

    fn read_bytes_at_until(self, range: Range<u64>, delimiter: u8) -> Result<&'a [u8], ()> {
        self.budget.take(range.end.saturating_sub(range.start).min(MAX_NAME))?;
        let bytes = self.cache.read_bytes_at_until(range, delimiter)?;
        if bytes.len() as u64 >= MAX_NAME {
            return Err(());
        }
        Ok(bytes)
    }
}

/// A loadable segment: where its bytes are in memory and in the file.
#[derive(Debug, Clone, Copy)]
struct Load {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    writable_data: bool,
}

impl Load {
    /// The file offset of `size` bytes at `addr`, if the segment holds them all.
    fn file_offset(&self, addr: u64, size: u64) -> Option<u64> {
        let within = addr.checked_sub(self.vaddr)?;
        (within.checked_add(size)? <= self.filesz).then_some(self.offset.checked_add(within)?)
    }
}

/// The Go version and the module information text (framing removed; empty when there is none).
fn raw_build_info<R: ReadCacheOps>(data: Budgeted<'_, R>) -> Result<(String, String), NotRead> {
    let ident = data.read_bytes_at(0, 16).map_err(|_| NotRead::NotElf)?;
    if ident[..4] != object::elf::ELFMAG {
        return Err(NotRead::NotElf);
    }
    match ident[4] {
        1 => from_elf::<FileHeader32<Endianness>, _>(data),
        2 => from_elf::<FileHeader64<Endianness>, _>(data),
        _ => Err(NotRead::Malformed("ELF header (class)")),
    }
}

fn from_elf<'a, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'a>>(data: R) -> Result<(String, String), NotRead> {
    let header = Elf::parse(data).map_err(|_| NotRead::Malformed("ELF header"))?;
    let endian = header.endian().map_err(|_| NotRead::Malformed("ELF header (byte order)"))?;
    let file_len = data.len().map_err(|_| NotRead::Malformed("ELF file (length)"))?;
    let loads: Vec<Load> = header
        .program_headers(endian, data)
        .unwrap_or(&[])
        .iter()
        .filter(|p| p.p_type(endian) == PT_LOAD)
        .map(|p| Load {
            vaddr: p.p_vaddr(endian).into(),
            offset: p.p_offset(endian).into(),
            filesz: p.p_filesz(endian).into(),
            writable_data: p.p_flags(endian).0 & (PF_X.0 | PF_W.0) == PF_W.0,
        })
        .collect();
    // The section when there is a section table, else the first writable data segment.
    let section = header.sections(endian, data).ok().and_then(|table| {
        table
            .iter()
            .filter(|s| s.sh_type(endian) == SHT_PROGBITS)
            .find(|s| table.section_name(endian, s).is_ok_and(|name| name == b".go.buildinfo"))
            .and_then(|s| s.file_range(endian))
            .map(|(offset, size)| (offset, size.max(32)))
    });
    let segment = || loads.iter().find(|l| l.writable_data && l.filesz > 0).map(|l| (l.offset, l.filesz));
    let (start, size) = section.or_else(segment).ok_or(NotRead::NotGo)?;
    let size = size.min(WINDOW).min(file_len.saturating_sub(start));
    let window = data.read_bytes_at(start, size).map_err(|_| NotRead::Malformed("Go build info section (offset or size)"))?;
    let at = (0..window.len().saturating_sub(31)).step_by(16).find(|&i| window[i..].starts_with(MAGIC)).ok_or(NotRead::NotGo)?;
    let blob = &window[at..at + 32];
    let (go_version, modinfo) = if blob[15] & 2 != 0 {
        let mut pos = start + at as u64 + 32;
        let go_version = inline_string(data, &mut pos, file_len, MAX_GO_VERSION)?;
        let modinfo = inline_string(data, &mut pos, file_len, MAX_MODINFO)?;
        (go_version, modinfo)
    } else {
        let pointer = usize::from(blob[14]);
        if pointer != 4 && pointer != 8 {
            return Err(NotRead::Malformed("Go build info (pointer size)"));
        }
        let big = blob[15] != 0;
        let go_version = go_string(data, &loads, read_word(&blob[16..], pointer, big), pointer, big, MAX_GO_VERSION)?;
        let modinfo = go_string(data, &loads, read_word(&blob[16 + pointer..], pointer, big), pointer, big, MAX_MODINFO)?;
        (go_version, modinfo)
    };
    if go_version.is_empty() {
        return Err(NotRead::NotGo);
    }
    let go_version = String::from_utf8_lossy(go_version).into_owned();
    let n = modinfo.len();
    let modinfo = if n > 2 * FRAMING && modinfo[n - FRAMING - 1] == b'\n' {
        String::from_utf8_lossy(&modinfo[FRAMING..n - FRAMING]).into_owned()
    } else {
        String::new()
    };
    Ok((go_version, modinfo))
}

/// A varint-length-prefixed string at `pos` (Go 1.18+), `pos` moved past it.
fn inline_string<'a, R: ReadRef<'a>>(data: R, pos: &mut u64, file_len: u64, max: u64) -> Result<&'a [u8], NotRead> {
    let malformed = NotRead::Malformed("Go build info (inline string)");
    let head = data.read_bytes_at(*pos, 10.min(file_len.saturating_sub(*pos))).map_err(|_| malformed.clone())?;
    let (len, used) = uvarint(head).ok_or(malformed.clone())?;
    if len > max {
        return Err(NotRead::Malformed("Go build info (string too long)"));
    }
    let start = pos.checked_add(used as u64).ok_or(malformed.clone())?;
    let bytes = data.read_bytes_at(start, len).map_err(|_| malformed.clone())?;
    *pos = start.checked_add(len).ok_or(malformed)?;
    Ok(bytes)
}

/// A Go string (pointer, length) at the virtual address `addr` (before Go 1.18).
fn go_string<'a, R: ReadRef<'a>>(data: R, loads: &[Load], addr: u64, pointer: usize, big: bool, max: u64) -> Result<&'a [u8], NotRead> {
    let malformed = || NotRead::Malformed("Go build info (string pointer)");
    let header = read_at_address(data, loads, addr, 2 * pointer as u64).ok_or_else(malformed)?;
    let (ptr, len) = (read_word(header, pointer, big), read_word(&header[pointer..], pointer, big));
    if len > max {
        return Err(NotRead::Malformed("Go build info (string too long)"));
    }
    read_at_address(data, loads, ptr, len).ok_or_else(malformed)
}

fn read_at_address<'a, R: ReadRef<'a>>(data: R, loads: &[Load], addr: u64, size: u64) -> Option<&'a [u8]> {
    let offset = loads.iter().find_map(|l| l.file_offset(addr, size))?;
    data.read_bytes_at(offset, size).ok()
}

/// A 4- or 8-byte word (the caller has checked `bytes` holds it).
fn read_word(bytes: &[u8], size: usize, big: bool) -> u64 {
    let mut word = [0u8; 8];
    let bytes = &bytes[..size.min(bytes.len())];
    if big {
        word[8 - bytes.len()..].copy_from_slice(bytes);
        u64::from_be_bytes(word)
    } else {
        word[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(word)
    }
}

/// An unsigned LEB128 varint (Go's `binary.Uvarint`): its value and length.
fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            return None;
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        io::Cursor,
        path::{Path, PathBuf},
    };

    use super::*;

    /// The Go toolchain's framing of the module information text.
    const INFO_START: [u8; 16] = [0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18, 0xe6];
    const INFO_END: [u8; 16] = [0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8, 0xf2];

    /// How the blob carries its strings.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub(crate) enum Format {
        /// Go 1.18 and later: varint-prefixed strings after the header (flag 0x2).
        Inline,
        /// Before Go 1.18: two pointers to Go string headers.
        Pointers,
    }

    /// A minimal ELF executable holding Go build info and nothing else: one writable PT_LOAD
    /// segment with the blob, and (with `sections`) a section table naming `.go.buildinfo`.
    /// Its entry point is 0 and it has no code: it does not run.
    #[derive(Clone, Debug)]
    pub(crate) struct Elf<'a> {
        pub go: &'a str,
        /// The module information text, unframed (see [`modinfo`]).
        pub modinfo: String,
        pub format: Format,
        pub class64: bool,
        pub big_endian: bool,
        pub sections: bool,
        /// Bytes before the blob in its segment, with a decoy magic at an unaligned offset.
        pub lead: usize,
    }

    impl Elf<'_> {
        pub(crate) fn amd64(go: &str, modinfo: String, format: Format) -> Elf<'_> {
            Elf { go, modinfo, format, class64: true, big_endian: false, sections: true, lead: 0 }
        }
    }

    struct Out {
        big: bool,
        wide: bool,
        buf: Vec<u8>,
    }

    impl Out {
        fn u8s(&mut self, b: &[u8]) {
            self.buf.extend_from_slice(b);
        }
        fn u16(&mut self, v: u16) {
            let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
            self.u8s(&b);
        }
        fn u32(&mut self, v: u32) {
            let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
            self.u8s(&b);
        }
        fn u64(&mut self, v: u64) {
            let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
            self.u8s(&b);
        }
        /// An address, offset or size: 8 bytes in ELF64, 4 in ELF32.
        fn word(&mut self, v: u64) {
            if self.wide { self.u64(v) } else { self.u32(v as u32) }
        }
        fn pad_to(&mut self, align: usize) {
            while !self.buf.len().is_multiple_of(align) {
                self.buf.push(0);
            }
        }
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Module information text as Go's `BuildInfo.String` writes it (without the `go` line).
    pub(crate) fn modinfo(path: &str, module: Option<(&str, &str)>, settings: &[(&str, &str)]) -> String {
        let quote = |v: &str| {
            if v.contains([' ', '\t', '"', '`']) {
                format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                v.to_string()
            }
        };
        let mut text = format!("path\t{path}\n");
        if let Some((module, version)) = module {
            text.push_str(&format!("mod\t{module}\t{version}\t\n"));
        }
        for (k, v) in settings {
            text.push_str(&format!("build\t{k}={}\n", quote(v)));
        }
        text
    }

    pub(crate) fn elf(spec: &Elf) -> Vec<u8> {
        let (wide, big) = (spec.class64, spec.big_endian);
        let pointer: usize = if wide { 8 } else { 4 };
        let (ehsize, phentsize, shentsize) = if wide { (64u16, 56u16, 64u16) } else { (52, 32, 40) };
        let data_off: u64 = 0x100;
        let data_vaddr: u64 = 0x40_0000 + data_off;
        let mut framed = INFO_START.to_vec();
        framed.extend_from_slice(spec.modinfo.as_bytes());
        framed.extend_from_slice(&INFO_END);

        // The segment: lead, blob header, then the strings.
        let mut seg = Out { big, wide, buf: Vec::new() };
        for i in 0..spec.lead {
            seg.buf.push(if (3..17).contains(&i) { MAGIC[i - 3] } else { 0xaa });
        }
        seg.pad_to(16);
        let blob_at = seg.buf.len();
        seg.u8s(MAGIC);
        seg.u8s(&[pointer as u8]);
        match spec.format {
            Format::Inline => {
                seg.u8s(&[2 | u8::from(big)]);
                seg.u8s(&[0; 16]);
                varint(spec.go.len() as u64, &mut seg.buf);
                seg.u8s(spec.go.as_bytes());
                varint(framed.len() as u64, &mut seg.buf);
                seg.u8s(&framed);
            }
            Format::Pointers => {
                seg.u8s(&[u8::from(big)]);
                // Two pointers to string headers right after the 32-byte header, then the strings.
                let headers = data_vaddr + blob_at as u64 + 32;
                let strings = headers + 4 * pointer as u64;
                seg.word(headers);
                seg.word(headers + 2 * pointer as u64);
                seg.pad_to(16);
                seg.buf.resize(blob_at + 32, 0);
                seg.word(strings);
                seg.word(spec.go.len() as u64);
                seg.word(strings + spec.go.len() as u64);
                seg.word(framed.len() as u64);
                seg.u8s(spec.go.as_bytes());
                seg.u8s(&framed);
            }
        }
        seg.pad_to(16);
        let blob_len = seg.buf.len() - blob_at;
        // The segment goes on after the section (`.noptrdata` in a real binary): Go's reader
        // wants bytes after the last string.
        seg.u8s(&[0; 16]);

        let mut out = Out { big, wide, buf: Vec::new() };
        let shstrtab = b"\0.go.buildinfo\0.shstrtab\0";
        let shstrtab_off = data_off + seg.buf.len() as u64;
        let shoff = (shstrtab_off + shstrtab.len() as u64).next_multiple_of(8);
        // ELF header.
        out.u8s(&[0x7f, b'E', b'L', b'F', if wide { 2 } else { 1 }, if big { 2 } else { 1 }, 1, 0]);
        out.u8s(&[0; 8]);
        out.u16(2); // ET_EXEC
        out.u16(if wide { 62 } else { 8 }); // x86-64, or 32-bit big-endian MIPS
        out.u32(1);
        out.word(0); // no entry point
        out.word(u64::from(ehsize));
        out.word(if spec.sections { shoff } else { 0 });
        out.u32(0);
        out.u16(ehsize);
        out.u16(phentsize);
        out.u16(1);
        out.u16(shentsize);
        out.u16(if spec.sections { 3 } else { 0 });
        out.u16(if spec.sections { 2 } else { 0 });
        // Program header: one PT_LOAD, read-write.
        let filesz = seg.buf.len() as u64;
        if wide {
            out.u32(1);
            out.u32(6);
            out.word(data_off);
            out.word(data_vaddr);
            out.word(data_vaddr);
            out.word(filesz);
            out.word(filesz);
            out.word(0x1000);
        } else {
            out.u32(1);
            out.word(data_off);
            out.word(data_vaddr);
            out.word(data_vaddr);
            out.word(filesz);
            out.word(filesz);
            out.u32(6);
            out.word(0x1000);
        }
        out.buf.resize(data_off as usize, 0);
        out.u8s(&seg.buf);
        out.u8s(shstrtab);
        if spec.sections {
            out.buf.resize(shoff as usize, 0);
            let section = |out: &mut Out, name: u32, kind: u32, flags: u64, addr: u64, offset: u64, size: u64, align: u64| {
                out.u32(name);
                out.u32(kind);
                out.word(flags);
                out.word(addr);
                out.word(offset);
                out.word(size);
                out.u32(0);
                out.u32(0);
                out.word(align);
                out.word(0);
            };
            section(&mut out, 0, 0, 0, 0, 0, 0, 0);
            let blob_off = data_off + blob_at as u64;
            section(&mut out, 1, 1, 3, data_vaddr + blob_at as u64, blob_off, blob_len as u64, 16);
            section(&mut out, 15, 3, 0, 0, shstrtab_off, shstrtab.len() as u64, 1);
        }
        out.buf
    }

    fn read_bytes(bytes: &[u8]) -> Result<BuildInfo, NotRead> {
        read(Cursor::new(bytes))
    }

    /// A reader that counts what is read through it.
    struct Counting<R> {
        inner: R,
        read: std::rc::Rc<Cell<u64>>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    fn read_counting(file: impl Read + Seek) -> (Result<BuildInfo, NotRead>, u64) {
        let count = std::rc::Rc::new(Cell::new(0));
        let result = read(Counting { inner: file, read: count.clone() });
        (result, count.get())
    }

    fn containerd_modinfo() -> String {
        modinfo(
            "github.com/containerd/containerd/cmd/containerd",
            Some(("github.com/containerd/containerd", "(devel)")),
            &[
                ("-buildmode", "exe"),
                ("-compiler", "gc"),
                ("-ldflags", "-s -w -X github.com/containerd/containerd/version.Version=1.6.20 -X github.com/containerd/containerd/version.Revision=2806fc1057397dbaeefbea0e4e17bddfbd388f38 -X github.com/containerd/containerd/version.Package=containerd.io"),
                ("CGO_ENABLED", "1"),
            ],
        )
    }

    #[test]
    fn inline_strings_of_go_1_18_and_later() {
        let info = read_bytes(&elf(&Elf::amd64("go1.19.7", containerd_modinfo(), Format::Inline))).expect("build info");
        assert_eq!(info.go_version, "go1.19.7");
        assert_eq!(info.path.as_deref(), Some("github.com/containerd/containerd/cmd/containerd"));
        assert_eq!(info.module, Some(Module { path: "github.com/containerd/containerd".into(), version: "(devel)".into() }));
        assert_eq!(info.setting("CGO_ENABLED"), Some("1"));
        let stamp = info.version().expect("version");
        assert_eq!(stamp.version, "1.6.20");
        assert_eq!(stamp.source.to_string(), "-X github.com/containerd/containerd/version.Version");
    }

    #[test]
    fn pointers_of_older_go() {
        let text = modinfo("sigs.k8s.io/cri-tools/cmd/crictl", Some(("sigs.k8s.io/cri-tools", "v1.23.0")), &[]);
        let info = read_bytes(&elf(&Elf::amd64("go1.17.5", text.clone(), Format::Pointers))).expect("build info");
        assert_eq!(info.go_version, "go1.17.5");
        assert_eq!(info.version(), Some(Stamp { version: "v1.23.0".into(), source: Source::Module { path: "sigs.k8s.io/cri-tools".into() } }));
        // 32-bit big-endian (MIPS), both formats.
        for format in [Format::Pointers, Format::Inline] {
            let spec = Elf { class64: false, big_endian: true, ..Elf::amd64("go1.17.5", text.clone(), format) };
            let info = read_bytes(&elf(&spec)).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(info.version().map(|s| s.version).as_deref(), Some("v1.23.0"), "{format:?}");
        }
    }

    #[test]
    fn without_a_section_table_the_data_segment_is_searched_at_aligned_offsets() {
        for format in [Format::Inline, Format::Pointers] {
            let spec = Elf { sections: false, lead: 40, ..Elf::amd64("go1.22.5", containerd_modinfo(), format) };
            let bytes = elf(&spec);
            // The decoy magic at an unaligned offset is passed over.
            assert!(bytes.windows(MAGIC.len()).filter(|w| *w == MAGIC).count() == 2);
            let info = read_bytes(&bytes).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(info.version().map(|s| s.version).as_deref(), Some("1.6.20"), "{format:?}");
        }
    }

    #[test]
    fn files_without_build_info() {
        assert_eq!(read_bytes(b"#!/bin/sh\necho 'containerd 1.7.0'\n"), Err(NotRead::NotElf));
        assert_eq!(read_bytes(b""), Err(NotRead::NotElf));
        assert_eq!(read_bytes(b"\x7fELF"), Err(NotRead::NotElf));
        let mut bytes = elf(&Elf::amd64("go1.22.5", containerd_modinfo(), Format::Inline));
        let at = bytes.windows(MAGIC.len()).position(|w| w == MAGIC).expect("magic");
        bytes[at + 1] = b'X';
        assert_eq!(read_bytes(&bytes), Err(NotRead::NotGo));
        // A GOPATH build without modules: the Go version, no module text.
        let info = read_bytes(&elf(&Elf::amd64("go1.19.8", String::new(), Format::Inline)));
        assert_eq!(info.map(|i| (i.version(), i.go_version, i.path)), Ok((None, "go1.19.8".into(), None)));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_answer() {
        for format in [Format::Inline, Format::Pointers] {
            let whole = elf(&Elf::amd64("go1.22.5", containerd_modinfo(), format));
            for n in 0..whole.len() {
                let _ = read_bytes(&whole[..n]);
            }
            for i in 0..whole.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut bytes = whole.clone();
                    bytes[i] ^= flip;
                    if let Ok(info) = read_bytes(&bytes) {
                        let _ = info.version();
                    }
                }
            }
        }
    }

    #[test]
    fn hostile_sizes_stay_within_the_budget() {
        let whole = elf(&Elf::amd64("go1.22.5", containerd_modinfo(), Format::Inline));
        // A 16 MiB file whose headers claim huge tables and strings.
        let mut big = whole.clone();
        big.resize(16 << 20, 0x41);
        let patch = |bytes: &mut Vec<u8>, at: usize, value: &[u8]| bytes[at..at + value.len()].copy_from_slice(value);
        let mut cases = Vec::new();
        let mut many_sections = big.clone();
        patch(&mut many_sections, 0x3c, &0xffffu16.to_le_bytes()); // e_shnum
        cases.push(many_sections);
        let mut huge_section = big.clone();
        let shoff = u64::from_le_bytes(whole[0x28..0x30].try_into().expect("8 bytes")) as usize;
        patch(&mut huge_section, shoff + 64 + 0x20, &(15u64 << 20).to_le_bytes()); // .go.buildinfo sh_size
        cases.push(huge_section);
        let mut huge_string = big.clone();
        let at = whole.windows(MAGIC.len()).position(|w| w == MAGIC).expect("magic");
        patch(&mut huge_string, at + 32 + 1 + 8, &[0xff, 0xff, 0xff, 0x07]); // modinfo length varint
        cases.push(huge_string);
        let mut no_names = big.clone();
        patch(&mut no_names, shoff + 2 * 64 + 0x20, &(15u64 << 20).to_le_bytes()); // .shstrtab sh_size
        cases.push(no_names);
        for (i, bytes) in cases.into_iter().enumerate() {
            let (result, read) = read_counting(Cursor::new(bytes));
            assert!(read <= READ_BUDGET, "case {i}: read {read} bytes");
            if let Ok(info) = result {
                assert_eq!(info.version().map(|s| s.version).as_deref(), Some("1.6.20"), "case {i}");
            }
        }
    }

    #[test]
    fn settings_and_quoting() {
        let text = concat!(
            "path\tk8s.io/kubernetes/cmd/kubelet\n",
            "mod\tk8s.io/kubernetes\t(devel)\t\n",
            "dep\tgithub.com/x/y\tv1.0.0\th1:abc=\n",
            "=>\t../y\t(devel)\t\n",
            "build\t-ldflags=\"-X 'k8s.io/client-go/pkg/version.gitVersion=v1.31.1' -X 'k8s.io/component-base/version.gitMajor=1' -X=k8s.io/component-base/version.gitVersion=v1.31.1\"\n",
            "build\t\"we\\\"ird key\"=`raw value`\n",
            "build\tbad\n",
            "build\t=x\n",
            "build\tGOOS=linux\n",
            "build\tunterminated=\"x\n",
            "build\tlast=no newline",
        );
        let info = parse_modinfo("go1.22.6".into(), text);
        assert_eq!(info.settings.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["-ldflags", "we\"ird key", "GOOS"]);
        assert_eq!(info.setting("we\"ird key"), Some("raw value"));
        assert_eq!(
            info.ldflags_x(),
            [
                ("k8s.io/client-go/pkg/version.gitVersion".to_string(), "v1.31.1".to_string()),
                ("k8s.io/component-base/version.gitMajor".into(), "1".into()),
                ("k8s.io/component-base/version.gitVersion".into(), "v1.31.1".into()),
            ]
        );
        let stamp = info.version().expect("version");
        assert_eq!((stamp.version.as_str(), stamp.source.to_string().as_str()), ("v1.31.1", "-X k8s.io/client-go/pkg/version.gitVersion"));
        assert_eq!(quoted_prefix(r#""a\tb\x41\101\u00e9\U0001F600\\" tail"#), Some(("a\tbAAé😀\\".to_string(), 32)));
        for bad in [r#""\q""#, r#""\x4""#, r#""\777""#, r#""\uD800""#, "\"abc", "`abc"] {
            assert_eq!(quoted_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn which_variable_is_the_version() {
        let with = |module: Option<(&str, &str)>, ldflags: &str| parse_modinfo("go1.22.5".into(), &modinfo("github.com/k0sproject/k0s", module, &[("-ldflags", ldflags)]));
        let k0s = with(
            Some(("github.com/k0sproject/k0s", "(devel)")),
            "-w -s -X github.com/k0sproject/k0s/pkg/build.RuncVersion=1.1.12 -X github.com/k0sproject/k0s/pkg/build.Version=v1.30.2+k0s.0 -X github.com/k0sproject/k0s/pkg/build.KubernetesVersion=v1.30.2",
        );
        assert_eq!(k0s.version().map(|s| s.version).as_deref(), Some("v1.30.2+k0s.0"));
        // An own package's variable beats another module's; the last -X of a variable wins.
        let own = with(Some(("github.com/k0sproject/k0s", "v1.29.0")), "-X other.org/lib/version.Version=9.9.9 -X main.version=dev -X main.version=1.2.3");
        assert_eq!(own.version().map(|s| s.source.to_string()).as_deref(), Some("-X main.version"));
        assert_eq!(own.version().map(|s| s.version).as_deref(), Some("1.2.3"));
        // Not version-looking values are passed over, down to the module.
        let module = with(Some(("github.com/k0sproject/k0s", "v1.29.0")), "-X main.version=dev -X main.goVersion=go1.22");
        assert_eq!(module.version(), Some(Stamp { version: "v1.29.0".into(), source: Source::Module { path: "github.com/k0sproject/k0s".into() } }));
        assert_eq!(with(Some(("github.com/k0sproject/k0s", "(devel)")), "-s -w").version(), None);
        // A name ending in Version counts only in the binary's own packages.
        assert_eq!(with(None, "-X github.com/other/lib.RuncVersion=1.1.12").version(), None);
        assert_eq!(with(None, "-X github.com/k0sproject/k0s/pkg/build.BuildVersion=1.1.12").version().map(|s| s.version).as_deref(), Some("1.1.12"));
        // -ldflags with a package pattern, --X and -X= forms, quoted fields.
        assert_eq!(with(None, "all=-s --X 'main.version=4.5.6'").version().map(|s| s.version).as_deref(), Some("4.5.6"));
        assert_eq!(with(None, "-X=main.version=4.5.7").version().map(|s| s.version).as_deref(), Some("4.5.7"));
        assert_eq!(with(None, "-X 'main.version=4.5.8").version(), None, "unterminated quote");
        assert_eq!(split_flags(" -a  'b c'\t\"d\" e'f' "), Some(vec!["-a", "b c", "d", "e'f'"]));
    }

    #[test]
    fn varints() {
        assert_eq!(uvarint(&[0x05]), Some((5, 1)));
        assert_eq!(uvarint(&[0xc6, 0x01]), Some((198, 2)));
        assert_eq!(uvarint(&[0x80]), None);
        assert_eq!(uvarint(&[0xff; 10]), None);
        assert_eq!(uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Some((u64::MAX, 10)));
    }

    /// Debian's Go binaries installed by `cargo xtask setup` (TEST_PACKAGES: containerd, runc):
    /// read within the budget. Debian builds them with `-trimpath` (so Go records no
    /// `-ldflags`) in GOPATH mode (no module line): they carry no version to read.
    #[test]
    fn debian_binaries() {
        for (file, path) in [
            ("/usr/bin/containerd", "github.com/containerd/containerd/cmd/containerd"),
            ("/usr/bin/ctr", "github.com/containerd/containerd/cmd/ctr"),
            ("/usr/bin/containerd-shim-runc-v2", "github.com/containerd/containerd/cmd/containerd-shim-runc-v2"),
            ("/usr/sbin/runc", "github.com/opencontainers/runc"),
        ] {
            let opened = std::fs::File::open(file)
                .unwrap_or_else(|e| panic!("{file}: {e}: install the test packages (`cargo xtask setup --scope test`: containerd, runc)"));
            let (result, read) = read_counting(opened);
            let info = result.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(read <= READ_BUDGET, "{file}: read {read} bytes");
            assert!(info.go_version.starts_with("go1."), "{file}: {info:?}");
            assert_eq!(info.path.as_deref(), Some(path), "{file}");
            assert_eq!(info.setting("-trimpath"), Some("true"), "{file}: {info:?}");
            assert_eq!(info.setting("-ldflags"), None, "{file}: Go keeps -ldflags out of a -trimpath build");
            assert_eq!(info.version(), None, "{file}: {info:?}");
        }
    }

    /// One fixture binary: where it is under tests/fixtures/nodes/, its build info, and the
    /// version the shell-script stand-in it replaced printed.
    struct Fixture {
        file: &'static str,
        go: &'static str,
        path: &'static str,
        module: Option<(&'static str, &'static str)>,
        ldflags: &'static str,
        format: Format,
        version: &'static str,
    }

    const fn ldflags(file: &'static str, go: &'static str, path: &'static str, module: Option<(&'static str, &'static str)>, ldflags: &'static str, version: &'static str) -> Fixture {
        Fixture { file, go, path, module, ldflags, format: Format::Inline, version }
    }

    const CONTAINERD: &str = "github.com/containerd/containerd";
    const CONTAINERD2: &str = "github.com/containerd/containerd/v2";
    const KUBERNETES: &str = "k8s.io/kubernetes";
    const CRI_TOOLS: &str = "sigs.k8s.io/cri-tools";
    const RUNC: &str = "github.com/opencontainers/runc";

    const FIXTURES: &[Fixture] = &[
        // healthy-containerd2-v3: containerd 2.0.2 from the release tarball, crictl installed with `go install`.
        ldflags("healthy-containerd2-v3/usr/local/bin/containerd", "go1.23.4", "github.com/containerd/containerd/v2/cmd/containerd", Some((CONTAINERD2, "(devel)")),
            "-X github.com/containerd/containerd/v2/version.Version=v2.0.2 -X github.com/containerd/containerd/v2/version.Revision=c507a0257ea6462fbd6f5ba4f5c74facb04021f4 -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2 -s -w", "v2.0.2"),
        ldflags("healthy-containerd2-v3/usr/local/bin/ctr", "go1.23.4", "github.com/containerd/containerd/v2/cmd/ctr", Some((CONTAINERD2, "(devel)")),
            "-X github.com/containerd/containerd/v2/version.Version=v2.0.2 -X github.com/containerd/containerd/v2/version.Revision=c507a0257ea6462fbd6f5ba4f5c74facb04021f4 -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2 -s -w", "v2.0.2"),
        ldflags("healthy-containerd2-v3/usr/local/bin/crictl", "go1.23.2", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "v1.31.1")), "", "v1.31.1"),
        ldflags("healthy-containerd2-v3/usr/local/sbin/runc", "go1.22.10", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.2.4-0-g6c52b3fc -X main.version=1.2.4 -linkmode external -extldflags --static-pie", "1.2.4"),
        ldflags("healthy-containerd2-v3/usr/bin/kubelet", "go1.22.6", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.31.1' -X 'k8s.io/component-base/version.gitVersion=v1.31.1' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=31' -X 'k8s.io/component-base/version.gitTreeState=clean'", "v1.31.1"),
        // healthy-kubeadm-containerd17: Docker's containerd.io package, kubeadm's kubelet.
        ldflags("healthy-kubeadm-containerd17/usr/bin/containerd", "go1.21.6", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.13 -X github.com/containerd/containerd/version.Revision=7c3aca7a610df76212171d200ca3811ff6096eb8 -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.7.13"),
        ldflags("healthy-kubeadm-containerd17/usr/bin/ctr", "go1.21.6", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.13 -X github.com/containerd/containerd/version.Revision=7c3aca7a610df76212171d200ca3811ff6096eb8 -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.7.13"),
        ldflags("healthy-kubeadm-containerd17/usr/bin/crictl", "go1.22.2", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.30.0 -s -w", "v1.30.0"),
        ldflags("healthy-kubeadm-containerd17/usr/bin/runc", "go1.21.6", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.1.12-0-g51d5e946 -X main.version=1.1.12", "1.1.12"),
        ldflags("healthy-kubeadm-containerd17/usr/bin/kubelet", "go1.22.4", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.30.2' -X 'k8s.io/component-base/version.gitVersion=v1.30.2' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=30'", "v1.30.2"),
        // incident1: the kOps nodeup cache's two crictl copies, and containerd from the cri-containerd-cni bundle.
        ldflags("incident1-kops-nodeup-crictl/var/cache/nodeup/extracted/sha256:8d2b8e0d0a4e4a5ac4b3c7c7e3f0c8d5b4a7f3b8c9e2d1f0a6b5c4d3e2f1a0b9_https___github_com_containerd_containerd_releases_download_v1_7_6_cri-containerd-cni-1_7_6-linux-amd64_tar_gz/usr/local/bin/containerd",
            "go1.20.8", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.6 -X github.com/containerd/containerd/version.Revision=091922f03c2762540fd057fba91260237ff86acb -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "v1.7.6"),
        ldflags("incident1-kops-nodeup-crictl/var/cache/nodeup/extracted/sha256:8d2b8e0d0a4e4a5ac4b3c7c7e3f0c8d5b4a7f3b8c9e2d1f0a6b5c4d3e2f1a0b9_https___github_com_containerd_containerd_releases_download_v1_7_6_cri-containerd-cni-1_7_6-linux-amd64_tar_gz/usr/local/bin/crictl",
            "go1.20.4", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.27.0 -s -w", "v1.27.0"),
        ldflags("incident1-kops-nodeup-crictl/var/cache/nodeup/extracted/sha256:d46ba3f4aa3b5c1e0c8b2e6f2c9a5f8b7d0e4c3a2b1f0e9d8c7b6a5f4e3d2c1b_https___github_com_kubernetes-sigs_cri-tools_releases_download_v1_29_0_crictl-v1_29_0-linux-amd64_tar_gz/crictl",
            "go1.21.5", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.29.0 -s -w", "v1.29.0"),
        // incident2: KubeKey's cri-dockerd next to containerd.
        ldflags("incident2-kubekey-cri-dockerd/usr/bin/containerd", "go1.20.13", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.13 -X github.com/containerd/containerd/version.Revision=7c3aca7a610df76212171d200ca3811ff6096eb8 -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "v1.7.13"),
        ldflags("incident2-kubekey-cri-dockerd/usr/bin/ctr", "go1.20.13", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.13 -X github.com/containerd/containerd/version.Revision=7c3aca7a610df76212171d200ca3811ff6096eb8 -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "v1.7.13"),
        ldflags("incident2-kubekey-cri-dockerd/usr/bin/cri-dockerd", "go1.20.10", "github.com/Mirantis/cri-dockerd", Some(("github.com/Mirantis/cri-dockerd", "(devel)")),
            "-s -w -buildid=c8fe1d3 -X github.com/Mirantis/cri-dockerd/cmd/version.Version=0.3.9 -X github.com/Mirantis/cri-dockerd/cmd/version.PreRelease= -X github.com/Mirantis/cri-dockerd/cmd/version.GitCommit=c8fe1d3", "0.3.9"),
        ldflags("incident2-kubekey-cri-dockerd/usr/bin/runc", "go1.20.13", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.1.12-0-g51d5e946 -X main.version=1.1.12", "1.1.12"),
        ldflags("incident2-kubekey-cri-dockerd/usr/local/bin/crictl", "go1.21.5", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.29.0 -s -w", "v1.29.0"),
        ldflags("incident2-kubekey-cri-dockerd/usr/local/bin/kubelet", "go1.21.9", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.28.8' -X 'k8s.io/component-base/version.gitVersion=v1.28.8' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=28'", "v1.28.8"),
        // incident3: Docker 20.10 (a GOPATH build: no module line) with dockershim; crictl from `go install` with Go 1.17 (pointers, no build settings).
        ldflags("incident3-dockershim-v1alpha2/usr/bin/containerd", "go1.19.7", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.6.20 -X github.com/containerd/containerd/version.Revision=2806fc1057397dbaeefbea0e4e17bddfbd388f38 -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.6.20"),
        ldflags("incident3-dockershim-v1alpha2/usr/bin/ctr", "go1.19.7", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.6.20 -X github.com/containerd/containerd/version.Revision=2806fc1057397dbaeefbea0e4e17bddfbd388f38 -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.6.20"),
        ldflags("incident3-dockershim-v1alpha2/usr/bin/dockerd", "go1.19.7", "github.com/docker/docker/cmd/dockerd", None,
            "-w -X \"github.com/docker/docker/dockerversion.Version=20.10.24\" -X \"github.com/docker/docker/dockerversion.GitCommit=5d6db84\" -X \"github.com/docker/docker/dockerversion.BuildTime=2023-04-04T10:07:41.000000000+00:00\" -X \"github.com/docker/docker/dockerversion.PlatformName=Docker Engine - Community\"", "20.10.24"),
        ldflags("incident3-dockershim-v1alpha2/usr/bin/runc", "go1.19.7", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.1.5-0-gf19387a -X main.version=1.1.5", "1.1.5"),
        Fixture { file: "incident3-dockershim-v1alpha2/usr/bin/crictl", go: "go1.17.5", path: "sigs.k8s.io/cri-tools/cmd/crictl", module: Some((CRI_TOOLS, "v1.23.0")), ldflags: "", format: Format::Pointers, version: "v1.23.0" },
        ldflags("incident3-dockershim-v1alpha2/usr/bin/kubelet", "go1.19.6", "k8s.io/kubernetes/cmd/kubelet", None,
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.23.17' -X 'k8s.io/component-base/version.gitVersion=v1.23.17' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=23'", "v1.23.17"),
        // incident4: Kubespray's containerd 2.0.2, kubelet 1.30.4.
        ldflags("incident4-kubespray-containerd2-v3/usr/local/bin/containerd", "go1.23.4", "github.com/containerd/containerd/v2/cmd/containerd", Some((CONTAINERD2, "(devel)")),
            "-X github.com/containerd/containerd/v2/version.Version=v2.0.2 -X github.com/containerd/containerd/v2/version.Revision=c507a0257ea6462fbd6f5ba4f5c74facb04021f4 -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2 -s -w", "v2.0.2"),
        ldflags("incident4-kubespray-containerd2-v3/usr/local/bin/ctr", "go1.23.4", "github.com/containerd/containerd/v2/cmd/ctr", Some((CONTAINERD2, "(devel)")),
            "-X github.com/containerd/containerd/v2/version.Version=v2.0.2 -X github.com/containerd/containerd/v2/version.Revision=c507a0257ea6462fbd6f5ba4f5c74facb04021f4 -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2 -s -w", "v2.0.2"),
        ldflags("incident4-kubespray-containerd2-v3/usr/local/bin/crictl", "go1.22.4", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.30.1 -s -w", "v1.30.1"),
        ldflags("incident4-kubespray-containerd2-v3/usr/local/bin/runc", "go1.22.10", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.2.3-0-g0d37cfd4 -X main.version=1.2.3 -linkmode external -extldflags --static-pie", "1.2.3"),
        ldflags("incident4-kubespray-containerd2-v3/usr/local/bin/kubelet", "go1.22.5", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.30.4' -X 'k8s.io/component-base/version.gitVersion=v1.30.4' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=30'", "v1.30.4"),
        // incident5: k0s and the containerd it unpacks.
        ldflags("incident5-k0s-airgap-images/usr/local/bin/k0s", "go1.22.4", "github.com/k0sproject/k0s", Some(("github.com/k0sproject/k0s", "(devel)")),
            "-w -s -extldflags=-static -X github.com/k0sproject/k0s/pkg/build.Version=v1.30.2+k0s.0 -X github.com/k0sproject/k0s/pkg/build.RuncVersion=1.1.12 -X github.com/k0sproject/k0s/pkg/build.ContainerdVersion=1.7.18 -X github.com/k0sproject/k0s/pkg/build.KubernetesVersion=1.30.2", "v1.30.2+k0s.0"),
        ldflags("incident5-k0s-airgap-images/var/lib/k0s/bin/containerd", "go1.22.4", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.18 -X github.com/containerd/containerd/version.Revision=ae71819c4f5e67bb4d5ae76a6b735f29cc25774e -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w -extldflags -static", "v1.7.18"),
        // defaults-kubeadm: pkgs.k8s.io v1.30 packages, Docker's containerd.io 1.7.27 (with runc 1.2.5).
        ldflags("defaults-kubeadm/usr/bin/kubelet", "go1.23.6", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.30.11' -X 'k8s.io/component-base/version.gitVersion=v1.30.11' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=30'", "v1.30.11"),
        ldflags("defaults-kubeadm/usr/bin/containerd", "go1.23.7", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.27 -X github.com/containerd/containerd/version.Revision=05044ec0a9a75232cad458027ca83437aae3f4da -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.7.27"),
        ldflags("defaults-kubeadm/usr/bin/ctr", "go1.23.7", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.27 -X github.com/containerd/containerd/version.Revision=05044ec0a9a75232cad458027ca83437aae3f4da -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.7.27"),
        ldflags("defaults-kubeadm/usr/bin/runc", "go1.23.7", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.2.5-0-g59923ef1 -X main.version=1.2.5", "1.2.5"),
        ldflags("defaults-kubeadm/usr/bin/crictl", "go1.22.4", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.30.1 -s -w", "v1.30.1"),
        // defaults-crio: the same kubeadm packages (CRI-O's crio carries no -ldflags version: left out).
        ldflags("defaults-crio/usr/bin/kubelet", "go1.23.6", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.30.11' -X 'k8s.io/component-base/version.gitVersion=v1.30.11' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=30'", "v1.30.11"),
        ldflags("defaults-crio/usr/bin/crictl", "go1.22.4", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.30.1 -s -w", "v1.30.1"),
        // defaults-docker-cri-dockerd: docker-ce 27.3.1, containerd.io 1.7.22 (with runc 1.1.14), cri-dockerd 0.3.15, kubeadm packages.
        ldflags("defaults-docker-cri-dockerd/usr/bin/containerd", "go1.22.7", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.22 -X github.com/containerd/containerd/version.Revision=7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.7.22"),
        ldflags("defaults-docker-cri-dockerd/usr/bin/ctr", "go1.22.7", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.22 -X github.com/containerd/containerd/version.Revision=7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.7.22"),
        ldflags("defaults-docker-cri-dockerd/usr/bin/runc", "go1.22.7", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.1.14-0-g2c9f560 -X main.version=1.1.14", "1.1.14"),
        ldflags("defaults-docker-cri-dockerd/usr/bin/dockerd", "go1.22.7", "github.com/docker/docker/cmd/dockerd", None,
            "-w -X \"github.com/docker/docker/dockerversion.Version=27.3.1\" -X \"github.com/docker/docker/dockerversion.GitCommit=41ca978\" -X \"github.com/docker/docker/dockerversion.BuildTime=2024-09-20T11:41:11.000000000+00:00\" -X \"github.com/docker/docker/dockerversion.PlatformName=Docker Engine - Community\"", "27.3.1"),
        ldflags("defaults-docker-cri-dockerd/usr/bin/kubelet", "go1.23.6", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.30.11' -X 'k8s.io/component-base/version.gitVersion=v1.30.11' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=30'", "v1.30.11"),
        ldflags("defaults-docker-cri-dockerd/usr/bin/crictl", "go1.22.4", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.30.1 -s -w", "v1.30.1"),
        ldflags("defaults-docker-cri-dockerd/usr/bin/cri-dockerd", "go1.22.5", "github.com/Mirantis/cri-dockerd", Some(("github.com/Mirantis/cri-dockerd", "(devel)")),
            "-s -w -buildid=c1c566e -X github.com/Mirantis/cri-dockerd/cmd/version.Version=0.3.15 -X github.com/Mirantis/cri-dockerd/cmd/version.PreRelease= -X github.com/Mirantis/cri-dockerd/cmd/version.GitCommit=c1c566e", "0.3.15"),
        // docker-host-no-kubernetes: docker-ce 27.3.1, containerd.io 1.7.22 (with runc 1.1.14).
        ldflags("docker-host-no-kubernetes/usr/bin/containerd", "go1.22.7", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.22 -X github.com/containerd/containerd/version.Revision=7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.7.22"),
        ldflags("docker-host-no-kubernetes/usr/bin/ctr", "go1.22.7", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.22 -X github.com/containerd/containerd/version.Revision=7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c -X github.com/containerd/containerd/version.Package=containerd.io -s -w", "1.7.22"),
        ldflags("docker-host-no-kubernetes/usr/bin/runc", "go1.22.7", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.1.14-0-g2c9f560 -X main.version=1.1.14", "1.1.14"),
        ldflags("docker-host-no-kubernetes/usr/bin/dockerd", "go1.22.7", "github.com/docker/docker/cmd/dockerd", None,
            "-w -X \"github.com/docker/docker/dockerversion.Version=27.3.1\" -X \"github.com/docker/docker/dockerversion.GitCommit=41ca978\" -X \"github.com/docker/docker/dockerversion.BuildTime=2024-09-20T11:41:11.000000000+00:00\" -X \"github.com/docker/docker/dockerversion.PlatformName=Docker Engine - Community\"", "27.3.1"),
        // defaults-k0s: the same k0s release as incident5 and the containerd it unpacks.
        ldflags("defaults-k0s/usr/local/bin/k0s", "go1.22.4", "github.com/k0sproject/k0s", Some(("github.com/k0sproject/k0s", "(devel)")),
            "-w -s -extldflags=-static -X github.com/k0sproject/k0s/pkg/build.Version=v1.30.2+k0s.0 -X github.com/k0sproject/k0s/pkg/build.RuncVersion=1.1.12 -X github.com/k0sproject/k0s/pkg/build.ContainerdVersion=1.7.18 -X github.com/k0sproject/k0s/pkg/build.KubernetesVersion=1.30.2", "v1.30.2+k0s.0"),
        ldflags("defaults-k0s/var/lib/k0s/bin/containerd", "go1.22.4", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.18 -X github.com/containerd/containerd/version.Revision=ae71819c4f5e67bb4d5ae76a6b735f29cc25774e -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w -extldflags -static", "v1.7.18"),
        // defaults-kubespray: Kubespray v2.26.0's downloads (kubelet 1.30.4, containerd 1.7.21, runc 1.1.13, crictl 1.30.0).
        ldflags("defaults-kubespray/usr/local/bin/kubelet", "go1.22.5", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.30.4' -X 'k8s.io/component-base/version.gitVersion=v1.30.4' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=30'", "v1.30.4"),
        ldflags("defaults-kubespray/usr/local/bin/containerd", "go1.22.7", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.21 -X github.com/containerd/containerd/version.Revision=472731909fa34bd7bc9c087e4c27943f9835f111 -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "v1.7.21"),
        ldflags("defaults-kubespray/usr/local/bin/ctr", "go1.22.7", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.21 -X github.com/containerd/containerd/version.Revision=472731909fa34bd7bc9c087e4c27943f9835f111 -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "v1.7.21"),
        ldflags("defaults-kubespray/usr/local/bin/runc", "go1.21.11", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.1.13-0-g58aa9203 -X main.version=1.1.13", "1.1.13"),
        ldflags("defaults-kubespray/usr/local/bin/crictl", "go1.22.2", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.30.0 -s -w", "v1.30.0"),
        // defaults-kops: kOps 1.30.3 nodeup (containerd 1.7.22 release tarball, runc 1.1.14, crictl 1.29.0), one copy of each in its cache.
        ldflags("defaults-kops/usr/local/bin/kubelet", "go1.22.5", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.30.4' -X 'k8s.io/component-base/version.gitVersion=v1.30.4' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=30'", "v1.30.4"),
        ldflags("defaults-kops/usr/bin/containerd", "go1.22.7", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.22 -X github.com/containerd/containerd/version.Revision=7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "v1.7.22"),
        ldflags("defaults-kops/usr/bin/ctr", "go1.22.7", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.22 -X github.com/containerd/containerd/version.Revision=7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "v1.7.22"),
        ldflags("defaults-kops/var/cache/nodeup/extracted/sha256:0000000000000000000000000000000000000000000000000000000000000000_https___github_com_containerd_containerd_releases_download_v1_7_22_containerd-1_7_22-linux-amd64_tar_gz/bin/containerd", "go1.22.7", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.22 -X github.com/containerd/containerd/version.Revision=7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "v1.7.22"),
        ldflags("defaults-kops/var/cache/nodeup/extracted/sha256:0000000000000000000000000000000000000000000000000000000000000000_https___github_com_containerd_containerd_releases_download_v1_7_22_containerd-1_7_22-linux-amd64_tar_gz/bin/ctr", "go1.22.7", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=v1.7.22 -X github.com/containerd/containerd/version.Revision=7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "v1.7.22"),
        ldflags("defaults-kops/usr/sbin/runc", "go1.22.7", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.1.14-0-g2c9f560 -X main.version=1.1.14", "1.1.14"),
        ldflags("defaults-kops/usr/local/bin/crictl", "go1.21.5", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.29.0 -s -w", "v1.29.0"),
        ldflags("defaults-kops/var/cache/nodeup/extracted/sha256:d16a1ffb3938f5a19d5c8f45d363bd091ef89c0bc4d44ad16b933eede32fdcbb_https___github_com_kubernetes-sigs_cri-tools_releases_download_v1_29_0_crictl-v1_29_0-linux-amd64_tar_gz/crictl", "go1.21.5", "sigs.k8s.io/cri-tools/cmd/crictl", Some((CRI_TOOLS, "(devel)")), "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.29.0 -s -w", "v1.29.0"),
        // managed-eks-al2023: AMI v20250403 (Kubernetes 1.32.1, containerd 1.7.27-1.amzn2023.0.1, runc 1.2.4-1.amzn2023.0.1).
        ldflags("managed-eks-al2023/usr/bin/kubelet", "go1.23.4", "k8s.io/kubernetes/cmd/kubelet", Some((KUBERNETES, "(devel)")),
            "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.32.1-eks-5d632ec' -X 'k8s.io/component-base/version.gitVersion=v1.32.1-eks-5d632ec' -X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=32'", "v1.32.1-eks-5d632ec"),
        ldflags("managed-eks-al2023/usr/bin/containerd", "go1.23.7", "github.com/containerd/containerd/cmd/containerd", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.27 -X github.com/containerd/containerd/version.Revision=05044ec0a9a75232cad458027ca83437aae3f4da -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "1.7.27"),
        ldflags("managed-eks-al2023/usr/bin/ctr", "go1.23.7", "github.com/containerd/containerd/cmd/ctr", Some((CONTAINERD, "(devel)")),
            "-X github.com/containerd/containerd/version.Version=1.7.27 -X github.com/containerd/containerd/version.Revision=05044ec0a9a75232cad458027ca83437aae3f4da -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd -s -w", "1.7.27"),
        ldflags("managed-eks-al2023/usr/sbin/runc", "go1.23.7", RUNC, Some((RUNC, "(devel)")), "-X main.gitCommit=v1.2.4-0-g6c52b3fc -X main.version=1.2.4", "1.2.4"),
    ];

    fn fixture_bytes(f: &Fixture) -> Vec<u8> {
        let mut settings: Vec<(&str, &str)> = Vec::new();
        if f.format == Format::Inline {
            settings.extend([("-buildmode", "exe"), ("-compiler", "gc")]);
            if !f.ldflags.is_empty() {
                settings.push(("-ldflags", f.ldflags));
            }
            settings.extend([("CGO_ENABLED", "1"), ("GOARCH", "amd64"), ("GOOS", "linux"), ("GOAMD64", "v1")]);
        }
        elf(&Elf::amd64(f.go, modinfo(f.path, f.module, &settings), f.format))
    }

    fn fixture_nodes() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nodes")
    }

    /// The fixture nodes' binaries are the generator's output (`NRM_BLESS=1` writes them), each
    /// reads back as the version its stand-in script printed, and no runtime binary of a
    /// fixture node is left out of the table (or still a script).
    #[test]
    fn fixture_binaries_are_generated() {
        let nodes = fixture_nodes();
        let bless = std::env::var_os("NRM_BLESS").is_some();
        for f in FIXTURES {
            let bytes = fixture_bytes(f);
            let stamp = read_bytes(&bytes).ok().and_then(|i| i.version());
            assert_eq!(stamp.map(|s| s.version).as_deref(), Some(f.version), "{}", f.file);
            let file = nodes.join(f.file);
            if bless {
                std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            }
            let on_disk = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(on_disk == bytes, "{} is stale: NRM_BLESS=1 cargo test -p monitor --lib fixture_binaries rewrites it", f.file);
        }
        let names = crate::node::binaries::names();
        let mut files = Vec::new();
        walk(&nodes, &mut files);
        for file in files {
            let rel = file.strip_prefix(&nodes).unwrap_or(&file).to_string_lossy().into_owned();
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Files under a node's /etc named after a daemon are its settings
            // (/etc/default/kubelet, /etc/sysconfig/kubelet), not binaries.
            let settings = rel.split_once('/').is_some_and(|(_, host_path)| host_path.starts_with("etc/"));
            if names.contains(&name) && !settings && !FIXTURES.iter().any(|f| f.file == rel) {
                panic!("{rel}: a runtime binary of a fixture node that the generator does not make");
            }
        }
    }

    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
}
