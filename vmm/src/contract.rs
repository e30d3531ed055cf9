//! `vmm contract`: the contract-test runner, in the manner of XTF. The scenarios
//! are guest programs in the image (guest/src/contract/), listed in its
//! `.contracts` section; each runs in its own fresh VM and gets one verdict:
//!
//! - SUCCESS: the expected verdict (`pass`: the guest's checks of the host's
//!   answers held; `violation:<rule>`: the host stopped it for that rule).
//! - FAILURE: the host answered wrongly (a guest check failed, the host let a
//!   broken rule through, or stopped a guest that kept the rules).
//! - SKIP: the scenario cannot run in this VM (it said why).
//! - CRASH: the guest died (an exception, a triple fault, the watchdog).
//! - ERROR: the host could not run it (no report, a VMM error, the emulator's
//!   known fault on every attempt).
//!
//! Exit status: xtf-runner's, the worst verdict deciding (0 SUCCESS, 3 SKIP,
//! 4 ERROR, 5 FAILURE, 6 CRASH); 2 for usage errors. See docs/contract.md.

use std::path::PathBuf;

use clap::Args;

use crate::args::{parse_seconds, parse_write_watch, HostArgs, MAX_SECONDS};

use serde::Serialize;
use shared::contract::{ScenarioInfo, RECORD_SIZE, SECTION, SKIP_CODE};

use crate::kvm::loader;
use crate::platform::appliance;
use crate::platform::paths;
use crate::report::{exit_code, Outcome};
use crate::run::{jobs_ended, run_jobs_with, write_json_line, Error, JobEvent, JobOutcome, JobsOptions};
use pvmmu::Rule;
use std::io::Write as _;

/// The standard output's format of `vmm contract`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContractFormat {
    Text,
    Tap,
    Junit,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ContractArgs {
    /// Run (or list) only the scenarios whose name contains this.
    pub filter: Option<String>,
    /// List the scenarios of the image and exit.
    #[arg(long)]
    pub list: bool,
    /// The kernel image holding the scenarios (default: the guest of this checkout).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// What the standard output carries: `text` (a line per scenario and a
    /// summary), or only TAP, JUnit XML or JSON lines, for a CI that reads
    /// them from a pipe (the summary then goes to the standard error).
    #[arg(long, value_enum, default_value_t = ContractFormat::Text)]
    pub format: ContractFormat,
    /// Write one JSON line per scenario to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the verdicts as TAP (version 13) to this file, a line as each ends.
    #[arg(long)]
    pub tap: Option<PathBuf>,
    /// Write the verdicts as JUnit XML to this file when the run ends (or stops).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Watchdog of each scenario's VM, in seconds (1 to a week).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS as u64))]
    pub vm_timeout: u64,
    /// Give up on the whole run after this many seconds.
    #[arg(long, default_value_t = 3600.0, value_parser = parse_seconds)]
    pub timeout: f64,
    /// (Test only) run against a deliberately weakened host check (see --host-weaken).
    #[arg(long, hide = true)]
    pub weaken: Option<String>,
    /// How each VM's host finds direct writes to tables no read-only memslot
    /// covers (`vmm run --host-write-watch`): `memslot` shows what the suite
    /// misses without the dirty log.
    #[arg(long, value_parser = parse_write_watch)]
    pub host_write_watch: Option<String>,
    /// Echo each VM's console as it runs.
    #[arg(long)]
    pub verbose: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

/// XTF's verdicts, best first: the order xtf-runner ranks them in, the worst
/// of a run deciding its exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Success,
    Skip,
    Error,
    Failure,
    Crash,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "SUCCESS",
            Verdict::Skip => "SKIP",
            Verdict::Failure => "FAILURE",
            Verdict::Crash => "CRASH",
            Verdict::Error => "ERROR",
        }
    }

    /// xtf-runner's exit status for a run whose worst verdict this is.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Success => 0,
            Verdict::Skip => 3,
            Verdict::Error => ERROR_EXIT,
            Verdict::Failure => 5,
            Verdict::Crash => 6,
        }
    }
}

