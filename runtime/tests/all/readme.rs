//! Every `logbook` command the README shows, run as shown against the real
//! binary, in the order the README tells them, in a temporary directory
//! (`.logbook` and `elsewhere` are data directories the commands create there).
//!
//! The README's ```sh blocks are parsed: each line that starts with `logbook`
//! (or `$ logbook`) must be one of [`steps`]' README lines, run or skipped
//! with a reason, and each of those must still be in the README. A command
//! added to the README without a step here fails this test.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::fixtures::*;

/// The README, as the repository has it.
const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));

/// One step of the walk through the README.
enum Step {
    /// A README line, run as written in `dir` (relative to the root); it
    /// must exit with `code` and print each of `shows` (stdout or stderr).
    Readme {
        line: &'static str,
        dir: &'static str,
        code: i32,
        shows: &'static [&'static str],
    },
    /// A README line not run here, and why.
    Skip {
        line: &'static str,
        why: &'static str,
    },
    /// A command that sets up or checks what the README's next command needs
    /// (not in the README), run as written in `dir`; it must exit 0 and
    /// print each of `shows`.
    Setup {
        line: &'static str,
        dir: &'static str,
        shows: &'static [&'static str],
    },
}

use Step::{Readme, Setup, Skip};

const SERVER: &str = "needs a running `logbook serve`: tests/all/server.rs and cli.rs drive it";
const POSTGRES: &str = "needs a PostgreSQL database named in the line: tests/all/postgres.rs";
const TYPESCRIPT: &str =
    "needs the TypeScript build (node, npm): tests/all/typescript.rs runs these lines";

/// The configuration the README's commands assume: the `claude` alias the
/// fork names (EchoModel here: no network in tests).
const CONFIG: &str = "[models.claude]\nprovider = \"echo\"\n";

/// A configuration under which the counter fails on a long input (no fuel
/// per byte, little fuel per event), so that `unpark` has a parked session.
const STINGY: &str =
    "[limits]\nfuel_per_byte = 0\nfuel_per_event = 2000000\nfuel_per_call = 2000000\n";

