//! A sweep's directory: `sweep.json` (what was asked: the experiments, the
//! repetitions, the slice, the machine) and `bench.jsonl` (one line per cell and
//! repetition, appended as each job finishes, so an interrupted sweep keeps what
//! it finished and `--resume` knows what is left). Nothing rewrites a sweep's
//! lines: a line that does not parse stays where it is, is ignored with a
//! warning, and a sweep that goes on keeps a copy of it in
//! `bench.rejected.jsonl`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::design::{Cell, Experiment};
use super::figures::Figures;
use super::shard::Shard;
use super::Error;
use vmm::run::JobOutcome;

pub const SWEEP_FILE: &str = "sweep.json";
pub const LINES_FILE: &str = "bench.jsonl";
/// Copies of the lines of a JSONL that do not parse.
pub const REJECTED_FILE: &str = "bench.rejected.jsonl";
pub const SCHEMA: u32 = 1;

/// The machine a sweep ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub mem_mib: u64,
}

impl Machine {
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu,
            mem_mib: mem_kib >> 10,
        }
    }
}

/// What a sweep was asked to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub schema: u32,
    /// `default`, `full`, `smoke`, or `spec <file>`.
    pub matrix: String,
    /// Whether this is the full matrix (a verdict without its figures then says
    /// "not measured" plainly rather than "needs --full").
    pub full: bool,
    pub reps: u32,
    pub shard: Option<Shard>,
    /// The experiments kept with `--only` (empty: all).
    pub only: Vec<String>,
    pub experiments: Vec<Experiment>,
    pub started_at: String,
    pub command: Vec<String>,
    pub machine: Machine,
    pub vmm_version: String,
    pub vmm_id: String,
    pub guest_kernel: String,
}

impl Sweep {
    /// How many times this cell runs: the most that any of its experiments asks
    /// for (those that name no count take the sweep's).
    pub fn cell_reps(&self, cell: &Cell) -> u32 {
        self.experiments
            .iter()
            .filter(|e| cell.experiments.contains(&e.id))
            .map(|e| e.reps.unwrap_or(self.reps))
            .max()
            .unwrap_or(self.reps)
    }

    /// The runs of these cells, repetition-major: every cell runs once before
    /// any runs twice, so an interrupted sweep has something of each. A cell
    /// runs [`Self::cell_reps`] times, or as `planned` (by cell key) says if
    /// that is more (repetitions chosen from the spread, `super::plan`).
    pub fn jobs(&self, cells: &[Cell], planned: &BTreeMap<String, u32>) -> Vec<(usize, u32)> {
        let reps: Vec<u32> =
            cells.iter().map(|c| self.cell_reps(c).max(planned.get(&c.key).copied().unwrap_or(0))).collect();
        let most = reps.iter().copied().max().unwrap_or(0);
        (0..most)
            .flat_map(|rep| (0..cells.len()).filter(|&c| rep < reps[c]).map(move |c| (c, rep)).collect::<Vec<_>>())
            .collect()
    }

    /// "3 repetitions", and the experiments that ask for another count:
    /// "3 repetitions (alias-frequency 15)".
    pub fn reps_text(&self) -> String {
        let own: Vec<String> = self
            .experiments
            .iter()
            .filter_map(|e| e.reps.filter(|r| *r != self.reps).map(|r| format!("{} {r}", e.id)))
            .collect();
        let mut s = format!("{} repetition{}", self.reps, if self.reps == 1 { "" } else { "s" });
        if !own.is_empty() {
            s += &format!(" ({})", own.join(", "));
        }
        s
    }
}

