//! (being written by the audit work)
