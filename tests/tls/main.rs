//! TLS end to end.
