// The long version (`--version`): release/version.rs.
include!("../release/version.rs");
