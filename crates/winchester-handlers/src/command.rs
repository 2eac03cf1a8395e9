//! `command`: runs a program for each stream, so handlers can be written in any
//! language.
//!
//! - `handle_events`: the program gets the stream on standard input, as the
//!   JSON document the `webhook` handler posts plus `"idempotency_key"`. Its
//!   standard output, when not blank, is the JSON list of events to pass on
//!   (each an object as in `winchester ingest`); blank output passes the events
//!   on unchanged. Exit status 0 is success; anything else is a failure whose
//!   reason is the program's last lines of standard error.
//! - `commit` / `rollback`: the same program, with `commit_arg` (default
//!   `--commit`) or `rollback_arg` (default `--rollback`) appended to its
//!   arguments and the same document on standard input; its output is ignored.
//!   `rollback` runs only when `handle_events` was started for the stream.
//!
//! Every invocation runs in a process group of its own. When the engine gives
//! up on a call (`handler_timeout`, or the stream's lease is lost), the whole
//! group is killed. The environment is the worker's plus `env` and
//! `WINCHESTER_STREAM_ID`, `WINCHESTER_STREAM_NAME`, `WINCHESTER_ACTION`,
//! `WINCHESTER_IDEMPOTENCY_KEY`; the working directory is `cwd` (default: the
//! worker's).

use async_trait::async_trait;
use serde::Deserialize;
use serde_yaml::Mapping;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use winchester::pipeline::params::{self, Checked, Raw, Scalar};
use winchester::pipeline::{Env, Handler, HandlerConfigError, HandlerError};
use winchester_core::Event;

/// How many of the last lines of standard error a failure reports.
pub const STDERR_TAIL_LINES: usize = 10;
/// Longest piece of standard error a failure reports, in characters.
pub const STDERR_TAIL_CHARS: usize = 2000;

/// The validated params of a `command` handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// The program (a path, or a name looked up on `PATH`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory (default: the worker's).
    pub cwd: Option<PathBuf>,
    /// Argument appended for `commit`.
    pub commit_arg: String,
    /// Argument appended for `rollback`.
    pub rollback_arg: String,
}

/// The params of a `command` handler as written (see [`params::read`]).
#[derive(Deserialize)]
struct CommandParams {
    command: Option<Raw<Argv>>,
    env: Option<Raw<Mapping>>,
    cwd: Option<Raw<String>>,
    commit_arg: Option<Raw<String>>,
    rollback_arg: Option<Raw<String>>,
}

/// `command` as written: a program, or a list of the program and its arguments.
#[derive(Deserialize)]
#[serde(untagged)]
enum Argv {
    Program(String),
    List(Vec<Raw<Scalar>>),
}

impl CommandConfig {
    /// Validates `params`; an `Err` names the param at fault.
    pub fn from_params(params: &Mapping) -> Result<CommandConfig, HandlerConfigError> {
        let p: CommandParams = params::read(params)?;
        let argv = params::require("command", p.command, "must be a program or a list [program, args...]", |_| true)?;
        let mut c = Checked::default();
        let argv: Vec<String> = match argv {
            Argv::Program(program) => vec![program],
            Argv::List(items) => (items.into_iter().enumerate())
                .filter_map(|(i, a)| c.get(&format!("command[{i}]"), Some(a), "must be a string", |_| true))
                .map(|a| a.text())
                .collect(),
        };
        let (program, args) = match argv.split_first() {
            Some((program, args)) if !program.trim().is_empty() => (program.clone(), args.to_vec()),
            _ => {
                c.push("command", "must name a program");
                Default::default()
            }
        };
        let env = c.get("env", p.env, "must be a map of variable to value", |_| true);
        let env = env.map(|m| variables(&mut c, &m)).unwrap_or_default();
        let cwd = c.get("cwd", p.cwd, "must be a directory", |d| std::path::Path::new(d).is_dir()).map(PathBuf::from);
        let arg = "must be a non-empty string";
        let commit_arg = c.get("commit_arg", p.commit_arg, arg, |a| !a.is_empty());
        let rollback_arg = c.get("rollback_arg", p.rollback_arg, arg, |a| !a.is_empty());
        params::finish(c)?;
        Ok(CommandConfig {
            program,
            args,
            env,
            cwd,
            commit_arg: commit_arg.unwrap_or_else(|| "--commit".into()),
            rollback_arg: rollback_arg.unwrap_or_else(|| "--rollback".into()),
        })
    }
}

