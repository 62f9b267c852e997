//! Parser messages made safe to show: a YAML, JSON or TOML parser's message may quote the
//! file's values (a token, a password) in any quoting, and the audit shows these messages as
//! evidence. [`scrub`] keeps the message's words and drops every quoted value.

/// The first line of a parser message (at most 200 characters), with the text between each
/// pair of `"`, `` ` `` or `'` replaced by `…`. An opening `"` or `` ` `` that is never closed
/// drops the rest (the value may run to the end); an unpaired `'` is an apostrophe and stays.
pub fn scrub(message: &str) -> String {
    let first = without_unquoted_key(message.lines().next().unwrap_or(""));
    let mut out = String::new();
    let mut rest = first.as_str();
    while let Some(at) = rest.find(['"', '`', '\'']) {
        let quote = rest[at..].chars().next().unwrap_or('"');
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match closing(after, quote) {
            Some(end) => {
                out.push(quote);
                out.push('…');
                out.push(quote);
                rest = &after[end + 1..];
            }
            None if quote == '\'' => {
                out.push(quote);
                rest = after;
            }
            None => {
                out.push(quote);
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.chars().take(200).collect()
}

/// serde_yaml's message that quotes nothing: a duplicate key as it stands (a number, a bool,
/// a line whose broken indentation made a key of a value). The key is dropped, the position kept.
fn without_unquoted_key(line: &str) -> String {
    const DUPLICATE: &str = "duplicate entry with key ";
    let Some(at) = line.find(DUPLICATE) else { return line.to_string() };
    let after = &line[at + DUPLICATE.len()..];
    let position = after.find(" at line ").map(|i| &after[i..]).unwrap_or("");
    format!("{}{DUPLICATE}…{position}", &line[..at])
}

/// Where `quote` closes in `text`, skipping backslash-escaped ones (`"ab\"cd"`).
fn closing(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == quote => return Some(at),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn values_in_every_quoting_are_dropped() {
        for (message, want) in [
            ("invalid type: string \"s3cret\", expected bool", "invalid type: string \"…\", expected bool"),
            ("unknown variant `s3cret`, expected `always` or `never`", "unknown variant `…`, expected `…` or `…`"),
            ("invalid value: 's3cret', expected a quantity", "invalid value: '…', expected a quantity"),
            ("unterminated string \"s3cret", "unterminated string \"…"),
            ("invalid type: string \"ab\\\"s3cret\", expected bool", "invalid type: string \"…\", expected bool"),
            ("kubelet can't parse this", "kubelet can't parse this"),
            ("first line \"a\"\nsecond line s3cret", "first line \"…\""),
            // Found by the `redaction` fuzz target: serde_yaml does not quote a duplicate key.
            ("spec: duplicate entry with key -3999s3cret at line 2 column 3", "spec: duplicate entry with key … at line 2 column 3"),
        ] {
            let got = scrub(message);
            assert_eq!(got, want, "{message}");
            assert!(!got.contains("s3cret"));
        }
    }
}