/// One cell and repetition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub schema: u32,
    /// The cell's key (its configuration).
    pub cell: String,
    pub label: String,
    pub experiments: Vec<String>,
    pub rep: u32,
    pub vcpus: u32,
    pub mem: String,
    pub args: Vec<String>,
    /// The full configuration (every guest parameter).
    pub config: BTreeMap<String, String>,
    pub vmm_version: String,
    pub vmm_id: String,
    pub guest_kernel: String,
    /// `qemu` or `local`, from the run's report.
    pub host_mode: String,
    pub ok: bool,
    pub exit_code: Option<i32>,
    /// Why the run failed, with the guest's last word.
    pub failure: Option<String>,
    pub attempts: u32,
    #[serde(default)]
    pub emulator_faults: Vec<String>,
    pub finished_at: String,
    /// The figures of a run that succeeded (none for a failed one), by name;
    /// names this vmm does not know are left out when read.
    #[serde(deserialize_with = "super::figures::deserialize_known")]
    pub figures: Figures,
    /// The guest console's last lines (failed runs).
    #[serde(default)]
    pub guest_tail: Vec<String>,
    /// The run's whole report.
    #[serde(default)]
    pub report: Option<Value>,
}

/// Versions and identities of what ran.
pub struct Ids<'a> {
    pub vmm_version: &'a str,
    pub vmm_id: &'a str,
    pub guest_kernel: &'a str,
}

/// Why a run failed: how it ended and the guest's last line.
pub fn failure(o: &JobOutcome) -> Option<String> {
    let outcome = o.report.as_ref().map(|r| &r.outcome);
    let ok = o.exit_code == Some(0) && matches!(outcome, Some(vmm::report::Outcome::Shutdown { code: 0 }));
    if ok {
        return None;
    }
    let mut why = match &outcome {
        Some(out) => out.describe(),
        None => format!(
            "no report (exit code {}){}",
            o.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
            o.stderr.iter().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {l}")).unwrap_or_default()
        ),
    };
    if let Some(last) = o.stdout.iter().rev().find(|l| !l.trim().is_empty()) {
        why += &format!("; guest: {}", last.trim());
    }
    if !o.emulator_faults.is_empty() {
        why += &format!(" (after {} attempts with the emulator's known fault)", o.attempts);
    }
    Some(why)
}

impl Line {
    pub fn new(cell: &Cell, rep: u32, o: &JobOutcome, ids: &Ids, finished_at: String) -> Line {
        let failure = failure(o);
        let ok = failure.is_none();
        let host_mode = o.report.as_ref().map_or_else(|| "unknown".into(), |r| r.host.mode.clone());
        // The line keeps the report as the file holds it, and its figures are
        // read from that form: the same path for a run that just ended and
        // for a stored one being repriced.
        let report = o.report.as_deref().and_then(|r| serde_json::to_value(r).ok());
        let figures = match (&report, ok) {
            (Some(r), true) => super::figures::extract(r),
            _ => Figures::new(),
        };
        let guest_tail = if ok { vec![] } else { o.stdout.iter().rev().take(8).rev().cloned().collect() };
        Line {
            schema: SCHEMA,
            cell: cell.key.clone(),
            label: cell.label.clone(),
            experiments: cell.experiments.clone(),
            rep,
            vcpus: cell.vcpus,
            mem: cell.mem.clone(),
            args: cell.args.clone(),
            config: cell.config.clone(),
            vmm_version: ids.vmm_version.to_owned(),
            vmm_id: ids.vmm_id.to_owned(),
            guest_kernel: ids.guest_kernel.to_owned(),
            host_mode,
            ok,
            exit_code: o.exit_code,
            failure,
            attempts: o.attempts,
            emulator_faults: o.emulator_faults.clone(),
            finished_at,
            figures,
            guest_tail,
            report,
        }
    }
}

pub fn write_sweep(dir: &Path, sweep: &Sweep) -> Result<(), Error> {
    let path = dir.join(SWEEP_FILE);
    let text = serde_json::to_string_pretty(sweep).map_err(|e| Error::Json(path.clone(), e))?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::Write(path, e))
}

