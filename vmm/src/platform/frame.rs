//! The framing between the appliance's init (the inner `vmm`) and the outer
//! `vmm` that started QEMU: one line on the appliance's console per message,
//! `@@vmm:` and then the message. Both sides speak it through [`Frame`], so a
//! message is a type until it is a line, and a line that is not a frame is
//! console noise (the kernel's, or a job's output split by the serial line).

/// The prefix of a framed line.
pub const PREFIX: &str = "@@vmm:";

/// One message from the appliance's init.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// The appliance booted and has `/dev/kvm`; its uptime then.
    Ready { uptime_ms: f64 },
    /// The appliance cannot run jobs, and why.
    Fatal(String),
    /// Every job ran; the appliance powers off.
    Done,
    /// What job `job` (its index in the jobs file) said or did.
    Job { job: usize, what: JobFrame },
}

/// What a job said or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobFrame {
    /// A line of its standard output.
    Out(String),
    /// A line of its standard error.
    Err(String),
    /// Its `--json` report, on one line.
    Json(String),
    /// It ended with this status (-1: it could not start or was killed;
    /// None: the status did not read, a garbled line).
    Exit(Option<i32>),
}

impl Frame {
    /// The console line (without its newline). Text is kept as it is, but a
    /// newline in it would end the frame early: those become spaces.
    pub fn render(&self) -> String {
        let one = |s: &str| s.replace('\n', " ");
        match self {
            Frame::Ready { uptime_ms } => format!("{PREFIX}ready {uptime_ms:.0}"),
            Frame::Fatal(why) => format!("{PREFIX}fatal {}", one(why)),
            Frame::Done => format!("{PREFIX}done"),
            Frame::Job { job, what } => match what {
                JobFrame::Out(l) => format!("{PREFIX}{job} out {}", one(l)),
                JobFrame::Err(l) => format!("{PREFIX}{job} err {}", one(l)),
                JobFrame::Json(j) => format!("{PREFIX}{job} json {}", one(j)),
                JobFrame::Exit(Some(code)) => format!("{PREFIX}{job} exit {code}"),
                JobFrame::Exit(None) => format!("{PREFIX}{job} exit ?"),
            },
        }
    }

    /// The frame in a console line, wherever it starts in it (the kernel may
    /// have written on the same line first); None for any other line.
    pub fn parse(line: &str) -> Option<Frame> {
        let frame = &line[line.find(PREFIX)? + PREFIX.len()..];
        let (head, rest) = frame.split_once(' ').unwrap_or((frame, ""));
        Some(match head {
            "ready" => Frame::Ready { uptime_ms: rest.trim().parse().ok()? },
            "fatal" => Frame::Fatal(rest.to_owned()),
            "done" => Frame::Done,
            idx => {
                let job = idx.parse::<usize>().ok()?;
                let (kind, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let what = match kind {
                    "out" => JobFrame::Out(text.to_owned()),
                    "err" => JobFrame::Err(text.to_owned()),
                    "json" => JobFrame::Json(text.to_owned()),
                    "exit" => JobFrame::Exit(text.trim().parse().ok()),
                    _ => return None,
                };
                Frame::Job { job, what }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_reads_back_as_itself_and_other_lines_are_not_frames() {
        let frames = [
            Frame::Ready { uptime_ms: 1234.0 },
            Frame::Fatal("no /dev/kvm in the appliance (kvm_amd did not load)".into()),
            Frame::Done,
            Frame::Job { job: 0, what: JobFrame::Out("workload boot: all checks passed".into()) },
            Frame::Job { job: 7, what: JobFrame::Err("vmm: error: x y  z".into()) },
            Frame::Job { job: 12, what: JobFrame::Json("{\"outcome\": {\"kind\": \"shutdown\"}}".into()) },
            Frame::Job { job: 3, what: JobFrame::Exit(Some(-1)) },
            Frame::Job { job: 4, what: JobFrame::Exit(None) },
            Frame::Job { job: 3, what: JobFrame::Out(String::new()) },
        ];
        for f in frames {
            assert_eq!(Frame::parse(&f.render()), Some(f.clone()), "{}", f.render());
            // The kernel wrote first on the same console line.
            assert_eq!(Frame::parse(&format!("[    1.23] random: {}", f.render())), Some(f));
        }
        // A newline inside a job's line cannot end the frame early.
        let f = Frame::Job { job: 1, what: JobFrame::Out("a\nb".into()) };
        assert_eq!(Frame::parse(&f.render()), Some(Frame::Job { job: 1, what: JobFrame::Out("a b".into()) }));
        for line in ["", "plain console", "@@vmm:", "@@vmm:x out y", "@@vmm:2 talk y", "@@vmm:ready soon"] {
            assert_eq!(Frame::parse(line), None, "{line}");
        }
    }
}
