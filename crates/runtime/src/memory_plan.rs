//! How linear memories and fiber stacks are laid out in the address space
//! the process actually has.
//!
//! wasmtime's fastest setup reserves 4 GiB plus a 32 MiB guard for every
//! linear memory, so that compiled code needs no bounds checks, and the
//! pooling allocator reserves that for every slot up front: 1,000 slots are
//! 4 TiB of address space. A server's 47-bit space (128 TiB) has room; an
//! aarch64 kernel with 39-bit addresses gives a process 512 GiB, `ulimit -v`
//! may give less, and a 32-bit process has 3 to 4 GiB. So the engine is
//! planned from what is there:
//!
//! 1. **guarded**: the pooling allocator with 4 GiB reservations and guard
//!    regions, when every configured slot fits;
//! 2. **bounded**: the pooling allocator with reservations the size of the
//!    largest module memory cap, so compiled code checks bounds; as many
//!    slots as fit, at least [`MIN_POOL_SLOTS`];
//! 3. **on-demand**: no pool; each instance maps the memory it uses (plus
//!    room to grow) when it is created, and fiber stacks likewise.
//!
//! Half of the address space is the budget: the rest is for the heap,
//! thread stacks, malloc arenas and the compiled code of every module.
//!
//! Code run by the Pulley interpreter (32-bit ARM, or `runtime.compiler =
//! "pulley"`) checks bounds whatever the layout: guard regions only save
//! checks in native code.

use crate::engine::Compiler;

use std::fmt;

/// The fewest pool slots worth a pool: below this, on-demand allocation
/// serves more concurrent instances from the same address space.
pub const MIN_POOL_SLOTS: u32 = 64;

/// Bytes of each fiber stack (wasmtime's default async stack).
const STACK_BYTES: u64 = 2 << 20;
/// A host page, the guard below each fiber stack.
const PAGE: u64 = 4 << 10;
/// Bytes of one pooled table (20,000 elements of 8 bytes, wasmtime's
/// default).
const TABLE_BYTES: u64 = 20_000 * 8;
/// The reservation and guard of a guarded memory (wasmtime's 64-bit
/// defaults): no bounds checks for 32-bit memories.
const GUARDED_RESERVATION: u64 = 4 << 30;
const GUARDED_GUARD: u64 = 32 << 20;
/// The guard of a bounds-checked memory: small, it only lets the compiler
/// fold checks of nearby offsets into one.
const BOUNDED_GUARD: u64 = 64 << 10;
/// Room an on-demand memory reserves to grow in place before it must move.
const ON_DEMAND_GROWTH: u64 = 32 << 20;
const WASM_PAGE: u64 = 64 << 10;

/// Which layout the operator asked for (`runtime.memory_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryStrategy {
    /// Choose from the address space (the default).
    #[default]
    Auto,
    /// Pooling with 4 GiB reservations and guard regions.
    Guarded,
    /// Pooling with bounds-checked memories.
    Bounded,
    /// No pool: memories and stacks mapped per instance.
    OnDemand,
}

impl MemoryStrategy {
    /// The names the config uses.
    pub const NAMES: [&'static str; 4] = ["auto", "guarded", "bounded", "on-demand"];

    /// Parses a config name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "auto" => Self::Auto,
            "guarded" => Self::Guarded,
            "bounded" => Self::Bounded,
            "on-demand" => Self::OnDemand,
            _ => return None,
        })
    }

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Guarded => "guarded",
            Self::Bounded => "bounded",
            Self::OnDemand => "on-demand",
        }
    }
}

/// The address space this process may map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressSpace {
    /// `RLIMIT_AS` (`ulimit -v`), when set.
    pub rlimit: Option<u64>,
    /// Bits of user virtual address the kernel gives (47 on x86-64, often
    /// 39 on aarch64, 32 for a 32-bit process).
    pub va_bits: u32,
}

