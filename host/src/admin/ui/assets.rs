//! The dashboard's page, script and style, embedded in the binary.