pub fn read_sweep(dir: &Path) -> Result<Sweep, Error> {
    let path = dir.join(SWEEP_FILE);
    if !dir.is_dir() {
        return Err(Error::NotASweep(dir.to_owned(), "no such directory".into()));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::NotASweep(dir.to_owned(), format!("cannot read {SWEEP_FILE}: {e}")))?;
    let sweep: Sweep = serde_json::from_str(&text).map_err(|e| Error::Json(path, e))?;
    if sweep.schema != SCHEMA {
        return Err(Error::NotASweep(dir.to_owned(), format!("schema {} (this vmm reads {SCHEMA})", sweep.schema)));
    }
    Ok(sweep)
}

/// A line of a JSONL that does not parse: where it is, what it holds, and why
/// it was not read. The file itself keeps it (nothing rewrites a sweep's
/// lines); a sweep that goes on keeps a copy in [`REJECTED_FILE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The file it is in.
    pub file: PathBuf,
    /// Its line number, 1-based.
    pub line: usize,
    /// The line as it is in the file.
    pub text: String,
    /// Why it does not parse.
    pub error: String,
}

impl Rejected {
    /// `FILE:LINE: ignored a line that does not parse (ERROR)`.
    pub fn warning(&self) -> String {
        format!("{}:{}: ignored a line that does not parse ({})", self.file.display(), self.line, self.error)
    }
}

/// What a sweep's JSONL holds: the lines that parse, in order, and those that
/// do not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lines {
    pub lines: Vec<Line>,
    pub rejected: Vec<Rejected>,
}

/// Reads a sweep's JSONL (none yet: no lines). A line that does not parse (the
/// last one, cut by an interrupted write, or any other) is returned among the
/// rejected ones and the others are read on; the file is never written.
pub fn read_lines(dir: &Path) -> Result<Lines, Error> {
    let path = dir.join(LINES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::Read(path, e)),
    };
    let mut out = Lines::default();
    for (n, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(l) {
            Ok(line) => out.lines.push(line),
            Err(e) => out.rejected.push(Rejected {
                file: path.clone(),
                line: n + 1,
                text: l.to_owned(),
                error: e.to_string(),
            }),
        }
    }
    Ok(out)
}

/// Keeps copies of rejected lines in `dir`'s [`REJECTED_FILE`] (appended, one
/// JSON object a line), each once: those it already holds are not written
/// again. Returns how many it wrote.
pub fn keep_aside(dir: &Path, rejected: &[Rejected]) -> Result<usize, Error> {
    let path = dir.join(REJECTED_FILE);
    let held: Vec<Rejected> = match std::fs::read_to_string(&path) {
        Ok(t) => t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(Error::Read(path, e)),
    };
    let new: Vec<&Rejected> =
        rejected.iter().filter(|r| !held.iter().any(|h| h.line == r.line && h.text == r.text)).collect();
    if new.is_empty() {
        return Ok(0);
    }
    let mut text = String::new();
    for r in &new {
        text += &serde_json::to_string(r).map_err(|e| Error::Json(path.clone(), e))?;
        text.push('\n');
    }
    let mut file = open_for_append(&path)?;
    file.write_all(text.as_bytes()).map_err(|e| Error::Write(path.clone(), e))?;
    file.flush().map_err(|e| Error::Write(path, e))?;
    Ok(new.len())
}

/// Opens a file to append lines to: if it holds a last line without its '\n'
/// (cut by an interrupted write), the '\n' is written first so that the next
/// line does not run on from the fragment.
fn open_for_append(path: &Path) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::FileExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Write(path.to_owned(), e))?;
    let len = file.metadata().map_err(|e| Error::Read(path.to_owned(), e))?.len();
    if len > 0 {
        let mut last = [0u8];
        file.read_exact_at(&mut last, len - 1).map_err(|e| Error::Read(path.to_owned(), e))?;
        if last[0] != b'\n' {
            file.write_all(b"\n").map_err(|e| Error::Write(path.to_owned(), e))?;
        }
    }
    Ok(file)
}

