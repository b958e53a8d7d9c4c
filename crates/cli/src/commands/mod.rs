//! One file per subcommand.

pub(crate) mod compile;
pub(crate) mod new;
pub(crate) mod run;
pub(crate) mod serve;