fn steps() -> Vec<Step> {
    vec![
        // "Run it, read its log"
        Readme {
            line: r#"logbook run counter --session c -i inc -i inc -i "remind 500""#,
            dir: ".",
            code: 0,
            shows: &["count = 1\ncount = 2\nreminder: count = 2\n"],
        },
        Readme {
            line: "logbook log c",
            dir: ".",
            code: 0,
            shows: &["created", "reminder: count = 2"],
        },
        Readme {
            line: "logbook log c --json",
            dir: ".",
            code: 0,
            shows: &[r#""kind":"created""#],
        },
        Readme {
            line: "logbook sessions",
            dir: ".",
            code: 0,
            shows: &["NAME", "c "],
        },
        // "Approve a tool"
        Readme {
            line: r#"logbook run assistant --session a -i '/tool fs.write {"path":"notes.txt","content":"hi"}'"#,
            dir: ".",
            code: 0,
            shows: &[
                "waiting for approval: tool fs.write",
                "logbook approve a call-1",
            ],
        },
        Readme {
            line: "logbook approve a call-1",
            dir: ".",
            code: 0,
            shows: &["tool fs.write returned: wrote 2 bytes to notes.txt"],
        },
        // "Agents that talk to agents"
        Readme {
            line: "logbook run assistant --session expert",
            dir: ".",
            code: 0,
            shows: &[],
        },
        Readme {
            line: r#"logbook run delegate --session boss -i "ask expert what is a log?" -i "ask nobody hi""#,
            dir: ".",
            code: 0,
            shows: &[
                "expert: echo: what is a log?\ncannot ask nobody: send refused: no session \"nobody\"\n",
            ],
        },
        Readme {
            line: "logbook log expert",
            dir: ".",
            code: 0,
            shows: &["send-1", "sent"],
        },
        // "When a guest misbehaves": a counter parked on its input at seq 7.
        Setup {
            line: "logbook run counter --session c -i inc -i inc -i inc",
            dir: "parked",
            shows: &["count = 3"],
        },
        Setup {
            line: "logbook send c LONG",
            dir: "parked",
            shows: &[],
        },
        Setup {
            line: "logbook sessions",
            dir: "parked",
            shows: &["failed"],
        },
        Readme {
            line: r#"logbook unpark c --skip 7 --reason "a 6 MiB paste""#,
            dir: "parked",
            code: 0,
            shows: &[],
        },
        Setup {
            line: "logbook send c LONG",
            dir: "parked",
            shows: &[],
        },
        Readme {
            line: r#"logbook unpark c --reason "fuel_per_byte raised""#,
            dir: "parked",
            code: 0,
            shows: &[],
        },
        Readme {
            line: r#"logbook stop c --reason "looks like a loop""#,
            dir: ".",
            code: 0,
            shows: &[],
        },
        Setup {
            line: "logbook sessions",
            dir: ".",
            shows: &["stopped"],
        },
        Readme {
            line: "logbook resume c",
            dir: ".",
            code: 0,
            shows: &[],
        },
        // "Agents in TypeScript": typescript.rs runs the same on the real
        // component (inc, inc, get; upgrade from counter), when it is built.
        Skip {
            line: "logbook run counter-ts --session t -i inc -i inc -i get",
            why: TYPESCRIPT,
        },
        Skip {
            line: "logbook run counter --session r -i inc -i inc",
            why: TYPESCRIPT,
        },
        Skip {
            line: "logbook upgrade r --guest counter-ts",
            why: TYPESCRIPT,
        },
        Skip {
            line: "logbook send r get --wait",
            why: TYPESCRIPT,
        },
        // "Work with the log": `helper` is an assistant session of 5 events.
        Setup {
            line: "logbook run assistant --session helper -i hello",
            dir: ".",
            shows: &["echo: hello"],
        },
        Readme {
            line: r#"logbook fork helper --at 4 --as helper-claude --session-config '{"model": "claude"}'"#,
            dir: ".",
            code: 0,
            shows: &["helper-claude "],
        },
        Readme {
            line: r#"logbook run --session helper-claude -i "and now?""#,
            dir: ".",
            code: 0,
            shows: &["echo: and now?"],
        },
        Setup {
            line: "logbook log helper-claude",
            dir: ".",
            shows: &["model claude"],
        },
        Readme {
            line: "logbook export c > c.jsonl",
            dir: ".",
            code: 0,
            shows: &[],
        },
        Readme {
            line: "logbook --data elsewhere import c.jsonl --as c",
            dir: ".",
            code: 0,
            shows: &["c "],
        },
        Setup {
            line: "logbook --data elsewhere run --session c -i get",
            dir: ".",
            shows: &["count = 2"],
        },
        Readme {
            line: "logbook verify c",
            dir: ".",
            code: 0,
            shows: &["ok"],
        },
        Readme {
            line: "logbook replay c --guest counter-v2",
            dir: ".",
            code: 0,
            shows: &["agrees with the log of c"],
        },
        Readme {
            line: "logbook upgrade c --guest counter-v2",
            dir: ".",
            code: 0,
            shows: &["guest-changed at seq"],
        },
        Readme {
            line: "logbook log c --all",
            dir: ".",
            code: 0,
            shows: &["guest-changed"],
        },
        // "Bringing a Claude Code session in": session.jsonl is the test fixture.
        Readme {
            line: "logbook import --from claude-code session.jsonl --as cc",
            dir: ".",
            code: 0,
            shows: &["cc ", "kept verbatim", "torn last line"],
        },
        Readme {
            line: "logbook replay cc --guest assistant",
            dir: ".",
            code: 0,
            shows: &["assistant agrees with the log of cc"],
        },
        Readme {
            line: "logbook run --session cc -i \"and the third file?\"",
            dir: ".",
            code: 0,
            shows: &["echo: and the third file?"],
        },
        // "Taking a session out as OpenTelemetry traces": `a` is the tour's assistant.
        Readme {
            line: "logbook export a --format otel > a.otlp.json",
            dir: ".",
            code: 0,
            shows: &[],
        },
        Skip {
            line: "logbook export a --format otel --otlp-endpoint http://127.0.0.1:4318",
            why: "needs a collector on port 4318; tests/all/otel_export.rs sends to a real OTLP/HTTP receiver",
        },
        Skip {
            line: "logbook migrate --from .logbook --to postgres://logbook:logbook@127.0.0.1:5432/logbook",
            why: POSTGRES,
        },
        Skip {
            line: "logbook verify --all --journal postgres://logbook:logbook@127.0.0.1:5432/logbook",
            why: POSTGRES,
        },
        // "Serve it over HTTP"
        Skip {
            line: "logbook serve --data .logbook",
            why: SERVER,
        },
        Skip {
            line: "logbook --url http://127.0.0.1:7878 log tally --follow",
            why: SERVER,
        },
        Skip {
            line: "logbook --url http://127.0.0.1:7878 approve helper call-1",
            why: SERVER,
        },
        // "Many workers, one PostgreSQL"
        Skip {
            line: "logbook serve --data /var/lib/logbook-a --listen 0.0.0.0:7878",
            why: SERVER,
        },
        Skip {
            line: "logbook serve --data /var/lib/logbook-b --listen 0.0.0.0:7879",
            why: SERVER,
        },
        Readme {
            line: "logbook verify --all",
            dir: ".",
            code: 0,
            shows: &["c ", "helper-claude "],
        },
    ]
}

/// The `logbook` lines of the README's ```sh blocks, without their
/// comments, `$ ` prompts and trailing `&`.
fn readme_commands() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_sh = false;
    for line in README.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let command = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        if !command.starts_with("logbook ") {
            continue;
        }
        let command = without_comment(command);
        let command = command.strip_suffix('&').unwrap_or(command).trim_end();
        out.insert(command.to_string());
    }
    out
}

