//! The lazy vmap issue's tests: the guest's vmap self-tests (those of Linux's
//! lib/test_vmalloc.c, the purge threshold, stale TLB entries, lazy aliases) pass
//! in every `--vmap` form on 1 and 2 vCPUs; the stale-TLB test fails when the
//! purge does not flush the other CPUs; the churn keeps its contents; the
//! benchmark's flush counts are those of each form. All VMs share one `vmm batch`.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use common::JobLine;

const FORMS: [&str; 3] = ["eager", "lazy-ptes", "lazy-tlb"];
const BASE: [&str; 5] = ["run", "--mem", "256m", "--lowmem", "64m"];
const BENCH_ITERS: u64 = 5000;

fn jobs() -> &'static HashMap<String, JobLine> {
    static JOBS: OnceLock<HashMap<String, JobLine>> = OnceLock::new();
    JOBS.get_or_init(|| {
        common::guest();
        let mut jobs: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |name: String, extra: &[&str]| {
            let args = BASE.iter().chain(extra).map(|s| s.to_string()).collect();
            jobs.push((name, args));
        };
        let iters = BENCH_ITERS.to_string();
        for form in FORMS {
            for vcpus in ["1", "2"] {
                add(format!("test-{form}-{vcpus}"), &["--workload", "vmap-test", "--vmap", form, "--vcpus", vcpus]);
                add(format!("churn-{form}-{vcpus}"), &["--workload", "vmap-churn", "--vmap", form, "--vcpus", vcpus]);
                add(
                    format!("bench-{form}-{vcpus}"),
                    &["--workload", "vmap-bench", "--vmap", form, "--vcpus", vcpus, "--iterations", &iters],
                );
            }
        }
        for form in ["lazy-ptes", "lazy-tlb"] {
            add(
                format!("flush-6.5-{form}"),
                &["--workload", "vmap-test", "--vmap", form, "--vcpus", "2", "--vmap-flush", "6.5"],
            );
            add(
                format!("local-flush-{form}"),
                &["--workload", "vmap-test", "--vmap", form, "--vcpus", "2", "--inject", "vmap-local-flush"],
            );
        }
        // The vmalloc space on 4 vCPUs (lazy_max_pages 24576) with the kmap
        // series at their largest: below 896 MiB of lowmem it is too small
        // for the threshold, above 64 MiB it is not.
        for (lowmem, mem) in [("896m", "1g"), ("64m", "256m")] {
            let args = ["--mem", mem, "--lowmem", lowmem, "--vcpus", "4", "--last-pkmap", "2048"];
            let more = ["--workload", "vmap-test", "--vmap", "lazy-tlb"];
            let args: Vec<String> = ["run"].iter().chain(&args).chain(&more).map(|s| s.to_string()).collect();
            jobs.push((format!("space-{lowmem}"), args));
        }
        let refs: Vec<(&str, Vec<&str>)> =
            jobs.iter().map(|(n, a)| (n.as_str(), a.iter().map(String::as_str).collect())).collect();
        common::batch(&refs)
    })
}

fn job(name: &str) -> &'static JobLine {
    &jobs()[name]
}

fn assert_passes(name: &str) -> &'static JobLine {
    let j = job(name);
    assert_eq!(j.exit_code(), 0, "{name}: {}", j.stdout());
    assert!(j.stdout().contains("all checks passed"), "{name}: {}", j.stdout());
    j
}

/// Linux's lazy_max_pages(): fls(CPUs) x 32 MiB of pages.
fn lazy_max_pages(cpus: u32) -> u64 {
    (32 - cpus.leading_zeros()) as u64 * 8192
}

#[test]
fn every_form_passes_the_self_tests_on_1_and_2_vcpus() {
    for form in FORMS {
        for vcpus in [1, 2] {
            let name = format!("test-{form}-{vcpus}");
            let j = assert_passes(&name);
            assert_eq!(j.result("vmap_lazy_areas"), 0, "{name}");
            assert!(j.total("vmap_flushes") > 0, "{name}: never flushed");
            if form == "eager" {
                assert_eq!(j.total("vmap_purges"), 0, "{name}: eager purged");
                assert_eq!(j.total("vmap_lazy_pages"), 0, "{name}: eager left pages lazy");
                assert_eq!(j.total("vmap_block_allocs"), 0, "{name}: eager used vmap blocks");
            } else {
                assert!(j.total("vmap_block_allocs") > 0 && j.total("vmap_block_frees") > 0, "{name}: blocks unused");
                assert!(j.total("vmap_block_purges") > 0, "{name}: no fragmented block purged");
                let (calls, flushed) = (j.total("vm_unmap_aliases"), j.total("vm_unmap_aliases_flushed"));
                assert!(flushed > 0 && flushed < calls, "{name}: {flushed} of {calls} vm_unmap_aliases flushed");
            }
        }
    }
}