/// The `env` map: variable names to values (scalars), each bad entry an error under `env`.
fn variables(c: &mut Checked, m: &Mapping) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in m {
        let value = serde_yaml::from_value::<Scalar>(v.clone()).ok();
        match (k.as_str(), value) {
            (Some(k), Some(v)) if !k.is_empty() && !k.contains('=') && !k.contains('\0') => {
                out.push((k.to_string(), v.text()))
            }
            _ => c.push(
                "env",
                format!("must map variable names to strings, found {}: {}", params::show(k), params::show(v)),
            ),
        }
    }
    out
}

/// Why a program run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The program could not be started.
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading its output failed.
    #[error("{program:?}: {source}")]
    Io {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited with a failure status (or was killed by a signal).
    #[error("{program:?} {step} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// `handle_events`, `commit` or `rollback`.
        step: &'static str,
        /// The exit status.
        status: std::process::ExitStatus,
        /// The last lines of its standard error.
        stderr: String,
    },
    /// Its standard output is not a JSON list of events.
    #[error("{program:?} printed something that is not a JSON list of events: {reason}")]
    BadOutput {
        /// The program.
        program: String,
        /// What is wrong.
        reason: String,
    },
}

/// Kills a process group when dropped (the call was abandoned).
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The last [`STDERR_TAIL_LINES`] non-blank lines of `stderr`, at most
/// [`STDERR_TAIL_CHARS`] characters.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
    let n = tail.chars().count();
    if n == 0 {
        "(nothing on standard error)".into()
    } else if n > STDERR_TAIL_CHARS {
        format!("...{}", tail.chars().skip(n - STDERR_TAIL_CHARS).collect::<String>())
    } else {
        tail
    }
}

/// The `command` handler.
#[derive(Debug)]
pub struct CommandHandler {
    config: Arc<CommandConfig>,
    /// The document sent to `handle_events`, kept for `commit` / `rollback`.
    document: Option<Vec<u8>>,
}

impl CommandHandler {
    /// Builds a handler from its YAML params.
    pub fn from_params(params: &Mapping) -> Result<CommandHandler, HandlerConfigError> {
        Ok(CommandHandler::new(Arc::new(CommandConfig::from_params(params)?)))
    }

    /// Builds a handler from an already validated configuration.
    pub fn new(config: Arc<CommandConfig>) -> CommandHandler {
        CommandHandler { config, document: None }
    }

