//! What the protection of the validated tables cost over a run, as the VMM
//! carried it out (read-only memslots, the dirty log): part of the PV MMU's
//! report. The KVM layer fills it in (`kvm::write_protect`); the type lives
//! here so that the PV MMU, which reports it, imports nothing from KVM.

use serde::Serialize;

/// What write protection cost over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProtectStats {
    /// Whether this KVM has read-only memslots (if not, nothing is protected).
    pub available: bool,
    pub chunk_bytes: u64,
    /// Frames protected now, and the most at once.
    pub protected: u64,
    pub protected_max: u64,
    /// Chunks re-registered, and the host time it took (the world stopped).
    pub chunk_updates: u64,
    pub update_ns: u64,
    /// Why the protection was switched off during the run, if it was.
    #[serde(default)]
    pub switched_off: Option<String>,
    /// The dirty log over the tables no read-only slot covers.
    #[serde(default)]
    pub dirty_log: DirtyLogStats,
}

/// What watching tables with the dirty log cost over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DirtyLogStats {
    /// Whether tables were watched (`--host-write-watch dirty-log` on a KVM that
    /// offers manual dirty-log protection), and why not when asked for and not.
    pub on: bool,
    #[serde(default)]
    pub unavailable: Option<String>,
    /// Tables watched now, and the most at once.
    pub watched: u64,
    pub watched_max: u64,
    /// Hypercall exits at which the log was read, the slots read, the watched
    /// tables handed on to be compared with the host's copy (written since the
    /// last look, or hot), those cleared (write-protected again in KVM), and the
    /// host time of reading and clearing.
    pub harvests: u64,
    pub slot_reads: u64,
    pub tables_written: u64,
    #[serde(default)]
    pub tables_cleared: u64,
    pub harvest_ns: u64,
    /// Host time comparing the tables handed on with the host's copy.
    #[serde(default)]
    pub compare_ns: u64,
}