impl AddressSpace {
    /// Reads the limit from `/proc/self/limits` and estimates the kernel's
    /// address size from the highest mapping in `/proc/self/maps` (the
    /// main stack sits at the top of the user space).
    pub fn detect() -> Self {
        let rlimit = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| parse_rlimit_as(&text));
        let pointer_bits = usize::BITS;
        let va_bits = std::fs::read_to_string("/proc/self/maps")
            .ok()
            .and_then(|text| va_bits_from_maps(&text))
            .unwrap_or(if pointer_bits == 64 { 47 } else { 32 })
            .min(pointer_bits);
        Self { rlimit, va_bits }
    }

    /// Bytes this process may map in all.
    pub fn usable(&self) -> u64 {
        let space = if self.va_bits >= 64 {
            u64::MAX
        } else {
            1u64 << self.va_bits
        };
        self.rlimit.map_or(space, |limit| limit.min(space))
    }
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit addresses", self.va_bits)?;
        match self.rlimit {
            Some(limit) => write!(f, ", ulimit -v {}", human(limit)),
            None => write!(f, ", no ulimit -v"),
        }
    }
}

/// What the plan needs from the runtime's settings.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput {
    /// `runtime.memory_strategy`.
    pub strategy: MemoryStrategy,
    /// `runtime.total_instances`: the pool slots wanted.
    pub total_instances: u32,
    /// The largest memory cap of any module (`max_memory_mb`).
    pub largest_memory_cap: u64,
    /// The resolved `runtime.compiler` (never `Auto`).
    pub compiler: Compiler,
}

/// The chosen layout, logged at start and shown in `/admin/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The layout: never `Auto`.
    pub strategy: MemoryStrategy,
    /// Pool slots (0 for on-demand).
    pub pool_slots: u32,
    /// Address space reserved per linear memory.
    pub memory_reservation: u64,
    /// Guard region after each linear memory.
    pub memory_guard: u64,
    /// Whether compiled code checks bounds on every access.
    pub bounds_checks: bool,
    /// Address space the plan reserves up front (the pool).
    pub reserved_up_front: u64,
    /// The address space it was planned for.
    pub space: AddressSpace,
    /// Why this layout.
    pub reason: String,
    /// What runs the code: Cranelift's native code or Pulley.
    pub compiler: Compiler,
}

/// Why no layout fits.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(String);

impl MemoryPlan {
    /// Plans the layout for `input` in `space`.
    pub fn new(input: PlanInput, space: AddressSpace) -> Result<Self, PlanError> {
        let budget = space.usable() / 2;
        let cap = round_up(input.largest_memory_cap.max(WASM_PAGE), WASM_PAGE);
        let guarded_slot =
            GUARDED_RESERVATION.max(cap) + GUARDED_GUARD + STACK_BYTES + PAGE + TABLE_BYTES;
        let bounded_slot = cap + BOUNDED_GUARD + STACK_BYTES + PAGE + TABLE_BYTES;
        let fits = |slot: u64| u32::try_from(budget / slot).unwrap_or(u32::MAX);
        let wanted = input.total_instances;
        let interpreted = input.compiler == Compiler::Pulley;
        let guarded = |slots: u32, reason: String| Self {
            strategy: MemoryStrategy::Guarded,
            pool_slots: slots,
            memory_reservation: GUARDED_RESERVATION.max(cap),
            memory_guard: GUARDED_GUARD,
            bounds_checks: interpreted,
            reserved_up_front: u64::from(slots) * guarded_slot,
            space,
            reason,
            compiler: input.compiler,
        };
        let bounded = |slots: u32, reason: String| Self {
            strategy: MemoryStrategy::Bounded,
            pool_slots: slots,
            memory_reservation: cap,
            memory_guard: BOUNDED_GUARD,
            bounds_checks: true,
            reserved_up_front: u64::from(slots) * bounded_slot,
            space,
            reason,
            compiler: input.compiler,
        };
        let on_demand = |reason: String| Self {
            strategy: MemoryStrategy::OnDemand,
            pool_slots: 0,
            memory_reservation: 0,
            memory_guard: BOUNDED_GUARD,
            bounds_checks: true,
            reserved_up_front: 0,
            space,
            reason,
            compiler: input.compiler,
        };
        let too_small = |what: &str, slot: u64| {
            PlanError(format!(
                "runtime.memory_strategy = \"{what}\" needs {} of address space for runtime.total_instances = {wanted} slots of {} each, \
                 but half of this process's address space ({space}) is {}: lower runtime.total_instances or the modules' max_memory_mb, \
                 or set runtime.memory_strategy = \"auto\"",
                human(u64::from(wanted) * slot),
                human(slot),
                human(budget),
            ))
        };
        match input.strategy {
            MemoryStrategy::Guarded if fits(guarded_slot) >= wanted => {
                Ok(guarded(wanted, "configured".into()))
            }
            MemoryStrategy::Guarded => Err(too_small("guarded", guarded_slot)),
            MemoryStrategy::Bounded if fits(bounded_slot) >= wanted => {
                Ok(bounded(wanted, "configured".into()))
            }
            MemoryStrategy::Bounded => Err(too_small("bounded", bounded_slot)),
            MemoryStrategy::OnDemand => Ok(on_demand("configured".into())),
            MemoryStrategy::Auto if fits(guarded_slot) >= wanted => Ok(guarded(
                wanted,
                format!("{wanted} guarded slots fit in half of the address space"),
            )),
            MemoryStrategy::Auto if fits(bounded_slot) >= wanted => Ok(bounded(
                wanted,
                format!(
                    "{wanted} slots of 4 GiB do not fit in {}; {wanted} bounds-checked slots of {} do",
                    human(budget),
                    human(cap)
                ),
            )),
            MemoryStrategy::Auto if fits(bounded_slot) >= MIN_POOL_SLOTS => {
                let slots = fits(bounded_slot);
                Ok(bounded(
                    slots,
                    format!(
                        "only {slots} bounds-checked slots of {} fit in {}, fewer than runtime.total_instances = {wanted}",
                        human(cap),
                        human(budget)
                    ),
                ))
            }
            MemoryStrategy::Auto => Ok(on_demand(format!(
                "fewer than {MIN_POOL_SLOTS} pool slots of {} fit in {}",
                human(cap),
                human(budget)
            ))),
        }
    }

