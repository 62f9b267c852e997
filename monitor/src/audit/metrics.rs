//! Audit metrics (being written).
