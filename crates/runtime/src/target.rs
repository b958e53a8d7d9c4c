//! Compiling modules for another machine: `shanhai compile --target`.
//!
//! A Go module takes seconds to compile on two x86 cores and far longer on
//! a Cortex-A55, so a build machine can compile it for the box instead.
//! Compiled code only loads into an engine whose settings match the ones it
//! was compiled with: the code's architecture, and the memory layout
//! (reservation, guard, bounds checks), which the box chooses from its own
//! address space ([`crate::memory_plan`]). [`CrossCompiler`] therefore
//! plans the layout for the box's address space rather than this
//! machine's, and the box checks everything again when it imports the
//! code ([`crate::Runtime::import_compiled`]).
//!
//! CPU features are another matter: a native engine uses every feature of
//! the CPU it runs on, and code compiled for the baseline of its
//! architecture loads on any CPU of it (wasmtime checks that the host has
//! every feature the code uses), so cross-compiled code uses the baseline.

use wasmtime::Engine;

use crate::engine::{Compiler, RuntimeConfig, engine_config};
use crate::memory_plan::{AddressSpace, MemoryPlan};

/// An architecture Shanhai ships for, as `shanhai compile --target` names
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeTarget {
    /// 64-bit x86 (Cranelift).
    X86_64,
    /// 64-bit ARM (Cranelift): RK3566, Raspberry Pi 3 and later.
    Aarch64,
    /// 32-bit ARM with hardware floats (Pulley: Cranelift has no backend).
    Armv7,
}

impl CodeTarget {
    /// The names `--target` takes.
    pub const NAMES: [&'static str; 3] = ["x86_64", "aarch64", "armv7"];

    /// Parses a `--target` name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "x86_64" => Self::X86_64,
            "aarch64" => Self::Aarch64,
            "armv7" => Self::Armv7,
            _ => return None,
        })
    }

    /// The `--target` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
            Self::Armv7 => "armv7",
        }
    }

    /// The address space a process usually has there: x86-64 kernels give
    /// 47 bits, many aarch64 kernels of edge boxes 39, a 32-bit process 32.
    pub fn usual_va_bits(self) -> u32 {
        match self {
            Self::X86_64 => 47,
            Self::Aarch64 => 39,
            Self::Armv7 => 32,
        }
    }

    /// What runs code there when `runtime.compiler` is `compiler`: never
    /// `Auto`. Fails, naming the key, for Cranelift on armv7.
    fn compiler(self, compiler: Compiler) -> anyhow::Result<Compiler> {
        match (self, compiler) {
            (Self::Armv7, Compiler::Cranelift) => anyhow::bail!(
                "runtime.compiler = \"cranelift\": Cranelift has no backend for armv7; \
                 set runtime.compiler = \"auto\" or \"pulley\""
            ),
            (Self::Armv7, _) | (_, Compiler::Pulley) => Ok(Compiler::Pulley),
            _ => Ok(Compiler::Cranelift),
        }
    }

    /// wasmtime's name for the code's target.
    fn wasmtime_target(self, compiler: Compiler) -> &'static str {
        match (self, compiler) {
            (Self::Armv7, _) => "pulley32",
            (_, Compiler::Pulley) => "pulley64",
            (Self::X86_64, _) => "x86_64-unknown-linux-gnu",
            (Self::Aarch64, _) => "aarch64-unknown-linux-gnu",
        }
    }

    /// The instruction set its code is for, as [`code_isa`] names it.
    fn isa(self, compiler: Compiler) -> &'static str {
        match (self, compiler) {
            (Self::Armv7, _) => "pulley32",
            (_, Compiler::Pulley) => "pulley64",
            (target, _) => target.as_str(),
        }
    }
}

impl std::fmt::Display for CodeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The instruction set of the code this process runs with `compiler`
/// (resolved, never `Auto`): `x86_64`, `aarch64`, `pulley32` or
/// `pulley64`. Compiled code names the one it is for, and is refused
/// elsewhere before wasmtime looks at it.
pub fn code_isa(compiler: Compiler) -> &'static str {
    match compiler {
        Compiler::Pulley => Compiler::pulley_target(),
        _ => std::env::consts::ARCH,
    }
}

/// An engine that compiles modules for another machine's engine and never
/// runs them.
pub struct CrossCompiler {
    engine: Engine,
    target: CodeTarget,
    plan: MemoryPlan,
    compiler: Compiler,
}

impl CrossCompiler {
    /// An engine compiling for `target` as a gateway there would, with
    /// `config`'s settings in an address space of `space`.
    pub fn new(
        config: &RuntimeConfig,
        target: CodeTarget,
        space: AddressSpace,
    ) -> anyhow::Result<Self> {
        let compiler = target.compiler(config.compiler)?;
        let plan = MemoryPlan::new(config.plan_input(compiler), space)?;
        let mut wasm = engine_config(config, &plan)?;
        wasm.target(target.wasmtime_target(compiler))?;
        let engine = Engine::new(&wasm)?;
        Ok(Self {
            engine,
            target,
            plan,
            compiler,
        })
    }

    /// The memory layout the code is compiled for.
    pub fn plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// The instruction set of the code, as [`code_isa`] names it on the box.
    pub fn isa(&self) -> &'static str {
        self.target.isa(self.compiler)
    }

    /// Compiles `wasm`, returning wasmtime's serialized code.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        if let Some(reason) = crate::engine::not_a_binary(wasm) {
            anyhow::bail!(reason);
        }
        Ok(self.engine.precompile_module(wasm)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_their_own_names_only() {
        for name in CodeTarget::NAMES {
            assert_eq!(CodeTarget::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(CodeTarget::parse("arm"), None);
        assert_eq!(CodeTarget::parse("x86-64"), None);
    }

    #[test]
    fn armv7_code_is_pulley_and_cranelift_there_is_refused() {
        assert_eq!(
            CodeTarget::Armv7.compiler(Compiler::Auto).unwrap(),
            Compiler::Pulley
        );
        let err = CodeTarget::Armv7
            .compiler(Compiler::Cranelift)
            .unwrap_err()
            .to_string();
        assert!(err.contains("runtime.compiler"), "{err}");
        assert_eq!(CodeTarget::Armv7.isa(Compiler::Pulley), "pulley32");
        assert_eq!(CodeTarget::Aarch64.isa(Compiler::Cranelift), "aarch64");
        assert_eq!(CodeTarget::Aarch64.isa(Compiler::Pulley), "pulley64");
    }

    #[test]
    fn the_layout_is_planned_for_the_targets_address_space() {
        let config = RuntimeConfig::default();
        let space = |va_bits| AddressSpace {
            rlimit: None,
            va_bits,
        };
        // 1,000 guarded slots of 4 GiB fit in 47 bits, not in 39.
        let x86 = CrossCompiler::new(&config, CodeTarget::X86_64, space(47)).unwrap();
        assert!(!x86.plan().bounds_checks);
        let arm = CrossCompiler::new(&config, CodeTarget::Aarch64, space(39)).unwrap();
        assert!(arm.plan().bounds_checks);
        assert_eq!(
            arm.plan().memory_reservation,
            config.largest_memory_cap as u64
        );
    }
}
