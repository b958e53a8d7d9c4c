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