/// `--vmap-flush`: 2.6.28's vm_unmap_aliases() (the default) flushes a block's
/// dirty range at every later call and skips a full block, whose freed range
/// keeps its lazy aliases (the guest's self-test frees one 32-page range of a
/// full block and counts what is left); 6.5's does neither.
#[test]
fn vm_unmap_aliases_2_6_28_flushes_again_and_skips_full_blocks_and_6_5_does_neither() {
    for form in ["lazy-ptes", "lazy-tlb"] {
        let (old, new) = (assert_passes(&format!("test-{form}-2")), assert_passes(&format!("flush-6.5-{form}")));
        assert!(old.total("vm_unmap_aliases_reflushed") > 0, "{form}: 2.6.28 never flushed an old range again");
        assert_eq!(new.total("vm_unmap_aliases_reflushed"), 0, "{form}: 6.5 flushed an old range again");
        assert_eq!(old.result("full_block_aliases_kept"), 32, "{form}: 2.6.28 took a full block's aliases");
        assert_eq!(new.result("full_block_aliases_kept"), 0, "{form}: 6.5 left a full block's aliases");
    }
}

#[test]
fn the_lazy_purge_starts_past_linuxs_lazy_max_pages() {
    for (name, cpus) in [("test-lazy-ptes-1", 1), ("test-lazy-tlb-2", 2)] {
        let j = assert_passes(name);
        let max = lazy_max_pages(cpus);
        assert_eq!(j.result("vmap_lazy_max_pages"), max, "{name}");
        // Each vunmap owes a page and its guard: the purge comes with the first
        // vunmap that takes the count past the limit.
        assert_eq!(j.result("vmap_purge_at_pages"), max + 2, "{name}");
    }
}

/// The vmalloc space starts 8 to 16 MiB above lowmem, as 2.6.28's
/// `VMALLOC_START`: with less lowmem it is larger, and the lazy purge on 4 vCPUs
/// then comes from Linux's threshold, not from a full space.
#[test]
fn the_vmalloc_space_grows_as_lowmem_shrinks() {
    let (big, small) = (assert_passes("space-64m"), assert_passes("space-896m"));
    // 4 GiB less the fixmap (4 MiB), three kmap series of 2048 pages (24 MiB),
    // two guard pages, and lowmem with its gap: 64 + 8 or 896 + 8 MiB.
    assert_eq!(big.result("vmalloc_mib"), 1024 - 4 - 24 - 1 - 72, "{}", big.stdout());
    assert_eq!(small.result("vmalloc_mib"), 1024 - 4 - 24 - 1 - 904, "{}", small.stdout());
    let max = lazy_max_pages(4);
    assert_eq!(big.result("vmap_purge_at_pages"), max + 2, "lowmem 64m: {}", big.stdout());
    assert!(
        small.report()["results"].get("vmap_purge_at_pages").is_none(),
        "lowmem 896m: a purge by the threshold in a space of 91 MiB: {}",
        small.stdout()
    );
}

#[test]
fn a_purge_that_does_not_flush_the_other_cpus_leaves_stale_tlb_entries() {
    for form in ["lazy-ptes", "lazy-tlb"] {
        let j = job(&format!("local-flush-{form}"));
        assert_eq!(j.exit_code(), 1, "{form}: {}", j.stdout());
        let out = j.stdout();
        assert!(out.contains("cpu 1 still reads the unmapped page: a stale TLB entry"), "{form}: {out}");
        assert_eq!(j.total("vmap_flush_ipis"), 0, "{form}");
    }
}

#[test]
fn the_churn_keeps_every_areas_contents_in_every_form() {
    for form in FORMS {
        for vcpus in [1, 2] {
            let name = format!("churn-{form}-{vcpus}");
            let j = assert_passes(&name);
            assert!(j.total("vmap_area_allocs") > 100, "{name}: too little churn");
            assert_eq!(j.result("vmap_lazy_pages"), 0, "{name}: lazy pages after vm_unmap_aliases");
        }
    }
}

#[test]
fn the_benchmark_flushes_at_every_unmap_only_when_eager() {
    for vcpus in [1u64, 2] {
        let eager = assert_passes(&format!("bench-eager-{vcpus}"));
        let iters = BENCH_ITERS * vcpus;
        assert_eq!(eager.result("vmap_bench_iters"), iters);
        assert_eq!(eager.result("vmap_bench_flushes"), iters, "eager: one flush per vm_unmap_ram");
        assert_eq!(eager.result("vmap_bench_flush_ipis"), iters * (vcpus - 1), "eager: an IPI per flush per other CPU");
        for form in ["lazy-ptes", "lazy-tlb"] {
            let j = assert_passes(&format!("bench-{form}-{vcpus}"));
            let flushes = j.result("vmap_bench_flushes");
            assert!(flushes > 0 && flushes * 100 < iters, "{form} {vcpus}: {flushes} flushes for {iters} unmaps");
            assert_eq!(j.result("vmap_bench_flush_ipis"), flushes * (vcpus - 1), "{form} {vcpus}");
            // 4 pages from 1024-page blocks: a block per 256 iterations, given back full.
            let blocks = j.total("vmap_block_allocs");
            assert!(
                blocks >= iters / 256 && j.total("vmap_block_frees") + vcpus >= blocks,
                "{form} {vcpus}: {blocks} blocks"
            );
        }
    }
}
