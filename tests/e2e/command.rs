//! Runs child processes and turns failures into messages that show the command, its status and its output.

use std::fmt::Write as _;
use std::process::{Command, Output};

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to completion; panics with the command line, exit status and output unless it succeeded.
pub fn run_ok(command: &mut Command) -> Finished {
    let output = spawn(command);
    let finished = Finished::from(&output);
    assert!(
        output.status.success(),
        "{}",
        describe_failure(command, &output)
    );
    finished
}

/// Runs `command` to completion and returns its output whatever the exit status.
pub fn run(command: &mut Command) -> Output {
    spawn(command)
}

fn spawn(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", command_line(command)))
}

/// A readable report of a failed command, for assertion messages.
pub fn describe_failure(command: &Command, output: &Output) -> String {
    let mut report = format!("`{}` exited with {}", command_line(command), output.status);
    for (name, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        if !text.trim().is_empty() {
            let _ = write!(report, "\n--- {name} ---\n{}", text.trim_end());
        }
    }
    report
}

/// The program and its arguments as one line (environment variables are not shown).
pub fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl From<&Output> for Finished {
    fn from(output: &Output) -> Self {
        Finished {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
