//! Kernel ring buffer records: `monitor::events::decode` on any bytes. Properties: no panic,
//! decoded strings never hold more characters than the field they come from (nor than its
//! length field says), a record shorter than its struct is an error, and every event displays
//! and serialises; an OOM report is decoded only from a kill line, with its constraint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::events::{Event, OomConstraint, SocketAddress, decode, errno_name, signal_name};
use monitor_common as raw;

fn chars(s: &str) -> usize {
    s.chars().count()
}

fuzz_target!(|data: &[u8]| {
    let Ok(record) = decode(data) else { return };
    let task = record.event.task();
    assert!(chars(&task.comm) <= raw::COMM_LEN);
    assert!(!task.comm.contains('\0'));
    let need = match &record.event {
        Event::Exec(e) => {
            assert!(chars(&e.filename) <= raw::FILENAME_LEN);
            let len = u32::from_ne_bytes(data[std::mem::offset_of!(raw::ExecEvent, filename_len)..][..4].try_into().unwrap());
            assert!(chars(&e.filename) <= len as usize);
            size_of::<raw::ExecEvent>()
        }
        Event::ExecFailed(e) => {
            assert!(chars(&e.filename) <= raw::FILENAME_LEN);
            let len = u32::from_ne_bytes(data[std::mem::offset_of!(raw::ExecFailedEvent, filename_len)..][..4].try_into().unwrap());
            assert!(chars(&e.filename) <= len as usize);
            let _ = errno_name(e.errno);
            size_of::<raw::ExecFailedEvent>()
        }
        Event::Exit(e) => {
            let _ = (e.status.to_string(), e.status.shell_code());
            size_of::<raw::ExitEvent>()
        }
        Event::OomKill(e) => {
            assert!(chars(&e.trigger_comm) <= raw::COMM_LEN);
            assert_eq!(e.constraint, OomConstraint::Unknown, "only the join with a report sets it");
            size_of::<raw::OomKillEvent>()
        }
        Event::OomReport(e) => {
            // A report is decoded only from a kill line, which always names the constraint.
            assert_ne!(e.constraint, OomConstraint::Unknown);
            let _ = e.constraint.to_string();
            size_of::<raw::OomReportEvent>()
        }
        Event::OomKillRecounted(_) => unreachable!("made by the OOM join, never decoded"),
        Event::CgroupCreated(e) => {
            assert!(chars(&e.path) <= raw::CGROUP_PATH_LEN);
            size_of::<raw::CgroupMkdirEvent>()
        }
        Event::Connect(e) => {
            if let SocketAddress::Unix { path, .. } = &e.address {
                assert!(chars(path) <= raw::UNIX_PATH_LEN);
            }
            assert!(e.errno >= 0);
            let _ = (e.address.to_string(), errno_name(e.errno));
            size_of::<raw::ConnectEvent>()
        }
        Event::Signal(e) => {
            assert!(chars(&e.sender_comm) <= raw::COMM_LEN);
            assert!(chars(&e.sender_exe) <= raw::EXE_NAME_LEN);
            let _ = signal_name(e.signal);
            size_of::<raw::SignalEvent>()
        }
    };
    assert!(data.len() >= need, "decoded a {:?} from {} bytes (< {need})", record.event.kind(), data.len());
    let _ = record.event.kind().as_str();
    serde_json::to_string(&record.event).expect("every event serialises");
});
