//! (being written by the attribution work)
