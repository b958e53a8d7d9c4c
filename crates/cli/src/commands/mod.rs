//! One file per subcommand.

pub(crate) mod canary;
pub(crate) mod compile;
pub(crate) mod deploy;
pub(crate) mod keygen;
pub(crate) mod new;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod sign;
pub(crate) mod status;

use std::path::Path;

/// The module a `.wasm` file is for: the name given on the command line,
/// else the file's name without its extension (`None` when that is not
/// UTF-8).
pub(crate) fn module_name_for(file: &Path, given: Option<String>) -> Option<String> {
    given.or_else(|| file.file_stem()?.to_str().map(str::to_owned))
}
