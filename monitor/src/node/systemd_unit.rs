//! systemd service units as systemd itself reads them: the unit file first found on the search
//! path and its drop-ins (systemd.unit(5)), the file syntax (systemd.syntax(7): sections,
//! comments, `\` continuations), `Environment=` and `EnvironmentFile=` (systemd.exec(5)) and the
//! `ExecStart=` command lines with their quoting and `$VAR`/`${VAR}` expansion
//! (systemd.service(5), "Command lines"). Any component's unit reads the same way: kubelet's,
//! containerd's, CRI-O's, dockerd's, cri-dockerd's.
//!
//! Every word keeps the `file:line` it comes from: the `ExecStart=` line for a literal word, the
//! `Environment=` line or the environment file's line for a word a variable brought in.
//!
//! Departures from systemd, all on input systemd would reject or warn about: an unknown `\`
//! escape keeps the escaped character (systemd refuses the line); specifiers other than `%%` stay
//! literal (`%n`, `%i`: none of the runtimes' or kubelet's units use them); drop-ins are read even
//! when no unit file exists (systemd would not load the unit; a node caught mid-install still says
//! what it will run).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use super::host_root::{FileError, HostRoot};

/// systemd's system unit search path, highest priority first (systemd.unit(5), "Unit File Load
/// Path"), with `/lib/systemd/system` for distributions whose `/lib` is not `/usr/lib`.
pub const UNIT_PATH: [&str; 13] = [
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
];

/// Bounds against hostile trees: the size of a unit, drop-in or environment file (systemd's own
/// line limit is 1 MiB; real ones are a few KiB), drop-ins and environment files read per unit,
/// words kept per command line.
const MAX_FILE_BYTES: u64 = 1 << 20;
const MAX_DROPINS: usize = 256;
const MAX_ENV_FILES: usize = 64;
const MAX_WORDS: usize = 1 << 16;

/// Where a character was read: an index into [`ServiceUnit::files`] and a 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    file: usize,
    line: usize,
}

/// Text whose every character remembers where it was read.
type Located = Vec<(char, Pos)>;

fn text_of(chars: &[(char, Pos)]) -> String {
    chars.iter().map(|(c, _)| c).collect()
}

/// A word of a command line and the `file:line` it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub origin: String,
}

/// One `ExecStart=` command as systemd runs it: the program and its arguments, variables expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    pub path: Word,
    /// The arguments after `argv[0]`.
    pub args: Vec<Word>,
}

/// A service unit as systemd would start it.
#[derive(Debug, Default)]
pub struct ServiceUnit {
    /// `kubelet.service`.
    pub name: String,
    /// The unit file, first found on [`UNIT_PATH`].
    pub fragment: Option<PathBuf>,
    /// The drop-ins in the order systemd applies them.
    pub dropins: Vec<PathBuf>,
    /// The `ExecStart=` commands in force (after every reset), in order.
    pub exec_start: Vec<ExecCommand>,
    /// Every file this read depends on (unit, drop-ins, their directories, environment files):
    /// a change to any may change the unit.
    pub files: Vec<PathBuf>,
    /// Files named but unreadable (a missing `EnvironmentFile=` without `-` fails the unit).
    pub problems: Vec<FileError>,
}

/// A `key=value` line of a unit file, in its section.
#[derive(Debug)]
struct Directive {
    section: String,
    key: String,
    value: Located,
}

/// What the unit's files say, before the environment files are read.
#[derive(Debug, Default)]
struct Settings {
    environment: Vec<(String, Located)>,
    environment_files: Vec<(String, bool)>,
    exec_start: Vec<RawCommand>,
}

#[derive(Debug)]
struct RawCommand {
    words: Vec<Located>,
    /// `:` prefix: no variable expansion.
    expand: bool,
    /// `@` prefix: the second word is `argv[0]`, arguments follow it.
    separate_argv0: bool,
}

