// The pages' date: the build date of the binaries (release/version.rs), never
// the clock's, so the pages are reproducible.
include!("../version.rs");