/// The exit status of an ERROR, and of a host that could not start at all.
pub const ERROR_EXIT: i32 = 4;

/// The scenarios of an image, in section order (their indexes).
pub fn scenarios(kernel: &std::path::Path) -> Result<Vec<ScenarioInfo>, Error> {
    let image = loader::parse(kernel)?;
    let Some(bytes) = image.section(SECTION) else {
        return Ok(Vec::new());
    };
    Ok(bytes.chunks_exact(RECORD_SIZE).filter_map(ScenarioInfo::from_bytes).collect())
}

/// What a scenario expects, as its record in the image says it
/// (`pass` or `violation:<rule>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Pass,
    Violation(Rule),
}

impl Expect {
    pub fn parse(s: &str) -> Option<Expect> {
        match s.strip_prefix("violation:") {
            None => (s == "pass").then_some(Expect::Pass),
            Some(rule) => Rule::from_name(rule).map(Expect::Violation),
        }
    }
}

/// The verdict on one run, and why: decided on the report's typed outcome.
pub fn verdict(expect: &str, o: &JobOutcome) -> (Verdict, String) {
    let Some(report) = &o.report else {
        let why = o.stderr.last().cloned().unwrap_or_else(|| format!("no report (exit code {:?})", o.exit_code));
        return (Verdict::Error, why);
    };
    if let Some(fault) = &report.emulator_fault {
        return (Verdict::Error, fault.clone());
    }
    let Some(want) = Expect::parse(expect) else {
        return (
            Verdict::Error,
            format!("the scenario expects {expect:?}, which is neither pass nor a known violation"),
        );
    };
    let outcome = report.outcome.clone();
    let fails = || {
        let lines: Vec<&str> = o.stdout.iter().filter(|l| l.starts_with("FAIL")).map(String::as_str).take(3).collect();
        if lines.is_empty() {
            "the guest's checks failed".to_owned()
        } else {
            lines.join("; ")
        }
    };
    match outcome {
        Outcome::Shutdown { code: 0 } if want == Expect::Pass => (Verdict::Success, String::new()),
        Outcome::Shutdown { code: 0 } => (Verdict::Failure, format!("the host let it through (expected a {expect})")),
        Outcome::Shutdown { code } if code == SKIP_CODE => {
            let why = o.stdout.iter().find_map(|l| l.strip_prefix("SKIP: ")).unwrap_or("no reason given");
            (Verdict::Skip, why.to_owned())
        }
        Outcome::Shutdown { .. } => (Verdict::Failure, fails()),
        Outcome::Violation { rule, .. } if want == Expect::Violation(rule) => (Verdict::Success, String::new()),
        Outcome::Violation { rule, detail, .. } => (Verdict::Failure, format!("the host stopped it: {rule}: {detail}")),
        Outcome::GuestFault(f) if f.vector == shared::abi::FaultReport::PANIC => {
            (Verdict::Crash, format!("guest_fault: {}", if f.message.is_empty() { f.name } else { f.message }))
        }
        // Where it faulted, so a crash seen once in a CI log can be found.
        Outcome::GuestFault(f) => (
            Verdict::Crash,
            format!(
                "guest_fault: {} on vCPU {} at eip={:#010x} cr2={:#010x} error={:#x}",
                if f.message.is_empty() { f.name } else { f.message },
                f.vcpu,
                f.eip,
                f.cr2,
                f.error_code
            ),
        ),
        Outcome::TripleFault(_) => (Verdict::Crash, "triple_fault".to_owned()),
        Outcome::Timeout { after_s, .. } => {
            (Verdict::Crash, format!("timeout: the watchdog fired after {after_s:.0} s"))
        }
        Outcome::VmmError { message } => (Verdict::Error, message),
    }
}