impl ServiceUnit {
    /// Reads `name` (`kubelet.service`) from the host root; `None` when neither a unit file nor a
    /// drop-in exists, or the unit is masked (linked to `/dev/null`).
    pub fn load(root: &HostRoot, name: &str) -> Option<Self> {
        let dev_null = root.resolve(Path::new("/dev/null"));
        let masked = |p: &Path| root.resolve(p) == dev_null;
        let mut fragment = None;
        for dir in UNIT_PATH {
            let path = Path::new(dir).join(name);
            if masked(&path) {
                return None;
            }
            if root.exists(&path) {
                fragment = Some(path);
                break;
            }
        }
        let (dropin_dirs, dropins) = dropin_paths(root, name);
        let dropins: Vec<PathBuf> = dropins.into_iter().filter(|p| !masked(p)).collect();
        if fragment.is_none() && dropins.is_empty() {
            return None;
        }
        let texts = fragment.iter().chain(&dropins).map(|p| (p.clone(), root.read_text_limited(p, MAX_FILE_BYTES))).collect();
        let read_env = |pattern: &Path| -> Vec<(PathBuf, Result<String, FileError>)> {
            let paths = if pattern.to_string_lossy().contains('*') { root.glob(pattern) } else { vec![pattern.to_path_buf()] };
            paths.into_iter().take(MAX_ENV_FILES).map(|p| {
                let text = root.read_text_limited(&p, MAX_FILE_BYTES);
                (p, text)
            }).collect()
        };
        let mut unit = ServiceUnit::from_texts(name, texts, read_env);
        unit.fragment = fragment;
        unit.dropins = dropins;
        unit.files.extend(dropin_dirs);
        // Where an administrator adds an override: its creation must be seen too.
        unit.files.push(Path::new("/etc/systemd/system").join(format!("{name}.d")));
        Some(unit)
    }

    /// The unit made of its files' texts (unit file first, then the drop-ins in order) and a
    /// reader of the environment files they name (a path, or a glob, to the files and their
    /// texts): [`ServiceUnit::load`] without a host root.
    pub fn from_texts(
        name: &str,
        files: Vec<(PathBuf, Result<String, FileError>)>,
        mut read_env: impl FnMut(&Path) -> Vec<(PathBuf, Result<String, FileError>)>,
    ) -> Self {
        let mut unit = ServiceUnit { name: name.to_string(), ..Default::default() };
        let mut settings = Settings::default();
        for (path, text) in files {
            match text {
                Ok(text) => {
                    let file = unit.add_file(&path);
                    settings.apply(parse_unit(&text, file));
                }
                Err(err) => {
                    unit.files.push(path);
                    unit.problems.push(err);
                }
            }
        }
        let env = unit.environment(&settings, &mut read_env);
        unit.exec_start = settings.exec_start.iter().filter_map(|c| unit.expand(c, &env)).collect();
        unit
    }

    /// The command kubelet-like services run: the last `ExecStart=` (a service other than
    /// `Type=oneshot` has exactly one).
    pub fn main_command(&self) -> Option<&ExecCommand> {
        self.exec_start.last()
    }

    fn add_file(&mut self, path: &Path) -> usize {
        self.files.push(path.to_path_buf());
        self.files.len() - 1
    }

    fn origin(&self, pos: Pos) -> String {
        format!("{}:{}", self.files.get(pos.file).map(|p| p.display().to_string()).unwrap_or_default(), pos.line)
    }

    /// The service's environment: `Environment=`, then the environment files, which override it
    /// (systemd.exec(5): "Settings from these files override settings made with Environment=").
    fn environment(
        &mut self,
        settings: &Settings,
        read_env: &mut impl FnMut(&Path) -> Vec<(PathBuf, Result<String, FileError>)>,
    ) -> HashMap<String, Located> {
        let mut env: HashMap<String, Located> = settings.environment.iter().cloned().collect();
        for (pattern, optional) in settings.environment_files.iter().take(MAX_ENV_FILES) {
            let pattern = Path::new(pattern);
            if !pattern.is_absolute() {
                continue; // systemd ignores a relative EnvironmentFile= path
            }
            for (path, text) in read_env(pattern) {
                match text {
                    Ok(text) => {
                        let file = self.add_file(&path);
                        env.extend(parse_env_file(&text, file));
                    }
                    Err(err) => {
                        self.files.push(path);
                        if !(*optional && err.is_not_found()) {
                            self.problems.push(err);
                        }
                    }
                }
            }
        }
        env
    }

    /// A command as systemd runs it: a word that is exactly `$NAME` becomes the variable's value
    /// split into words (quotes respected, then removed; an unset variable gives no word),
    /// `${NAME}` anywhere in a word becomes the value as is, `$$` a `$` (systemd's
    /// `replace_env_argv`).
    fn expand(&self, command: &RawCommand, env: &HashMap<String, Located>) -> Option<ExecCommand> {
        let mut argv: Vec<Word> = Vec::new();
        for word in &command.words {
            if argv.len() >= MAX_WORDS {
                break;
            }
            let text = text_of(word);
            let at = word.first().map(|(_, p)| *p).unwrap_or(Pos { file: 0, line: 0 });
            if !command.expand {
                argv.push(Word { text, origin: self.origin(at) });
                continue;
            }
            if let Some(name) = text.strip_prefix('$').filter(|n| !n.starts_with(['{', '$'])) {
                // An invalid name expands to nothing, as in systemd.
                if let Some(value) = env.get(name).filter(|_| valid_env_name(name)) {
                    let room = MAX_WORDS.saturating_sub(argv.len());
                    for piece in split_words(value, Escapes::Plain, true).unwrap_or_default().into_iter().take(room) {
                        let at = piece.first().map(|(_, p)| *p).unwrap_or(at);
                        argv.push(Word { text: text_of(&piece), origin: self.origin(at) });
                    }
                }
                continue;
            }
            let whole_variable = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')).and_then(|n| env.get(n));
            let origin = match whole_variable.and_then(|v| v.first()) {
                Some((_, p)) => self.origin(*p),
                None => self.origin(at),
            };
            argv.push(Word { text: replace_inline(&text, env), origin });
        }
        let mut words = argv.into_iter();
        let path = words.next()?;
        if command.separate_argv0 {
            words.next();
        }
        Some(ExecCommand { path, args: words.collect() })
    }
}