    /// Runs the program with `extra` appended to its arguments and `input` on
    /// standard input; returns its standard output.
    async fn invoke(
        &self,
        env: &Env,
        step: &'static str,
        extra: Option<&str>,
        input: &[u8],
    ) -> Result<Vec<u8>, CommandError> {
        let cfg = &*self.config;
        let mut cmd = tokio::process::Command::new(&cfg.program);
        cmd.args(&cfg.args)
            .args(extra)
            .envs(cfg.env.iter().map(|(k, v)| (k, v)))
            .env("WINCHESTER_STREAM_ID", env.stream_id.to_string())
            .env("WINCHESTER_STREAM_NAME", &env.stream_name)
            .env("WINCHESTER_ACTION", env.action.as_str())
            .env("WINCHESTER_IDEMPOTENCY_KEY", &env.idempotency_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &cfg.cwd {
            cmd.current_dir(dir);
        }
        let program = cfg.program.clone();
        let mut child = cmd.spawn().map_err(|source| CommandError::Spawn { program: program.clone(), source })?;
        // The child leads its own group: its id is the group's.
        let guard = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
        let mut stdin = child.stdin.take();
        let write = async {
            if let Some(w) = stdin.as_mut() {
                // A program that does not read its input may exit first: not an error.
                match w.write_all(input).await {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                    _ => {}
                }
            }
            drop(stdin);
            Ok(())
        };
        let (written, output) = tokio::join!(write, child.wait_with_output());
        let output = output.map_err(|source| CommandError::Io { program: program.clone(), source })?;
        // The leader is reaped; whatever it left running in its group goes too.
        drop(guard);
        written.map_err(|source| CommandError::Io { program: program.clone(), source })?;
        if !output.status.success() {
            return Err(CommandError::Failed {
                program,
                step,
                status: output.status,
                stderr: stderr_tail(&output.stderr),
            });
        }
        if !output.stderr.is_empty() {
            tracing::debug!(stream_id = env.stream_id, program, step, stderr = %stderr_tail(&output.stderr), "command stderr");
        }
        Ok(output.stdout)
    }

    fn parse_events(&self, stdout: &[u8]) -> Result<Option<Vec<Event>>, CommandError> {
        let bad = |reason: String| CommandError::BadOutput { program: self.config.program.clone(), reason };
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let doc: serde_json::Value = serde_json::from_slice(stdout).map_err(|e| bad(e.to_string()))?;
        let items = doc.as_array().ok_or_else(|| bad("expected a JSON list".into()))?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| Event::from_json(v).map_err(|e| bad(format!("event #{}: {e}", i + 1))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The document a `command` program reads: the webhook's document plus the
/// idempotency key.
pub fn command_document(env: &Env, events: &[Event]) -> serde_json::Value {
    let mut doc = crate::webhook::stream_document(env, events);
    if let Some(map) = doc.as_object_mut() {
        map.insert("idempotency_key".into(), env.idempotency_key.clone().into());
    }
    doc
}

#[async_trait]
impl Handler for CommandHandler {
    async fn handle_events(&mut self, events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        let input = serde_json::to_vec(&command_document(env, &events))?;
        self.document = Some(input);
        let input = self.document.as_deref().unwrap_or_default();
        let stdout = self.invoke(env, "handle_events", None, input).await?;
        Ok(self.parse_events(&stdout)?.unwrap_or(events))
    }

    async fn commit(&mut self, env: &Env) -> Result<(), HandlerError> {
        let input = self.document.as_deref().unwrap_or_default();
        self.invoke(env, "commit", Some(&self.config.commit_arg), input).await?;
        Ok(())
    }

    async fn rollback(&mut self, env: &Env) -> Result<(), HandlerError> {
        let Some(input) = self.document.as_deref() else { return Ok(()) };
        self.invoke(env, "rollback", Some(&self.config.rollback_arg), input).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn params_parse() {
        let c = CommandConfig::from_params(&params("command: [python3, h.py, -v]\nenv: {A: 1}\n")).unwrap();
        assert_eq!((c.program.as_str(), c.args.clone()), ("python3", vec!["h.py".to_string(), "-v".into()]));
        assert_eq!(c.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!((c.commit_arg.as_str(), c.rollback_arg.as_str()), ("--commit", "--rollback"));
        let err = |y: &str| CommandConfig::from_params(&params(y)).unwrap_err().to_string();
        assert!(err("env: {}").contains("missing required param \"command\""));
        assert!(err("command: ''").contains("must name a program"));
        assert!(err("command: x\nenv: [a]").contains("\"env\""));
        assert!(err("command: x\ncommit_arg: ''").contains("\"commit_arg\""));
        assert!(err("command: x\ntimeout: 3").contains("unknown param \"timeout\""));
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let text: String = (1..=30).map(|i| format!("line {i}\n\n")).collect();
        let tail = stderr_tail(text.as_bytes());
        assert_eq!(tail.lines().count(), STDERR_TAIL_LINES);
        assert!(tail.starts_with("line 21\n") && tail.ends_with("line 30"), "{tail}");
        assert_eq!(stderr_tail(b""), "(nothing on standard error)");
        assert_eq!(stderr_tail("x".repeat(5000).as_bytes()).chars().count(), STDERR_TAIL_CHARS + 3);
    }
}