#[derive(Serialize)]
struct Line<'a> {
    index: usize,
    name: &'a str,
    expect: &'a str,
    verdict: Verdict,
    reason: &'a str,
    exit_code: Option<i32>,
    /// None: the run gave no report.
    outcome: Option<&'a Outcome>,
}

/// A scenario's run, judged.
struct Finished {
    verdict: Verdict,
    why: String,
    exit_code: Option<i32>,
    outcome: Option<Outcome>,
    /// The run's time in the VMM, boot included (0 when it gave no report).
    seconds: f64,
}

/// Where the verdicts go: the terminal, the `--json` and `--tap` files (a
/// line as each scenario ends), the `--junit` file (written at the end, with
/// what finished), the tally.
struct Printer {
    /// What the standard output carries.
    format: ContractFormat,
    json: Option<(PathBuf, std::fs::File)>,
    tap: Option<(PathBuf, std::fs::File)>,
    /// TAP's test numbers: the scenarios written so far.
    tap_n: usize,
    /// Each scenario's name, verdict, reason and seconds, for JUnit.
    done: Vec<(String, Verdict, String, f64)>,
    counts: std::collections::BTreeMap<Verdict, usize>,
    worst: Verdict,
    error: Option<Error>,
}

/// One TAP line (TAP 13, as kvm-unit-tests' `run_tests.sh -t` writes): SKIP
/// is a passing test with a SKIP directive; every other verdict but SUCCESS
/// fails, the verdict and reason after `#`.
fn tap_line(n: usize, name: &str, v: Verdict, why: &str) -> String {
    let why = why.replace(['\n', '#'], " ");
    match v {
        Verdict::Success => format!("ok {n} - {name}"),
        Verdict::Skip => format!("ok {n} - {name} # SKIP {why}"),
        _ => format!("not ok {n} - {name} # {}: {why}", v.as_str()),
    }
}

/// Text for an XML attribute or element. Five characters to replace: no XML
/// crate is worth a dependency for that.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A JUnit XML report of the scenarios that ran, as CI systems display it:
/// FAILURE a `<failure>`, CRASH and ERROR an `<error>`, SKIP `<skipped>`.
fn junit(done: &[(String, Verdict, String, f64)]) -> String {
    let count = |v: &[Verdict]| done.iter().filter(|d| v.contains(&d.1)).count();
    let (failures, errors, skipped) =
        (count(&[Verdict::Failure]), count(&[Verdict::Crash, Verdict::Error]), count(&[Verdict::Skip]));
    let time: f64 = done.iter().map(|d| d.3).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x += &format!(
        "<testsuites tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">\n",
        done.len()
    );
    x += &format!(
        "  <testsuite name=\"vmm contract\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" \
         skipped=\"{skipped}\" time=\"{time:.3}\">\n",
        done.len()
    );
    for (name, v, why, secs) in done {
        x += &format!("    <testcase classname=\"vmm.contract\" name=\"{}\" time=\"{secs:.3}\"", xml(name));
        let (tag, ty) = match v {
            Verdict::Success => {
                x += "/>\n";
                continue;
            }
            Verdict::Skip => ("skipped", ""),
            Verdict::Failure => ("failure", "FAILURE"),
            Verdict::Crash => ("error", "CRASH"),
            Verdict::Error => ("error", "ERROR"),
        };
        let ty = if ty.is_empty() { String::new() } else { format!(" type=\"{ty}\"") };
        x += &format!(">\n      <{tag}{ty} message=\"{}\"/>\n    </testcase>\n", xml(why));
    }
    x += "  </testsuite>\n</testsuites>\n";
    x
}