/// `${NAME}` replaced by the value (nothing if unset), `$$` by `$`; any other `$` is kept.
fn replace_inline(text: &str, env: &HashMap<String, Located>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('{').and_then(|t| t.split_once('}')) {
            if let Some(value) = env.get(name) {
                out.push_str(&text_of(value));
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Drop-in directories of a unit, lowest precedence first within a level: the type's
/// (`service.d`), each prefix of a dashed name (`cri-.service.d` for `cri-docker.service`), the
/// unit's own (`kubelet.service.d`).
fn dropin_dir_names(name: &str) -> Vec<String> {
    let Some((stem, kind)) = name.rsplit_once('.') else { return vec![format!("{name}.d")] };
    let mut names = vec![format!("{kind}.d")];
    for (i, _) in stem.match_indices('-') {
        names.push(format!("{}-.{kind}.d", &stem[..i]));
    }
    names.push(format!("{name}.d"));
    names
}

/// The drop-in directories that exist, and the `*.conf` drop-ins systemd applies, in order: a
/// file name in a directory earlier on the search path masks the same name later; the survivors
/// are applied in lexical order of their names, whatever their directory (systemd.unit(5)).
fn dropin_paths(root: &HostRoot, name: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut dirs = Vec::new();
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for unit_dir in UNIT_PATH {
        for dir_name in dropin_dir_names(name) {
            let dir = Path::new(unit_dir).join(dir_name);
            let entries = root.list_dir(&dir);
            if entries.is_empty() {
                continue;
            }
            dirs.push(dir);
            for path in entries {
                let Some(file_name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
                if file_name.ends_with(".conf") && by_name.len() < MAX_DROPINS {
                    by_name.entry(file_name).or_insert(path);
                }
            }
        }
    }
    (dirs, by_name.into_values().collect())
}

impl Settings {
    fn apply(&mut self, directives: Vec<Directive>) {
        for d in directives.into_iter().filter(|d| d.section == "Service") {
            match d.key.as_str() {
                // An empty assignment resets the list, in every one of these settings.
                "Environment" if d.value.is_empty() => self.environment.clear(),
                "Environment" => {
                    // Several quoted assignments per line; an invalid one is ignored.
                    for word in split_words(&d.value, Escapes::C, false).unwrap_or_default() {
                        let word = specifiers(word);
                        let Some(eq) = word.iter().position(|(c, _)| *c == '=') else { continue };
                        let name = text_of(&word[..eq]);
                        if valid_env_name(&name) {
                            self.environment.retain(|(n, _)| *n != name);
                            self.environment.push((name, word[eq + 1..].to_vec()));
                        }
                    }
                }
                "EnvironmentFile" if d.value.is_empty() => self.environment_files.clear(),
                "EnvironmentFile" => {
                    let value = text_of(&specifiers(d.value)).replace("%%", "%");
                    match value.strip_prefix('-') {
                        Some(path) => self.environment_files.push((path.to_string(), true)),
                        None => self.environment_files.push((value, false)),
                    }
                }
                "ExecStart" if d.value.is_empty() => self.exec_start.clear(),
                "ExecStart" => {
                    // A line systemd cannot split (an open quote) is ignored, as systemd does.
                    if let Some(words) = split_words(&d.value, Escapes::C, false) {
                        self.exec_start.extend(commands(words));
                    }
                }
                _ => {}
            }
        }
    }
}

/// `%%` is `%`; other specifiers stay as written.
fn specifiers(word: Located) -> Located {
    let mut out = Vec::with_capacity(word.len());
    let mut chars = word.into_iter().peekable();
    while let Some((c, p)) = chars.next() {
        out.push((c, p));
        if c == '%' && chars.peek().is_some_and(|(n, _)| *n == '%') {
            chars.next();
        }
    }
    out
}

/// The commands of one `ExecStart=` value: words split at a lone `;` (several commands, for
/// `Type=oneshot`), each with its prefixes (`-@:+!`) taken off the program.
fn commands(words: Vec<Located>) -> Vec<RawCommand> {
    let mut out = Vec::new();
    for group in words.split(|w| w.len() == 1 && w[0].0 == ';') {
        let mut group: Vec<Located> = group.iter().map(|w| specifiers(w.clone())).collect();
        let Some(first) = group.first_mut() else { continue };
        let prefix_len = first.iter().take_while(|(c, _)| matches!(c, '-' | '@' | ':' | '+' | '!' | '|')).count();
        let prefix: String = first.drain(..prefix_len).map(|(c, _)| c).collect();
        if first.is_empty() {
            group.remove(0);
        }
        if group.is_empty() {
            continue;
        }
        out.push(RawCommand { words: group, expand: !prefix.contains(':'), separate_argv0: prefix.contains('@') });
    }
    out
}

/// The logical lines of a unit file: `[Section]` headers and `Key=Value` settings. A line
/// ending in an unescaped `\` continues on the next (the backslash becomes a space); comment
/// lines (`#`, `;`) are skipped, even inside a continuation (systemd.syntax(7)).
fn parse_unit(text: &str, file: usize) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut logical: Located = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut finish = |logical: Located, section: &mut String| {
        let start = logical.iter().position(|(c, _)| !c.is_whitespace());
        let end = logical.iter().rposition(|(c, _)| !c.is_whitespace());
        let (Some(start), Some(end)) = (start, end) else { return };
        let line = &logical[start..=end];
        if line[0].0 == '[' && line[line.len() - 1].0 == ']' {
            *section = text_of(&line[1..line.len() - 1]);
            return;
        }
        let Some(eq) = line.iter().position(|(c, _)| *c == '=') else { return };
        let key = text_of(&line[..eq]).trim().to_string();
        let value = &line[eq + 1..];
        let skip = value.iter().take_while(|(c, _)| c.is_whitespace()).count();
        out.push(Directive { section: section.clone(), key, value: value[skip..].to_vec() });
    };
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim_start();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let pos = Pos { file, line: i + 1 };
        let mut escaped = false;
        for c in raw.chars() {
            escaped = !escaped && c == '\\';
        }
        if escaped {
            logical.extend(raw[..raw.len() - 1].chars().map(|c| (c, pos)));
            logical.push((' ', pos));
            continue;
        }
        logical.extend(raw.chars().map(|c| (c, pos)));
        finish(std::mem::take(&mut logical), &mut section);
    }
    finish(logical, &mut section);
    out
}

/// How backslashes are read when splitting words.
#[derive(Clone, Copy, PartialEq)]
enum Escapes {
    /// C escapes (`\n`, `\t`, `\x41`, `\s`...), as in unit files.
    C,
    /// A backslash keeps the next character, as when a variable's value is split.
    Plain,
}

/// Splits words the way systemd's `extract_first_word` does with unquoting: whitespace
/// separates, single and double quotes group (anywhere in a word) and are removed, backslash
/// escapes work inside quotes too. `None` for an unterminated quote unless `relax`.
fn split_words(input: &[(char, Pos)], escapes: Escapes, relax: bool) -> Option<Vec<Located>> {
    let mut words = Vec::new();
    let mut word: Located = Vec::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < input.len() {
        let (c, pos) = input[i];
        i += 1;
        if c == '\\' {
            in_word = true;
            let Some(&(next, _)) = input.get(i) else {
                if relax {
                    word.push((c, pos));
                }
                break;
            };
            i += 1;
            if escapes == Escapes::Plain {
                word.push((next, pos));
                continue;
            }
            let (ch, used) = c_escape(next, &input[i..]);
            i += used;
            word.push((ch, pos));
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push((c, pos)),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push((c, pos));
                in_word = true;
            }
        }
    }
    if quote.is_some() && !relax {
        return None;
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// The character a C escape `\<c>...` stands for and how many characters after `c` it used.
fn c_escape(c: char, rest: &[(char, Pos)]) -> (char, usize) {
    let hex = |n: usize| -> Option<char> {
        let digits: String = rest.iter().take(n).map(|(c, _)| *c).collect();
        (digits.len() == n).then(|| u32::from_str_radix(&digits, 16).ok().and_then(char::from_u32)).flatten()
    };
    match c {
        'a' => ('\x07', 0),
        'b' => ('\x08', 0),
        'f' => ('\x0c', 0),
        'n' => ('\n', 0),
        'r' => ('\r', 0),
        't' => ('\t', 0),
        'v' => ('\x0b', 0),
        's' => (' ', 0),
        'x' => hex(2).map(|ch| (ch, 2)).unwrap_or((c, 0)),
        'u' => hex(4).map(|ch| (ch, 4)).unwrap_or((c, 0)),
        'U' => hex(8).map(|ch| (ch, 8)).unwrap_or((c, 0)),
        '0'..='7' => {
            let digits: String = std::iter::once(c).chain(rest.iter().take(2).map(|(c, _)| *c)).collect();
            match u32::from_str_radix(&digits, 8).ok().filter(|_| digits.len() == 3).and_then(char::from_u32) {
                Some(ch) => (ch, 2),
                None => (c, 0),
            }
        }
        other => (other, 0),
    }
}

/// An environment variable name systemd accepts: letters, digits and `_`, not starting with a
/// digit (`env_name_is_valid`).
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The assignments of an environment file, as systemd parses it (systemd.exec(5),
/// `EnvironmentFile=`): `KEY=VALUE` lines; `#` and `;` comments; an unquoted value keeps its
/// inner whitespace, loses the outer, and `\` keeps the next character (`\` + newline joins
/// lines); a single-quoted value is verbatim; a double-quoted one may span lines and unescapes
/// only `\"`, `\\`, `` \` `` and `\$`. Quoted and unquoted parts concatenate. No `export`: such a
/// line names an invalid variable and is ignored. Later assignments win.
fn parse_env_file(text: &str, file: usize) -> Vec<(String, Located)> {
    #[derive(PartialEq)]
    enum S {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }
    let mut out: Vec<(String, Located)> = Vec::new();
    let mut push = |key: &mut String, value: &mut Located| {
        let key = std::mem::take(key).trim_end().to_string();
        let value = std::mem::take(value);
        if valid_env_name(&key) {
            out.retain(|(k, _)| *k != key);
            out.push((key, value));
        }
    };
    let mut state = S::PreKey;
    let mut key = String::new();
    let mut value: Located = Vec::new();
    let mut trailing_ws: Option<usize> = None;
    let mut line = 1;
    for c in text.chars() {
        let pos = Pos { file, line };
        let newline = c == '\n';
        let ws = matches!(c, ' ' | '\t' | '\n' | '\r');
        match state {
            S::PreKey if c == '#' || c == ';' => state = S::Comment,
            S::PreKey if !ws => {
                state = S::Key;
                key.clear();
                key.push(c);
            }
            S::PreKey => {}
            S::Key if newline => {
                state = S::PreKey;
                key.clear();
            }
            S::Key if c == '=' => {
                state = S::PreValue;
                value.clear();
                trailing_ws = None;
            }
            S::Key => key.push(c),
            S::PreValue if newline => {
                push(&mut key, &mut value);
                state = S::PreKey;
            }
            S::PreValue if c == '\'' => state = S::Single,
            S::PreValue if c == '"' => state = S::Double,
            S::PreValue if c == '\\' => state = S::ValueEscape,
            S::PreValue if !ws => {
                state = S::Value;
                value.push((c, pos));
            }
            S::PreValue => {}
            S::Value if newline => {
                if let Some(at) = trailing_ws {
                    value.truncate(at);
                }
                push(&mut key, &mut value);
                state = S::PreKey;
            }
            S::Value if c == '\\' => {
                state = S::ValueEscape;
                trailing_ws = None;
            }
            S::Value => {
                if !ws {
                    trailing_ws = None;
                } else if trailing_ws.is_none() {
                    trailing_ws = Some(value.len());
                }
                value.push((c, pos));
            }
            S::ValueEscape => {
                state = S::Value;
                if !newline {
                    value.push((c, pos));
                }
            }
            S::Single if c == '\'' => state = S::PreValue,
            S::Single => value.push((c, pos)),
            S::Double if c == '"' => state = S::PreValue,
            S::Double if c == '\\' => state = S::DoubleEscape,
            S::Double => value.push((c, pos)),
            S::DoubleEscape => {
                state = S::Double;
                if matches!(c, '"' | '\\' | '`' | '$') {
                    value.push((c, pos));
                } else if !newline {
                    value.push(('\\', pos));
                    value.push((c, pos));
                }
            }
            S::Comment if c == '\\' => state = S::CommentEscape,
            S::Comment if newline => state = S::PreKey,
            S::Comment => {}
            S::CommentEscape => state = if newline { S::PreKey } else { S::Comment },
        }
        if newline {
            line += 1;
        }
    }
    match state {
        S::Value => {
            if let Some(at) = trailing_ws {
                value.truncate(at);
            }
            push(&mut key, &mut value);
        }
        S::PreValue | S::ValueEscape | S::Single | S::Double | S::DoubleEscape => push(&mut key, &mut value),
        _ => {}
    }
    out
}

/// An environment file's assignments as text with the line each value starts on (for callers
/// that read such files outside a unit).
pub fn env_file_assignments(text: &str) -> Vec<(String, String, usize)> {
    parse_env_file(text, 0)
        .into_iter()
        .map(|(key, value)| {
            let line = value.first().map(|(_, p)| p.line).unwrap_or(0);
            (key, text_of(&value), line)
        })
        .collect()
}

/// Splits a variable's value into words as `$VAR` on a command line does (quotes respected,
/// then removed).
pub fn split_value(value: &str) -> Vec<String> {
    let located: Located = value.chars().map(|c| (c, Pos { file: 0, line: 0 })).collect();
    split_words(&located, Escapes::Plain, true).unwrap_or_default().iter().map(|w| text_of(w)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn located(text: &str) -> Located {
        text.chars().map(|c| (c, Pos { file: 0, line: 1 })).collect()
    }

    fn words(text: &str, escapes: Escapes) -> Option<Vec<String>> {
        split_words(&located(text), escapes, false).map(|ws| ws.iter().map(|w| text_of(w)).collect())
    }

    fn env(text: &str) -> Vec<(String, String)> {
        parse_env_file(text, 0).into_iter().map(|(k, v)| (k, text_of(&v))).collect()
    }

    /// A host root made of `files` in a scratch directory, removed on drop.
    pub(crate) struct Scratch(pub PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn host(files: &[(&str, &str)]) -> (Scratch, HostRoot) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nrm-systemd-unit-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let full = dir.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let root = HostRoot::new(&dir);
        (Scratch(dir), root)
    }

    fn args(unit: &ServiceUnit) -> Vec<(String, String)> {
        unit.main_command().unwrap().args.iter().map(|w| (w.text.clone(), w.origin.clone())).collect()
    }

    #[test]
    fn quoting_as_systemd_splits_words() {
        assert_eq!(words(r#"a "b c" 'd e' f\ g"#, Escapes::C).unwrap(), ["a", "b c", "d e", "f g"]);
        assert_eq!(words(r#"x"y z"w"#, Escapes::C).unwrap(), ["xy zw"], "quotes anywhere in a word");
        assert_eq!(words(r#""a\tb" \x41 \s"#, Escapes::C).unwrap(), ["a\tb", "A", " "]);
        assert_eq!(words(r#"'it\'s'"#, Escapes::C).unwrap(), ["it's"], "escapes work inside single quotes");
        assert_eq!(words("\"open", Escapes::C), None, "an open quote makes the line invalid");
        assert_eq!(words(r#"a\nb"#, Escapes::Plain).unwrap(), ["anb"]);
    }

    #[test]
    fn env_file_syntax() {
        // Quotes, outer whitespace, inner whitespace kept, escapes, comments, `export` ignored.
        let text = "# comment\n; another\nA=plain value  \nB=\"double \\\"q\\\" \\$x \\n\"\nC='single \\n'\n  D = x\\\ny\nexport E=1\n9F=bad\nG=\"multi\nline\"\nA=again\n";
        assert_eq!(
            env(text),
            [
                ("B".into(), "double \"q\" $x \\n".into()),
                ("C".into(), "single \\n".into()),
                ("D".into(), "xy".into()),
                ("G".into(), "multi\nline".into()),
                ("A".into(), "again".into()),
            ]
        );
        assert_eq!(env("K=\"a\"b 'c'"), [("K".into(), "ab 'c'".into())], "a quote inside an unquoted value is kept");
        assert_eq!(env("NOVALUE=\nLAST=x"), [("NOVALUE".into(), "".into()), ("LAST".into(), "x".into())]);
        // A comment ending in a backslash does not continue (systemd >= 254).
        assert_eq!(env("#c \\\nA=1"), [("A".into(), "1".into())]);
    }

    #[test]
    fn continuations_comments_and_lines() {
        let text = "[Service]\nExecStart=/bin/x \\\n  --a=1 \\\n# a comment inside the continuation\n  --b 2\nExecStartPre=ignored\n";
        let d = parse_unit(text, 0);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].key, "ExecStart");
        let ws: Vec<(String, usize)> = split_words(&d[0].value, Escapes::C, false)
            .unwrap()
            .iter()
            .map(|w| (text_of(w), w[0].1.line))
            .collect();
        assert_eq!(ws, [("/bin/x".into(), 2), ("--a=1".into(), 3), ("--b".into(), 5), ("2".into(), 5)]);
        // An escaped backslash at the end is no continuation.
        let d = parse_unit("[Service]\nExecStart=/bin/x a\\\\\nEnvironment=A=1\n", 0);
        assert_eq!(d.len(), 2);
    }

    // nodeadm's kubelet.service as the Amazon EKS AL2023 AMI installs it: `--config <path>`
    // space-separated, ExecStart over several lines.
    // https://github.com/awslabs/amazon-eks-ami/blob/e9460f82cd7f3b96576f4a4caacdd4cea1901c8c/nodeadm/internal/install/kubelet.service
    const NODEADM_KUBELET_SERVICE: &str = "[Unit]
Description=Kubernetes Kubelet
Documentation=https://github.com/kubernetes/kubernetes
After=containerd.service
Requires=containerd.service

[Service]
Slice=runtime.slice
ExecStartPre=/sbin/iptables -P FORWARD ACCEPT -w 5
ExecStart=/usr/bin/kubelet \\
    --config /etc/kubernetes/kubelet/config.json \\
    --kubeconfig /var/lib/kubelet/kubeconfig \\
    --container-runtime-endpoint unix:///run/containerd/containerd.sock \\
    $KUBELET_ARGS \\
    $KUBELET_EXTRA_ARGS

Restart=on-failure
RestartForceExitStatus=SIGPIPE
RestartSec=5
KillMode=process
CPUAccounting=true
MemoryAccounting=true

[Install]
WantedBy=multi-user.target
";

    #[test]
    fn nodeadm_multiline_exec_start() {
        let (_dir, root) = host(&[("/etc/systemd/system/kubelet.service", NODEADM_KUBELET_SERVICE)]);
        let unit = ServiceUnit::load(&root, "kubelet.service").unwrap();
        let f = "/etc/systemd/system/kubelet.service";
        assert_eq!(unit.main_command().unwrap().path.text, "/usr/bin/kubelet");
        assert_eq!(
            args(&unit),
            [
                ("--config".into(), format!("{f}:11")),
                ("/etc/kubernetes/kubelet/config.json".into(), format!("{f}:11")),
                ("--kubeconfig".into(), format!("{f}:12")),
                ("/var/lib/kubelet/kubeconfig".into(), format!("{f}:12")),
                ("--container-runtime-endpoint".into(), format!("{f}:13")),
                ("unix:///run/containerd/containerd.sock".into(), format!("{f}:13")),
            ],
            "unset $KUBELET_ARGS and $KUBELET_EXTRA_ARGS give no words"
        );
    }

    // nodeadm's current unit and the environment file it writes (NODEADM_KUBELET_ARGS, values
    // unquoted, one `--flag=value` string).
    // https://github.com/awslabs/amazon-eks-ami nodeadm/internal/kubelet/environment.go
    // (kubeletEnvironmentFilePath, writeKubeletEnvironment)
    #[test]
    fn nodeadm_environment_file() {
        let service = "[Service]\nSlice=runtime.slice\nEnvironmentFile=/etc/eks/kubelet/environment\nExecStartPre=/sbin/iptables -P FORWARD ACCEPT -w 5\nExecStart=/usr/bin/kubelet $NODEADM_KUBELET_ARGS\n";
        let environment = "KUBELET_CONFIG_DROPIN_DIR_ALPHA=on\nNODEADM_KUBELET_ARGS=--node-ip=10.0.1.7 --hostname-override=ip-10-0-1-7.ec2.internal --cloud-provider=external --config=/etc/kubernetes/kubelet/config.json --config-dir=/etc/kubernetes/kubelet/config.json.d --kubeconfig=/var/lib/kubelet/kubeconfig";
        let (_dir, root) = host(&[("/etc/systemd/system/kubelet.service", service), ("/etc/eks/kubelet/environment", environment)]);
        let unit = ServiceUnit::load(&root, "kubelet.service").unwrap();
        let got = args(&unit);
        assert_eq!(got.len(), 6);
        assert_eq!(got[3], ("--config=/etc/kubernetes/kubelet/config.json".into(), "/etc/eks/kubelet/environment:2".into()));
        assert!(unit.files.contains(&PathBuf::from("/etc/eks/kubelet/environment")));
        assert!(unit.problems.is_empty());
    }

    // kubeadm's drop-in as the kubelet packages install it, over the package's kubelet.service:
    // https://github.com/kubernetes/release/blob/f618b2a308bc76e90e987e45ab17c85778dd5993/cmd/krel/templates/latest/kubeadm/10-kubeadm.conf
    // https://github.com/kubernetes/release/blob/f618b2a308bc76e90e987e45ab17c85778dd5993/cmd/krel/templates/latest/kubelet/kubelet.service
    const KUBELET_SERVICE: &str = "[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
";
    const KUBEADM_DROPIN: &str = r#"# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/sysconfig/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"#;

    #[test]
    fn kubeadm_dropin_resets_exec_start_and_reads_env_files() {
        let (_dir, root) = host(&[
            ("/usr/lib/systemd/system/kubelet.service", KUBELET_SERVICE),
            ("/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN),
            // kubeadm 1.30's kubeadm-flags.env; /etc/sysconfig/kubelet is missing (optional).
            ("/var/lib/kubelet/kubeadm-flags.env", "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9\"\n"),
        ]);
        let unit = ServiceUnit::load(&root, "kubelet.service").unwrap();
        assert_eq!(unit.exec_start.len(), 1, "the empty ExecStart= reset the unit's own");
        let d = "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf";
        let got = args(&unit);
        assert_eq!(got[0], ("--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf".into(), format!("{d}:3")));
        assert_eq!(got[2], ("--config=/var/lib/kubelet/config.yaml".into(), format!("{d}:4")));
        assert_eq!(got[3], ("--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock".into(), "/var/lib/kubelet/kubeadm-flags.env:1".into()));
        assert_eq!(got.len(), 5);
        assert!(unit.problems.is_empty(), "{:?}", unit.problems);
    }

    #[test]
    fn dropin_order_and_masking() {
        // /etc masks the same name in /usr/lib; names apply in lexical order whatever their
        // directory; the last ExecStart= after a reset wins; a required env file that is missing
        // is a problem.
        let (_dir, root) = host(&[
            ("/usr/lib/systemd/system/kubelet.service", "[Service]\nExecStart=/usr/bin/kubelet --v=1\n"),
            ("/usr/lib/systemd/system/kubelet.service.d/10-a.conf", "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --from=usr-10\n"),
            ("/etc/systemd/system/kubelet.service.d/10-a.conf", "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --from=etc-10\n"),
            ("/run/systemd/system/kubelet.service.d/20-b.conf", "[Service]\nEnvironment=X=1 \"Y=two words\"\nEnvironmentFile=/missing.env\n"),
            ("/etc/systemd/system/kubelet.service.d/30-c.conf", "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --x=$X ${Y} $Y $$Y\n"),
            ("/etc/systemd/system/kubelet.service.d/notes.txt", "[Service]\nExecStart=/bin/false\n"),
        ]);
        let unit = ServiceUnit::load(&root, "kubelet.service").unwrap();
        let names: Vec<String> = unit.dropins.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "/etc/systemd/system/kubelet.service.d/10-a.conf",
                "/run/systemd/system/kubelet.service.d/20-b.conf",
                "/etc/systemd/system/kubelet.service.d/30-c.conf"
            ]
        );
        let texts: Vec<String> = args(&unit).into_iter().map(|(t, _)| t).collect();
        // `$X` inside a word stays literal; `${Y}` is one word; `$Y` alone splits; `$$` is `$`.
        assert_eq!(texts, ["--x=$X", "two words", "two", "words", "$Y"]);
        assert_eq!(unit.problems.len(), 1);
        assert_eq!(unit.problems[0].path(), Path::new("/missing.env"));
    }

    #[test]
    fn prefixes_and_masked_units() {
        let (_dir, root) = host(&[("/etc/systemd/system/x.service", "[Service]\nExecStart=-@/usr/bin/x argv0 --a=$A\nEnvironment=A=1\n")]);
        let unit = ServiceUnit::load(&root, "x.service").unwrap();
        let cmd = unit.main_command().unwrap();
        assert_eq!(cmd.path.text, "/usr/bin/x");
        assert_eq!(cmd.args.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(), ["--a=$A"]);
        let (dir, root) = host(&[("/usr/lib/systemd/system/x.service", "[Service]\nExecStart=/usr/bin/x\n")]);
        std::fs::create_dir_all(dir.0.join("etc/systemd/system")).unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.0.join("etc/systemd/system/x.service")).unwrap();
        assert!(ServiceUnit::load(&root, "x.service").is_none(), "masked");
        assert!(ServiceUnit::load(&root, "absent.service").is_none());
    }

    #[test]
    fn prefix_dropin_dirs() {
        assert_eq!(dropin_dir_names("cri-docker.service"), ["service.d", "cri-.service.d", "cri-docker.service.d"]);
        assert_eq!(dropin_dir_names("kubelet.service"), ["service.d", "kubelet.service.d"]);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        for text in ["\\", "[", "=", "[Service]\nExecStart=\\", "[Service]\nExecStart=\"\\", "[Service]\nExecStart=\\x", "[Service]\nExecStart=\\777 \\u12", "[Service]\nEnvironment=\"=\" A", "\u{feff}[Service]\nExecStart=%%%"] {
            let d = parse_unit(text, 0);
            let mut s = Settings::default();
            s.apply(d);
        }
        for text in ["A", "A=\"", "A='", "A=\\", "=x", "#\\", "A=\"\\"] {
            parse_env_file(text, 0);
        }
    }
}