/// Writes a whole JSONL (through a temporary file and a rename): the lines of a
/// new directory (`vmm bench merge --out`), never those of a sweep that exists.
pub fn rewrite_lines(dir: &Path, lines: &[Line]) -> Result<(), Error> {
    let path = dir.join(LINES_FILE);
    let tmp = dir.join(format!("{LINES_FILE}.tmp"));
    let mut text = String::new();
    for l in lines {
        text += &serde_json::to_string(l).map_err(|e| Error::Json(path.clone(), e))?;
        text.push('\n');
    }
    std::fs::write(&tmp, text).map_err(|e| Error::Write(tmp.clone(), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::Write(path, e))
}

/// Appends lines to the JSONL as jobs finish (and never rewrites it).
pub struct Appender {
    path: PathBuf,
    file: std::fs::File,
}

impl Appender {
    pub fn open(dir: &Path) -> Result<Appender, Error> {
        let path = dir.join(LINES_FILE);
        let file = open_for_append(&path)?;
        Ok(Appender { path, file })
    }

    pub fn push(&mut self, line: &Line) -> Result<(), Error> {
        let mut text = serde_json::to_string(line).map_err(|e| Error::Json(self.path.clone(), e))?;
        text.push('\n');
        // One write per line: an interruption leaves at most a cut last line.
        self.file.write_all(text.as_bytes()).map_err(|e| Error::Write(self.path.clone(), e))?;
        self.file.flush().map_err(|e| Error::Write(self.path.clone(), e))
    }
}

/// The (cell, repetition) pairs done: those with a run that succeeded (a failed
/// run is run again by `--resume`).
pub fn done(lines: &[Line]) -> BTreeSet<(String, u32)> {
    lines.iter().filter(|l| l.ok).map(|l| (l.cell.clone(), l.rep)).collect()
}

/// The line that stands for each (cell, repetition) of one sweep's lines: the
/// latest that succeeded, else the latest that failed (a failed run that was
/// run again and succeeded is superseded). In the order of each pair's first
/// line.
pub fn latest(lines: &[Line]) -> Vec<&Line> {
    let mut at: BTreeMap<(&str, u32), usize> = BTreeMap::new();
    let mut out: Vec<&Line> = Vec::new();
    for l in lines {
        match at.get(&(l.cell.as_str(), l.rep)) {
            Some(&i) => {
                if l.ok || !out[i].ok {
                    out[i] = l;
                }
            }
            None => {
                at.insert((l.cell.as_str(), l.rep), out.len());
                out.push(l);
            }
        }
    }
    out
}

/// Joins the lines of several sweeps: each (cell, repetition) once, a run that
/// succeeded over one that failed, else the first seen; returns the lines and
/// how many others were dropped.
pub fn merge_lines(sets: Vec<Vec<Line>>) -> (Vec<Line>, usize) {
    // (cell, rep) -> (index in out, the set it came from).
    let mut at: BTreeMap<(String, u32), (usize, usize)> = BTreeMap::new();
    let mut out: Vec<Line> = Vec::new();
    let mut dup = 0;
    for (set_no, set) in sets.into_iter().enumerate() {
        for l in set {
            match at.get(&(l.cell.clone(), l.rep)).copied() {
                Some((i, from)) => {
                    dup += 1;
                    // Within one directory a later line supersedes an earlier
                    // one as it does there ([`latest`]), unless a failure would
                    // replace a success; across directories a success replaces
                    // a failure, else the first is kept.
                    let replace = if from == set_no { l.ok || !out[i].ok } else { l.ok && !out[i].ok };
                    if replace {
                        out[i] = l;
                        at.insert((out[i].cell.clone(), out[i].rep), (i, set_no));
                    }
                }
                None => {
                    at.insert((l.cell.clone(), l.rep), (out.len(), set_no));
                    out.push(l);
                }
            }
        }
    }
    (out, dup)
}

/// A 64-bit FNV-1a hash, as 16 hex digits: identifies a binary or an image.
pub fn fnv64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `fnv64:<hash> (<size> bytes)` of a file, or why not.
pub fn file_id(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(b) => format!("fnv64:{} ({} bytes)", fnv64(&b), b.len()),
        Err(e) => format!("unreadable {}: {e}", path.display()),
    }
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    utc(secs)
}