    /// Applies the plan to an engine configuration.
    pub(crate) fn configure(
        &self,
        config: &mut wasmtime::Config,
        pool: impl FnOnce(u32) -> wasmtime::PoolingAllocationConfig,
    ) {
        config
            .memory_reservation(self.memory_reservation)
            .memory_guard_size(self.memory_guard)
            // One guard per slab is enough: the pool's slots are laid out
            // back to back, each followed by its own guard.
            .guard_before_linear_memory(!self.bounds_checks);
        match self.strategy {
            MemoryStrategy::Guarded | MemoryStrategy::Bounded => {
                let mut pooling = pool(self.pool_slots);
                pooling.max_memory_size(self.memory_reservation as usize);
                config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
            }
            MemoryStrategy::OnDemand | MemoryStrategy::Auto => {
                config
                    .memory_reservation_for_growth(ON_DEMAND_GROWTH)
                    .allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
            }
        }
    }

    /// One line for the start log.
    pub fn summary(&self) -> String {
        format!("{}; code: {}", self.layout(), self.compiler.describe())
    }

    /// The layout and why it was chosen, in words.
    pub fn layout(&self) -> String {
        match self.strategy {
            MemoryStrategy::OnDemand | MemoryStrategy::Auto => format!(
                "on-demand allocation, bounds-checked memories ({}): {}",
                self.space, self.reason,
            ),
            _ => format!(
                "{} pool of {} slots, {} reserved per memory{} ({} up front; {}): {}",
                self.strategy.as_str(),
                self.pool_slots,
                human(self.memory_reservation),
                if self.bounds_checks {
                    ", bounds-checked"
                } else {
                    " + guard, no bounds checks"
                },
                human(self.reserved_up_front),
                self.space,
                self.reason,
            ),
        }
    }
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to).saturating_mul(to)
}