impl Printer {
    fn emit(&mut self, (index, s): (usize, &ScenarioInfo), f: &Finished) {
        *self.counts.entry(f.verdict).or_insert(0) += 1;
        self.worst = self.worst.max(f.verdict);
        let reason = if f.why.is_empty() { String::new() } else { format!(" ({})", f.why) };
        self.done.push((s.name().to_owned(), f.verdict, f.why.clone(), f.seconds));
        self.tap_n += 1;
        let tap = tap_line(self.tap_n, s.name(), f.verdict, &f.why);
        let line = Line {
            index,
            name: s.name(),
            expect: s.expect(),
            verdict: f.verdict,
            reason: &f.why,
            exit_code: f.exit_code,
            outcome: f.outcome.as_ref(),
        };
        match self.format {
            ContractFormat::Text => println!("{:<28} {}{reason}", s.name(), f.verdict.as_str()),
            ContractFormat::Tap => println!("{tap}"),
            ContractFormat::Json => {
                let _ = write_json_line(&mut std::io::stdout(), &line);
            }
            ContractFormat::Junit => {}
        }
        if let Some((path, file)) = self.tap.as_mut() {
            if let Err(e) = writeln!(file, "{tap}") {
                self.error.get_or_insert(Error::Write(path.clone(), e));
                appliance::request_stop();
            }
        }
        let Some((path, file)) = self.json.as_mut() else { return };
        if let Err(e) = write_json_line(file, &line) {
            // Nowhere to keep results: stop the scenarios rather than go on.
            self.error.get_or_insert(Error::Write(path.clone(), e));
            appliance::request_stop();
        }
    }
}