/// A Unix time as `YYYY-MM-DDTHH:MM:SSZ` (the civil calendar from days since
/// 1970-01-01, proleptic Gregorian).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_763_820_245), "2025-11-22T14:04:05Z");
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv64(b""), "cbf29ce484222325");
        assert_eq!(fnv64(b"a"), "af63dc4c8601ec8c");
    }

    #[test]
    fn an_experiment_may_ask_for_more_repetitions_and_a_shared_cell_runs_the_most() {
        use super::super::design::{cells, CellSpec};
        let spec = |label: &str, iterations: &str| CellSpec {
            linux: None,
            label: label.into(),
            vcpus: 1,
            mem: "256m".into(),
            timeout: 60,
            params: [("workload", "vmap-bench"), ("iterations", iterations)]
                .iter()
                .map(|(k, v)| shared::config::Setting::parse(k, v).unwrap())
                .collect(),
        };
        let exp = |id: &str, cells: Vec<CellSpec>, reps: Option<u32>| Experiment {
            id: id.into(),
            title: id.into(),
            question: String::new(),
            cells,
            columns: vec![],
            plot: None,
            claims: vec![],
            note: None,
            reps,
            adapt: None,
        };
        // "shared" is in both experiments; "many" asks for 5.
        let experiments = vec![
            exp("few", vec![spec("only-few", "100"), spec("shared", "200")], None),
            exp("many", vec![spec("shared", "200"), spec("only-many", "300")], Some(5)),
        ];
        let all = cells(&experiments).unwrap();
        let sweep = Sweep {
            schema: SCHEMA,
            matrix: "spec".into(),
            full: false,
            reps: 2,
            shard: None,
            only: vec![],
            experiments,
            started_at: String::new(),
            command: vec![],
            machine: Machine::default(),
            vmm_version: String::new(),
            vmm_id: String::new(),
            guest_kernel: String::new(),
        };
        let reps: Vec<(&str, u32)> = all.iter().map(|c| (c.label.as_str(), sweep.cell_reps(c))).collect();
        assert_eq!(reps, [("only-few", 2), ("shared", 5), ("only-many", 5)]);
        assert_eq!(sweep.reps_text(), "2 repetitions (many 5)");
        let jobs = sweep.jobs(&all, &BTreeMap::new());
        assert_eq!(jobs.len(), 2 + 5 + 5);
        // Repetition-major: every cell has its first run before any its second.
        assert_eq!(&jobs[..3], &[(0, 0), (1, 0), (2, 0)]);
        assert_eq!(&jobs[6..], &[(1, 2), (2, 2), (1, 3), (2, 3), (1, 4), (2, 4)]);
        // A plan asks for more of one cell, never fewer of another.
        let planned = BTreeMap::from([(all[0].key.clone(), 4), (all[2].key.clone(), 1)]);
        let jobs = sweep.jobs(&all, &planned);
        assert_eq!(jobs.len(), 4 + 5 + 5);
    }

    fn line(cell: &str, rep: u32) -> Line {
        Line {
            schema: SCHEMA,
            cell: cell.into(),
            label: cell.into(),
            experiments: vec![],
            rep,
            vcpus: 1,
            mem: "256m".into(),
            args: vec![],
            config: BTreeMap::new(),
            vmm_version: String::new(),
            vmm_id: String::new(),
            guest_kernel: String::new(),
            host_mode: "qemu".into(),
            ok: true,
            exit_code: Some(0),
            failure: None,
            attempts: 1,
            emulator_faults: vec![],
            finished_at: String::new(),
            figures: Figures::new(),
            guest_tail: vec![],
            report: None,
        }
    }

    fn failed(cell: &str, rep: u32) -> Line {
        Line { ok: false, exit_code: Some(1), failure: Some("guest shut down with status 1".into()), ..line(cell, rep) }
    }

    fn pairs(lines: &[Line]) -> Vec<(String, u32, bool)> {
        lines.iter().map(|l| (l.cell.clone(), l.rep, l.ok)).collect()
    }

    #[test]
    fn merging_keeps_each_pair_once() {
        let (m, dup) = merge_lines(vec![vec![line("a", 0), line("b", 0)], vec![line("a", 0), line("a", 1)]]);
        assert_eq!(dup, 1);
        let pairs: Vec<(String, u32)> = m.iter().map(|l| (l.cell.clone(), l.rep)).collect();
        assert_eq!(pairs, [("a".into(), 0), ("b".into(), 0), ("a".into(), 1)]);
        assert_eq!(done(&m).len(), 3);
    }

    #[test]
    fn merging_prefers_a_run_that_succeeded_over_one_that_failed() {
        // The failed run first (in another directory, or earlier in the same one)...
        let (m, dup) = merge_lines(vec![vec![failed("a", 0), line("b", 0)], vec![line("a", 0), failed("b", 0)]]);
        assert_eq!(dup, 2);
        assert_eq!(pairs(&m), [("a".into(), 0, true), ("b".into(), 0, true)]);
        let (m, dup) = merge_lines(vec![vec![failed("a", 0), failed("a", 0), line("a", 0), failed("a", 1)]]);
        assert_eq!(dup, 2);
        assert_eq!(pairs(&m), [("a".into(), 0, true), ("a".into(), 1, false)]);
        // Of two that succeeded, the first is kept.
        let mut first = line("a", 0);
        first.finished_at = "first".into();
        let (m, _) = merge_lines(vec![vec![first], vec![line("a", 0)]]);
        assert_eq!(m[0].finished_at, "first");
    }

    #[test]
    fn failed_runs_are_not_done_and_a_rerun_that_succeeded_supersedes_them() {
        let lines = vec![line("a", 0), failed("a", 1), failed("b", 0), failed("b", 0)];
        let d = done(&lines);
        assert_eq!(d, [("a".to_owned(), 0)].into_iter().collect());
        let mut rerun = line("a", 1);
        rerun.finished_at = "later".into();
        let mut more = lines.clone();
        more.push(rerun);
        assert_eq!(done(&more).len(), 2);
        let l = latest(&more);
        assert_eq!(
            pairs(&l.into_iter().cloned().collect::<Vec<_>>()),
            [("a".into(), 0, true), ("a".into(), 1, true), ("b".into(), 0, false)]
        );
        // A failure after the success does not undo it.
        more.push(failed("a", 1));
        assert_eq!(latest(&more)[1].finished_at, "later");

        // The results gathered take the rerun, not the failure.
        use super::super::design::CellSpec;
        let spec =
            CellSpec { label: "c".into(), vcpus: 1, mem: "64m".into(), timeout: 10, params: vec![], linux: None };
        let cell = spec.resolve("e").unwrap();
        let with = |l: Line| Line { cell: cell.key.clone(), ..l };
        let lines = vec![with(failed("x", 0)), with(line("x", 0)), with(failed("x", 1))];
        let r = super::super::results::gather(std::slice::from_ref(&cell), &lines);
        assert_eq!(r[0].reps.iter().map(|(rep, _)| *rep).collect::<Vec<_>>(), [0]);
        assert_eq!(r[0].failures.iter().map(|(rep, _)| *rep).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_corrupt_middle_line_is_rejected_the_others_kept_and_the_file_left_as_it_is() {
        let dir = vmm::platform::appliance::tempdir().unwrap();
        let (a, b) = (serde_json::to_string(&line("a", 0)).unwrap(), serde_json::to_string(&line("b", 0)).unwrap());
        let bad = format!("{}garbage", &a[..a.len() / 3]);
        let text = format!("{a}\n{bad}\n\n{b}\n");
        let path = dir.path().join(LINES_FILE);
        std::fs::write(&path, &text).unwrap();
        let read = read_lines(dir.path()).unwrap();
        assert_eq!(pairs(&read.lines), [("a".into(), 0, true), ("b".into(), 0, true)]);
        assert_eq!(read.rejected.len(), 1);
        let r = &read.rejected[0];
        assert_eq!((r.file.as_path(), r.line, r.text.as_str()), (path.as_path(), 2, bad.as_str()));
        assert!(!r.error.is_empty());
        assert!(r.warning().starts_with(&format!("{}:2: ", path.display())), "{}", r.warning());
        assert_eq!(std::fs::read(&path).unwrap(), text.as_bytes(), "reading never writes");
        assert!(!dir.path().join(REJECTED_FILE).exists(), "reading keeps nothing aside");

        // Kept aside once, however often it is read.
        assert_eq!(keep_aside(dir.path(), &read.rejected).unwrap(), 1);
        assert_eq!(keep_aside(dir.path(), &read_lines(dir.path()).unwrap().rejected).unwrap(), 0);
        let kept = std::fs::read_to_string(dir.path().join(REJECTED_FILE)).unwrap();
        assert_eq!(kept.lines().count(), 1);
        assert_eq!(&serde_json::from_str::<Rejected>(kept.lines().next().unwrap()).unwrap(), r);
        assert_eq!(std::fs::read(&path).unwrap(), text.as_bytes());

        // No file: no lines, nothing written.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(read_lines(&empty).unwrap(), Lines::default());
        assert!(!empty.join(LINES_FILE).exists());
        assert!(matches!(read_sweep(dir.path()), Err(Error::NotASweep(..))));
        assert!(matches!(read_sweep(&dir.path().join("nope")), Err(Error::NotASweep(..))));
    }

    #[test]
    fn appending_after_a_cut_last_line_starts_a_line_of_its_own() {
        let dir = vmm::platform::appliance::tempdir().unwrap();
        let good = serde_json::to_string(&line("a", 0)).unwrap();
        let cut = &good[..good.len() / 2];
        let path = dir.path().join(LINES_FILE);
        std::fs::write(&path, format!("{good}\n{cut}")).unwrap();
        let before = read_lines(dir.path()).unwrap();
        assert_eq!((before.lines.len(), before.rejected.len()), (1, 1));
        let mut out = Appender::open(dir.path()).unwrap();
        out.push(&line("b", 0)).unwrap();
        out.push(&line("c", 0)).unwrap();
        drop(out);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&format!("{good}\n{cut}\n")), "appended, not rewritten: {text}");
        assert!(text.ends_with('\n'));
        let after = read_lines(dir.path()).unwrap();
        assert_eq!(pairs(&after.lines), [("a".into(), 0, true), ("b".into(), 0, true), ("c".into(), 0, true)]);
        assert_eq!(after.rejected, before.rejected, "only the fragment is rejected");

        // A file that ends its last line gets no empty line.
        let mut out = Appender::open(dir.path()).unwrap();
        out.push(&line("d", 0)).unwrap();
        let text2 = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text2, format!("{text}{}\n", serde_json::to_string(&line("d", 0)).unwrap()));
        // A new file starts with its first line.
        let fresh = dir.path().join("fresh");
        std::fs::create_dir(&fresh).unwrap();
        Appender::open(&fresh).unwrap().push(&line("a", 0)).unwrap();
        assert_eq!(std::fs::read_to_string(fresh.join(LINES_FILE)).unwrap(), format!("{good}\n"));
    }
}