/// `Max address space` from `/proc/self/limits`: the soft limit in bytes,
/// `None` when unlimited.
fn parse_rlimit_as(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max address space"))?;
    let soft = line["Max address space".len()..]
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

/// The bits needed to address the end of the highest mapping, ignoring the
/// x86-64 `[vsyscall]` page that sits above the user space.
fn va_bits_from_maps(maps: &str) -> Option<u32> {
    let highest = maps
        .lines()
        .filter(|line| !line.ends_with("[vsyscall]"))
        .filter_map(|line| {
            let range = line.split_whitespace().next()?;
            let (_, end) = range.split_once('-')?;
            u64::from_str_radix(end, 16).ok()
        })
        .max()?;
    Some(64 - (highest - 1).leading_zeros())
}

/// Bytes in the largest binary unit that keeps a whole number or one
/// decimal.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn input(strategy: MemoryStrategy) -> PlanInput {
        PlanInput {
            strategy,
            total_instances: 1000,
            largest_memory_cap: 256 << 20,
            compiler: Compiler::Cranelift,
        }
    }

    fn space(va_bits: u32, rlimit: Option<u64>) -> AddressSpace {
        AddressSpace { rlimit, va_bits }
    }

    #[test]
    fn a_47_bit_server_gets_the_guarded_pool() {
        let plan = MemoryPlan::new(input(MemoryStrategy::Auto), space(47, None)).unwrap();
        assert_eq!(plan.strategy, MemoryStrategy::Guarded);
        assert_eq!(plan.pool_slots, 1000);
        assert!(!plan.bounds_checks);
    }

    #[test]
    fn a_39_bit_kernel_gets_bounded_slots_that_fit() {
        for space in [space(39, None), space(47, Some(512 * GIB))] {
            let plan = MemoryPlan::new(input(MemoryStrategy::Auto), space).unwrap();
            assert_eq!(plan.strategy, MemoryStrategy::Bounded, "{space}");
            assert_eq!(plan.pool_slots, 1000);
            assert_eq!(plan.memory_reservation, 256 << 20);
            assert!(plan.reserved_up_front <= 256 * GIB);
        }
    }

    #[test]
    fn a_128_gib_limit_gets_fewer_bounded_slots() {
        let plan =
            MemoryPlan::new(input(MemoryStrategy::Auto), space(47, Some(128 * GIB))).unwrap();
        assert_eq!(plan.strategy, MemoryStrategy::Bounded);
        assert!(
            (MIN_POOL_SLOTS..1000).contains(&plan.pool_slots),
            "{plan:?}"
        );
        assert!(plan.reserved_up_front <= 64 * GIB);
    }

    #[test]
    fn a_32_bit_space_allocates_on_demand() {
        for space in [space(32, None), space(47, Some(3 * GIB))] {
            let plan = MemoryPlan::new(input(MemoryStrategy::Auto), space).unwrap();
            assert_eq!(plan.strategy, MemoryStrategy::OnDemand, "{space}");
            assert_eq!(plan.reserved_up_front, 0);
        }
    }

    #[test]
    fn pulley_code_always_checks_bounds() {
        let plan = MemoryPlan::new(
            PlanInput {
                compiler: Compiler::Pulley,
                ..input(MemoryStrategy::Auto)
            },
            space(47, None),
        )
        .unwrap();
        assert_eq!(plan.strategy, MemoryStrategy::Guarded);
        assert!(plan.bounds_checks);
        assert!(plan.summary().contains("Pulley"), "{}", plan.summary());
    }

    #[test]
    fn a_forced_layout_that_cannot_fit_names_the_keys() {
        let err = MemoryPlan::new(input(MemoryStrategy::Guarded), space(39, None)).unwrap_err();
        let message = err.to_string();
        for key in [
            "runtime.memory_strategy",
            "runtime.total_instances",
            "max_memory_mb",
        ] {
            assert!(message.contains(key), "{message}");
        }
        let plan = MemoryPlan::new(
            PlanInput {
                total_instances: 50,
                ..input(MemoryStrategy::Guarded)
            },
            space(39, None),
        )
        .unwrap();
        assert_eq!(plan.pool_slots, 50);
    }

    #[test]
    fn limits_and_maps_are_parsed() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max address space         549755813888         unlimited            bytes     \n";
        assert_eq!(parse_rlimit_as(limits), Some(512 * GIB));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(parse_rlimit_as(unlimited), None);
        let x86 = "55d0c0a00000-55d0c0a21000 r-xp 00000000 00:00 0 /bin/x\n\
                   7ffc8a1d3000-7ffc8a1f4000 rw-p 00000000 00:00 0 [stack]\n\
                   ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]";
        assert_eq!(va_bits_from_maps(x86), Some(47));
        let arm39 = "7fb1a00000-7fb1a21000 rw-p 00000000 00:00 0 [stack]";
        assert_eq!(va_bits_from_maps(arm39), Some(39));
        assert_eq!(human(512 * GIB), "512 GiB");
        assert_eq!(human(258 << 20), "258 MiB");
    }
}
