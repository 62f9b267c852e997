//! Go build info of runtime binaries: `node::buildinfo::read` on any bytes as a file (through
//! the same cached, budgeted reader the node's binaries go through), and
//! `node::buildinfo::parse_modinfo` on any bytes as module information text.
//! Properties: no panic; never more than `READ_BUDGET` bytes read from the file; a version found
//! is one word, no longer than the input (invalid UTF-8 bytes count three).
#![no_main]

use std::{
    cell::Cell,
    io::{Cursor, Read, Seek, SeekFrom},
    rc::Rc,
};

use libfuzzer_sys::fuzz_target;
use monitor::node::buildinfo::{self, BuildInfo, READ_BUDGET};

/// The input as a file, counting the bytes read from it.
struct File<'a> {
    inner: Cursor<&'a [u8]>,
    read: Rc<Cell<u64>>,
}

impl Read for File<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

impl Seek for File<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

fn check(info: &BuildInfo, input_len: usize) {
    let _ = info.ldflags_x();
    let _ = info.setting("-ldflags");
    if let Some(stamp) = info.version() {
        assert!(!stamp.version.is_empty() && !stamp.version.contains(char::is_whitespace), "{stamp:?}");
        assert!(stamp.version.len() <= input_len, "{stamp:?}");
        let _ = stamp.source.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    let read = Rc::new(Cell::new(0));
    let file = File { inner: Cursor::new(data), read: read.clone() };
    match buildinfo::read(file) {
        Ok(info) => check(&info, data.len() * 3),
        Err(e) => drop(e.to_string()),
    }
    assert!(read.get() <= READ_BUDGET, "read {} bytes", read.get());
    let info = buildinfo::parse_modinfo("go1.22.5".into(), &String::from_utf8_lossy(data));
    check(&info, data.len() * 3);
});
