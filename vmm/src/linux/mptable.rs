//! The Intel MultiProcessor Specification 1.4 tables that tell Linux how
//! many CPUs there are and how the ISA interrupts reach KVM's in-kernel
//! IOAPIC, when there is no ACPI (Firecracker boots Linux the same way).
//! Written by hand from the specification: a floating pointer, then the
//! configuration table with one processor entry per vCPU, the ISA bus, the
//! IOAPIC, an interrupt entry per ISA IRQ and the two local interrupts.

/// Where KVM's in-kernel local APICs and IOAPIC live.
const LAPIC_BASE: u32 = 0xfee0_0000;
const IOAPIC_BASE: u32 = 0xfec0_0000;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const SPEC_REV: u8 = 4;
const ISA_BUS: u8 = 0;
/// CPUs' "enabled" and "bootstrap processor" flags.
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Interrupt types: vectored, and the 8259's external interrupt.
const INT: u8 = 0;
const NMI: u8 = 1;
const EXTINT: u8 = 3;

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)).wrapping_neg()
}

/// The tables for `cpus` vCPUs (APIC IDs 0..cpus), to be placed at guest
/// physical address `at`: the floating pointer first, the configuration
/// table after it.
pub fn build(cpus: u8, at: u32) -> Vec<u8> {
    let ioapic_id = cpus;
    let mut entries: Vec<u8> = Vec::new();
    let mut count = 0u16;
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        entries.extend([0, id, APIC_VERSION, flags]);
        // CPU signature (family 6) and feature flags (FPU, APIC): what a BIOS
        // copies from CPUID; Linux reads its own CPUID instead.
        entries.extend(0x600u32.to_le_bytes());
        entries.extend(0x201u32.to_le_bytes());
        entries.extend([0; 8]);
        count += 1;
    }
    entries.extend([1, ISA_BUS]);
    entries.extend(*b"ISA   ");
    count += 1;
    entries.extend([2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend(IOAPIC_BASE.to_le_bytes());
    count += 1;
    // Each ISA IRQ reaches the IOAPIC pin of its own number, as KVM's
    // default routing wires GSI n to pin n (the PIT's IRQ 0 too: QEMU moves
    // it to pin 2, KVM does not). IRQ 2 is the 8259s' cascade, no device's.
    for irq in (0..16u8).filter(|&i| i != 2) {
        entries.extend([3, INT, 0, 0, ISA_BUS, irq, ioapic_id, irq]);
        count += 1;
    }
    // LINT0: the 8259's external interrupt; LINT1: NMI; to every local APIC.
    entries.extend([4, EXTINT, 0, 0, ISA_BUS, 0, 0xff, 0]);
    entries.extend([4, NMI, 0, 0, ISA_BUS, 0, 0xff, 1]);
    count += 2;

    let table_len = 44 + entries.len();
    let mut table = Vec::with_capacity(table_len);
    table.extend(*b"PCMP");
    table.extend((table_len as u16).to_le_bytes());
    table.extend([SPEC_REV, 0]);
    table.extend(*b"VMM     ");
    table.extend(*b"VMM-LINUX   ");
    table.extend(0u32.to_le_bytes()); // no OEM table
    table.extend(0u16.to_le_bytes());
    table.extend(count.to_le_bytes());
    table.extend(LAPIC_BASE.to_le_bytes());
    table.extend(0u16.to_le_bytes()); // no extended table
    table.extend([0, 0]);
    table.extend(entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16);
    fp.extend(*b"_MP_");
    fp.extend((at + 16).to_le_bytes());
    fp.extend([1, SPEC_REV, 0]);
    fp.extend([0; 5]); // feature 1 = 0: the configuration table is there
    fp[10] = checksum(&fp);
    fp.extend(table);
    fp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    /// Both structures check as the specification says (and as Linux's
    /// mpparse verifies them), and the table holds one enabled processor per
    /// vCPU, the first the bootstrap one, and the timer on pin 0.
    #[test]
    fn the_tables_check_and_name_every_cpu() {
        for cpus in [1u8, 2, 8] {
            let t = build(cpus, 0x9fc00);
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0, "floating pointer checksum");
            assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), 0x9fc10);
            let table = &t[16..];
            assert_eq!(&table[..4], b"PCMP");
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert_eq!(sum(table), 0, "configuration table checksum");
            let count = u16::from_le_bytes([table[34], table[35]]) as usize;
            // Walk the entries: processors are 20 bytes, the rest 8.
            let (mut at, mut cpu_ids, mut timer_pin) = (44, vec![], None);
            for _ in 0..count {
                match table[at] {
                    0 => {
                        cpu_ids.push((table[at + 1], table[at + 3]));
                        at += 20;
                    }
                    3 => {
                        if table[at + 5] == 0 {
                            timer_pin = Some(table[at + 7]);
                        }
                        at += 8;
                    }
                    _ => at += 8,
                }
            }
            assert_eq!(at, len, "the entries fill the table");
            let want: Vec<(u8, u8)> = (0..cpus).map(|i| (i, if i == 0 { 3 } else { 1 })).collect();
            assert_eq!(cpu_ids, want);
            assert_eq!(timer_pin, Some(0));
            assert!(t.len() <= 1024, "fits in the last KiB of base memory");
        }
    }
}