pub fn contract_command(args: ContractArgs) -> Result<i32, Error> {
    let kernel = args.kernel.clone().unwrap_or_else(paths::default_guest);
    let all = scenarios(&kernel)?;
    let chosen: Vec<(usize, &ScenarioInfo)> =
        all.iter().enumerate().filter(|(_, s)| args.filter.as_deref().is_none_or(|f| s.name().contains(f))).collect();
    if args.list {
        for (i, s) in &chosen {
            let vm = if s.vm().is_empty() { String::new() } else { format!(" [{}]", s.vm()) };
            println!("{i:>3} {:<28} {:<24} {}{vm}", s.name(), s.expect(), s.summary());
        }
        return Ok(exit_code::SUCCESS);
    }
    if chosen.is_empty() {
        eprintln!("vmm: no contract scenario matches (vmm contract --list shows them)");
        return Ok(exit_code::USAGE);
    }
    let jobs: Vec<Vec<String>> = chosen
        .iter()
        .map(|(i, s)| {
            let mut a: Vec<String> = [
                "run",
                "--workload",
                "contract",
                "--scenario",
                &i.to_string(),
                "--timeout",
                &args.vm_timeout.to_string(),
            ]
            .map(String::from)
            .to_vec();
            a.extend(s.vm().split_whitespace().map(String::from));
            if let Some(k) = &args.kernel {
                a.extend(["--kernel".to_owned(), k.display().to_string()]);
            }
            if let Some(w) = &args.weaken {
                a.extend(["--host-weaken".to_owned(), w.clone()]);
            }
            // A scenario that names its own watch keeps it.
            if let Some(w) = args.host_write_watch.as_ref().filter(|_| !s.vm().contains("--host-write-watch")) {
                a.extend(["--host-write-watch".to_owned(), w.clone()]);
            }
            a
        })
        .collect();
    let opts = JobsOptions { host: args.host.clone(), timeout: args.timeout, retries: 2, verbose: args.verbose };
    // The JSON file opens before any VM runs. Each scenario's verdict is
    // printed and written as soon as it and every scenario before it in the
    // list have ended (a run again after the emulator's fault may end later):
    // the output keeps the list's order, and Ctrl-C keeps what finished.
    let json: Option<(PathBuf, std::fs::File)> = match &args.json {
        Some(p) => Some((p.clone(), std::fs::File::create(p).map_err(|e| Error::Write(p.clone(), e))?)),
        None => None,
    };
    let mut tap = match &args.tap {
        Some(p) => Some((p.clone(), std::fs::File::create(p).map_err(|e| Error::Write(p.clone(), e))?)),
        None => None,
    };
    if let Some((p, f)) = tap.as_mut() {
        writeln!(f, "TAP version 13\n1..{}", chosen.len()).map_err(|e| Error::Write(p.clone(), e))?;
    }
    if args.format == ContractFormat::Tap {
        println!("TAP version 13\n1..{}", chosen.len());
    }
    appliance::stop_on_ctrl_c("vmm: contract");
    let mut out = Printer {
        format: args.format,
        json,
        tap,
        tap_n: 0,
        done: vec![],
        counts: std::collections::BTreeMap::new(),
        worst: Verdict::Success,
        error: None,
    };
    let mut held: Vec<Option<Finished>> = (0..chosen.len()).map(|_| None).collect();
    let mut next = 0;
    let ran = run_jobs_with(&jobs, &opts, |ev| {
        let JobEvent::Finished { job, outcome: o } = ev else { return };
        if appliance::stop_requested() {
            return;
        }
        let (verdict, why) = verdict(chosen[job].1.expect(), o);
        let outcome = o.report.as_ref().map(|r| r.outcome.clone());
        let seconds = o.report.as_ref().map_or(0.0, |r| r.timing.to_end_ms) / 1000.0;
        held[job] = Some(Finished { verdict, why, exit_code: o.exit_code, outcome, seconds });
        while let Some(f) = held.get_mut(next).and_then(Option::take) {
            out.emit(chosen[next], &f);
            next += 1;
        }
    });
    // Stopped: what ended after a scenario still running is kept too.
    for (i, f) in held.iter().enumerate() {
        if let Some(f) = f {
            out.emit(chosen[i], f);
        }
    }
    // JUnit: what finished, interrupted or not.
    if let Some(p) = &args.junit {
        if let Err(e) = std::fs::write(p, junit(&out.done)) {
            out.error.get_or_insert(Error::Write(p.clone(), e));
        }
    }
    if args.format == ContractFormat::Junit {
        print!("{}", junit(&out.done));
    }
    // The summary: on the standard output in text, else beside it.
    let say = |line: String| {
        if args.format == ContractFormat::Text {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    let (counts, worst) = (out.counts, out.worst);
    if jobs_ended(ran, out.error)? {
        let done: usize = counts.values().sum();
        say(format!("contract: interrupted: {done} of {} scenarios ran", chosen.len()));
        return Ok(appliance::INTERRUPTED);
    }
    let summary: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {}", v.as_str())).collect();
    say(format!("contract: {} scenarios: {}", chosen.len(), summary.join(", ")));
    // xtf-runner's status: the worst verdict's (SUCCESS 0, SKIP 3, ERROR 4,
    // FAILURE 5, CRASH 6).
    Ok(worst.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunReport;

    fn outcome(report: RunReport, stdout: &[&str]) -> JobOutcome {
        JobOutcome {
            exit_code: Some(0),
            stdout: stdout.iter().map(|s| s.to_string()).collect(),
            report: Some(Box::new(report)),
            ..Default::default()
        }
    }

    #[test]
    fn verdicts_follow_xtf() {
        let report = RunReport::of_outcome;
        let shutdown = |code| report(Outcome::Shutdown { code });
        let violation = report(Outcome::Violation { vcpu: 0, rule: Rule::DirectWrite, detail: "x".into() });
        assert_eq!(verdict("pass", &outcome(shutdown(0), &[])).0, Verdict::Success);
        assert_eq!(verdict("pass", &outcome(shutdown(1), &["FAIL (cpu 0): pin"])).0, Verdict::Failure);
        assert_eq!(verdict("violation:direct write", &outcome(shutdown(0), &[])).0, Verdict::Failure);
        assert_eq!(verdict("violation:direct write", &outcome(violation.clone(), &[])).0, Verdict::Success);
        assert_eq!(verdict("violation:V1", &outcome(violation.clone(), &[])).0, Verdict::Failure);
        assert_eq!(verdict("pass", &outcome(violation.clone(), &[])).0, Verdict::Failure);
        let skipped = verdict("pass", &outcome(shutdown(77), &["SKIP: no RAM above 4 GiB"]));
        assert_eq!(skipped, (Verdict::Skip, "no RAM above 4 GiB".to_owned()));
        let fault = crate::report::FaultInfo { name: "page fault (#PF)".into(), ..Default::default() };
        let crash = verdict("pass", &outcome(report(Outcome::GuestFault(fault)), &[]));
        assert_eq!(
            crash,
            (
                Verdict::Crash,
                "guest_fault: page fault (#PF) on vCPU 0 at eip=0x00000000 cr2=0x00000000 error=0x0".to_owned()
            )
        );
        let err = report(Outcome::VmmError { message: "KVM".into() });
        assert_eq!(verdict("pass", &outcome(err, &[])), (Verdict::Error, "KVM".to_owned()));
        assert_eq!(verdict("pass", &JobOutcome::default()).0, Verdict::Error);
        // An expectation that names no rule decides nothing: ERROR, not a
        // SUCCESS by string luck. (A report that does not read never gets
        // here: the run has no report, and says why; run.rs's tests.)
        assert_eq!(verdict("violation:V9", &outcome(violation.clone(), &[])).0, Verdict::Error);
        assert_eq!(verdict("passes", &outcome(shutdown(0), &[])).0, Verdict::Error);
        let emulator = RunReport { emulator_fault: Some("the emulator's fault".into()), ..shutdown(0) };
        assert_eq!(verdict("pass", &outcome(emulator, &[])), (Verdict::Error, "the emulator's fault".to_owned()));
        assert_eq!(Expect::parse("violation:CR3"), Some(Expect::Violation(Rule::Cr3)));
    }

    #[test]
    fn the_worst_verdict_gives_xtf_runners_exit_status() {
        use Verdict::*;
        let worst = |v: &[Verdict]| v.iter().copied().fold(Success, Verdict::max).exit_code();
        assert_eq!(worst(&[Success, Success]), 0);
        assert_eq!(worst(&[Success, Skip]), 3, "a SKIP shows");
        assert_eq!(worst(&[Skip, Error]), 4);
        assert_eq!(worst(&[Error, Failure, Skip]), 5);
        assert_eq!(worst(&[Failure, Crash, Success]), 6);
    }

    #[test]
    fn tap_and_junit_say_each_verdict_as_ci_systems_read_it() {
        use Verdict::*;
        assert_eq!(tap_line(1, "a", Success, ""), "ok 1 - a");
        assert_eq!(tap_line(2, "b", Skip, "no RAM"), "ok 2 - b # SKIP no RAM");
        assert_eq!(tap_line(3, "c", Failure, "FAIL #1\nx"), "not ok 3 - c # FAILURE: FAIL  1 x");
        assert_eq!(tap_line(4, "d", Crash, "timeout"), "not ok 4 - d # CRASH: timeout");
        let done = vec![
            ("a".to_owned(), Success, String::new(), 1.0),
            ("b".to_owned(), Skip, "no RAM".to_owned(), 0.5),
            ("c".to_owned(), Failure, "got <1> & \"2\"".to_owned(), 2.0),
            ("d".to_owned(), Crash, "timeout".to_owned(), 60.0),
            ("e".to_owned(), Error, "no report".to_owned(), 0.0),
        ];
        let x = junit(&done);
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"5\" failures=\"1\" errors=\"2\" skipped=\"1\" time=\"63.500\">"), "{x}");
        assert!(x.contains("<testcase classname=\"vmm.contract\" name=\"a\" time=\"1.000\"/>"), "{x}");
        assert!(x.contains("<skipped message=\"no RAM\"/>"), "{x}");
        assert!(x.contains("<failure type=\"FAILURE\" message=\"got &lt;1&gt; &amp; &quot;2&quot;\"/>"), "{x}");
        assert!(
            x.contains("<error type=\"CRASH\" message=\"timeout\"/>") && x.contains("<error type=\"ERROR\""),
            "{x}"
        );
        assert!(x.trim_end().ends_with("</testsuites>"));
    }
}
