//! placeholder, filled by the CLI work.