/// `line` up to a `#` that starts a shell comment (outside quotes).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return line[..i].trim_end(),
            None => {}
        }
        previous = c;
    }
    line.trim_end()
}

/// Split a command line as a POSIX shell would for these lines: words,
/// single and double quotes (no escapes inside them), and `>` redirections.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let word = word.get_or_insert_with(String::new);
                for inner in chars.by_ref() {
                    if inner == c {
                        break;
                    }
                    word.push(inner);
                }
            }
            c if c.is_whitespace() => out.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

/// Run one line in `dir` as a shell would (the binary under test for
/// `logbook`, a `> FILE` redirection honoured); `LONG` stands for an input
/// too long for the stingy counter.
fn run_line(root: &Path, dir: &str, line: &str) -> Ran {
    let mut args = words(line);
    assert_eq!(args.remove(0), "logbook", "{line}");
    let mut redirect = None;
    if let Some(at) = args.iter().position(|a| a == ">") {
        redirect = Some(root.join(dir).join(&args[at + 1]));
        args.truncate(at);
    }
    for arg in &mut args {
        if arg == "LONG" {
            *arg = "x".repeat(100_000);
        }
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logbook"));
    cmd.current_dir(root.join(dir))
        .args(&args)
        .stdin(Stdio::null());
    for var in [
        "LOGBOOK_DATA",
        "LOGBOOK_CONFIG",
        "LOGBOOK_URL",
        "LOGBOOK_JOURNAL",
        "LOGBOOK_ECHO_DELAY_MS",
        "LOGBOOK_LOG",
    ] {
        cmd.env_remove(var);
    }
    let ran = run(&mut cmd);
    if let Some(path) = redirect {
        std::fs::write(&path, &ran.stdout).expect("write the redirected output");
    }
    ran
}

#[test]
fn every_command_the_readme_shows_runs_as_shown() {
    let steps = steps();
    let listed: BTreeSet<String> = steps
        .iter()
        .filter_map(|s| match s {
            Readme { line, .. } | Skip { line, .. } => Some(line.to_string()),
            Setup { .. } => None,
        })
        .collect();
    let shown = readme_commands();
    let untested: Vec<_> = shown.difference(&listed).collect();
    assert!(
        untested.is_empty(),
        "README commands with no step in tests/all/readme.rs: {untested:#?}"
    );
    let gone: Vec<_> = listed.difference(&shown).collect();
    assert!(
        gone.is_empty(),
        "steps in tests/all/readme.rs for commands no longer in the README: {gone:#?}"
    );

    let root = bare_data_dir();
    for data in [".logbook", "elsewhere", "parked/.logbook"] {
        warm_data_dir(&root.path().join(data));
    }
    std::fs::write(root.path().join(".logbook/logbook.toml"), CONFIG).expect("config");
    std::fs::write(root.path().join("parked/.logbook/logbook.toml"), STINGY).expect("config");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/claude-code/session.jsonl"
        ),
        root.path().join("session.jsonl"),
    )
    .expect("the Claude Code fixture");

    for step in &steps {
        let (line, dir, code, shows) = match step {
            Readme {
                line,
                dir,
                code,
                shows,
            } => (*line, *dir, *code, *shows),
            Setup { line, dir, shows } => (*line, *dir, 0, *shows),
            Skip { line, why } => {
                eprintln!("skipped: {line}: {why}");
                continue;
            }
        };
        let ran = run_line(root.path(), dir, line);
        assert_eq!(ran.status.code(), Some(code), "{line}: {ran:?}");
        let printed = format!("{}{}", ran.stdout, ran.stderr);
        for text in shows {
            assert!(printed.contains(text), "{line}: no {text:?} in {ran:?}");
        }
    }
}

#[test]
fn the_readme_parser_reads_prompts_comments_quotes_and_redirections() {
    assert_eq!(
        without_comment(r##"logbook deny a call-1 --reason "# not now"   # or: this"##),
        r##"logbook deny a call-1 --reason "# not now""##
    );
    assert_eq!(
        words(r#"logbook fork h --session-config '{"model": "x"}' > out.txt"#),
        [
            "logbook",
            "fork",
            "h",
            "--session-config",
            r#"{"model": "x"}"#,
            ">",
            "out.txt"
        ]
    );
    let commands = readme_commands();
    assert!(commands.contains("logbook sessions"), "{commands:#?}");
    assert!(
        commands.contains("logbook serve --data /var/lib/logbook-a --listen 0.0.0.0:7878"),
        "{commands:#?}"
    );
}
