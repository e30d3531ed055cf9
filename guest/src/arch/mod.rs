//! What is specific to 32-bit x86: entry, segments, traps, the local APIC, ring 3.

pub mod apic;
pub mod boot;
pub mod cpu;
pub mod gdt;
pub mod probe;
pub mod trap;
pub mod user;
