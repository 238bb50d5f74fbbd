//! `record`'s settings from four layers: command-line flags, then
//! `NWTRACE_*` environment variables, then the config files, then the
//! defaults. The first layer that sets a key wins, for the whole key
//! (a list such as `pid` is replaced, never merged).
//!
//! Files: `/etc/nwtrace/nwtrace.toml`, then `/etc/nwtrace/conf.d/*.toml`
//! in lexical order, a later file overriding an earlier one. `--config
//! PATH` (or `NWTRACE_CONFIG`) names another folder laid out the same way,
//! or one file. Keys are record's long option names (`rotate-size =
//! "100M"`, `pid = [1, 2]`); environment variables are `NWTRACE_` and the
//! key in upper case with `_` for `-` (`NWTRACE_ROTATE_SIZE=100M`), lists
//! comma-separated.
//!
//! Every value goes through the very parser its flag uses, so a file
//! accepts exactly what the command line does; a mistake is one line that
//! names the file and line (or the variable), exit 2.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, Parser};
use serde::Serialize;

use crate::UsageError;
use crate::cli::{Cli, Command, ConfigArgs, RecordArgs};

/// Where the config lives unless --config or NWTRACE_CONFIG says.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/nwtrace";
pub const MAIN_FILE: &str = "nwtrace.toml";
pub const DROP_IN_DIR: &str = "conf.d";
pub const CONFIG_ENV: &str = "NWTRACE_CONFIG";

/// Options that are not settings: how nwtrace is asked, not what it does.
const NOT_SETTINGS: [&str; 4] = ["help", "version", "verbose", "config"];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    CommandLine,
    Environment {
        variable: String,
    },
    File {
        file: PathBuf,
        line: usize,
    },
    Default,
    /// Not set anywhere, and no default.
    Unset,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::CommandLine => write!(f, "command line"),
            Source::Environment { variable } => write!(f, "environment {variable}"),
            Source::File { file, line } => write!(f, "{}:{line}", file.display()),
            Source::Default => write!(f, "default"),
            Source::Unset => write!(f, "not set"),
        }
    }
}

/// One key's effective value and its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub key: String,
    pub values: Vec<String>,
    #[serde(flatten)]
    pub source: Source,
}

/// The effective record options, and how each came to be.
#[derive(Debug)]
pub struct Resolved {
    pub args: RecordArgs,
    pub files: Vec<PathBuf>,
    pub settings: Vec<Setting>,
}

/// One key as a config file sets it.
#[derive(Debug, Clone)]
struct FileValue {
    values: Vec<String>,
    file: PathBuf,
    line: usize,
}

fn usage(msg: String) -> UsageError {
    UsageError::Message(msg)
}

/// A settable key: record's option, by its long name.
struct Key {
    id: String,
    long: String,
    multiple: bool,
    flag: bool,
    defaults: Vec<String>,
}

fn keys() -> Vec<Key> {
    let cmd = Cli::command();
    let record = cmd
        .find_subcommand("record")
        .expect("record is a subcommand");
    record
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !NOT_SETTINGS.contains(&a.get_id().as_str()))
        .filter_map(|a| {
            Some(Key {
                id: a.get_id().to_string(),
                long: a.get_long()?.to_string(),
                multiple: matches!(a.get_action(), ArgAction::Append),
                flag: matches!(a.get_action(), ArgAction::SetTrue),
                defaults: a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect(),
            })
        })
        .collect()
}

/// The environment variable for a key: NWTRACE_ROTATE_SIZE.
pub fn env_name(key: &str) -> String {
    format!("NWTRACE_{}", key.to_ascii_uppercase().replace('-', "_"))
}

/// Checks one value with the flag's own parser; the error is clap's first
/// line (`invalid value 'x' for '--rotate-size <SIZE>': ...`).
fn check_value(key: &Key, value: &str) -> Result<(), String> {
    let args: Vec<String> = if key.flag {
        match value {
            "true" => vec![format!("--{}", key.long)],
            "false" => vec![],
            _ => return Err(format!("{value:?} is not true or false")),
        }
    } else {
        vec![format!("--{}={value}", key.long)]
    };
    let argv = ["nwtrace", "record"]
        .into_iter()
        .map(String::from)
        .chain(args);
    match Cli::try_parse_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.strip_prefix("error: ").unwrap_or(first).to_string())
        }
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The files to read, in order, for a config path (a folder: its main file
/// and drop-ins; a file: just it). `explicit` paths must exist.
pub fn config_files(path: &Path, explicit: bool) -> Result<Vec<PathBuf>, UsageError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        if explicit {
            return Err(usage(format!(
                "config {} does not exist; name a file or a folder holding {MAIN_FILE} and {DROP_IN_DIR}/",
                path.display()
            )));
        }
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    let main = path.join(MAIN_FILE);
    if main.is_file() {
        files.push(main);
    }
    let drop_ins = path.join(DROP_IN_DIR);
    if let Ok(entries) = std::fs::read_dir(&drop_ins) {
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        // Lexical order of the names, as bytes: 10-x.toml before 20-y.toml.
        names.sort();
        files.extend(names);
    }
    Ok(files)
}

/// Reads one file into `into`, a later file's keys replacing earlier ones.
fn read_file(
    path: &Path,
    keys: &[Key],
    into: &mut std::collections::BTreeMap<String, FileValue>,
) -> Result<(), UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("{}: cannot read: {e}", path.display())))?;
    let at = |line: usize, msg: String| usage(format!("{}:{line}: {msg}", path.display()));
    // Keys keep their spans, for the line numbers of messages.
    let table: std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> =
        toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            at(line, e.message().trim().replace('\n', " "))
        })?;
    for (name, value) in table {
        let line = line_of(&text, name.span().start);
        let Some(key) = keys.iter().find(|k| k.long == *name.get_ref()) else {
            let known: Vec<&str> = keys.iter().map(|k| k.long.as_str()).collect();
            return Err(at(
                line,
                format!(
                    "unknown key {:?}; the keys are: {}",
                    name.get_ref(),
                    known.join(", ")
                ),
            ));
        };
        let scalar = |v: &toml::Value| -> Result<String, UsageError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Boolean(b) if key.flag => Ok(b.to_string()),
                other => Err(at(
                    line,
                    format!(
                        "{}: a {} is not a value here; write a string like \"100M\" or a number",
                        key.long,
                        other.type_str()
                    ),
                )),
            }
        };
        let values = match value.get_ref() {
            toml::Value::Array(items) if key.multiple => {
                items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?
            }
            toml::Value::Array(_) => {
                return Err(at(
                    line,
                    format!("{}: takes one value, not a list", key.long),
                ));
            }
            v => vec![scalar(v)?],
        };
        for v in &values {
            check_value(key, v).map_err(|e| at(line, format!("{}: {e}", key.long)))?;
        }
        into.insert(
            key.long.clone(),
            FileValue {
                values,
                file: path.to_path_buf(),
                line,
            },
        );
    }
    Ok(())
}

/// The environment, as a function so that tests can give their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Resolves the settings of a `record` or `config` command line.
pub fn resolve(argv: &[OsString], env: Env<'_>) -> Result<Resolved, UsageError> {
    let matches = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| usage(first_line(&e)))?;
    let (_, sub) = matches
        .subcommand()
        .ok_or_else(|| usage("no subcommand".into()))?;
    resolve_matches(sub, env)
}

fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

fn resolve_matches(sub: &ArgMatches, env: Env<'_>) -> Result<Resolved, UsageError> {
    let keys = keys();
    let (config_path, explicit) = match sub.get_one::<PathBuf>("config") {
        Some(p) => (p.clone(), true),
        None => match env(CONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_CONFIG_DIR), false),
        },
    };
    let files = config_files(&config_path, explicit)?;
    let mut from_files = std::collections::BTreeMap::new();
    for file in &files {
        read_file(file, &keys, &mut from_files)?;
    }

    let mut settings = Vec::new();
    for key in &keys {
        let on_command_line = sub.value_source(&key.id) == Some(ValueSource::CommandLine);
        let setting = if on_command_line {
            let values = if key.flag {
                vec!["true".to_string()]
            } else {
                sub.get_raw(&key.id)
                    .into_iter()
                    .flatten()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect()
            };
            Setting {
                key: key.long.clone(),
                values,
                source: Source::CommandLine,
            }
        } else if let Some(text) = env(&env_name(&key.long)) {
            let variable = env_name(&key.long);
            let values: Vec<String> = if key.multiple {
                text.split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(String::from)
                    .collect()
            } else {
                vec![text]
            };
            for v in &values {
                check_value(key, v).map_err(|e| usage(format!("{variable}: {e}")))?;
            }
            Setting {
                key: key.long.clone(),
                values,
                source: Source::Environment { variable },
            }
        } else if let Some(fv) = from_files.get(&key.long) {
            Setting {
                key: key.long.clone(),
                values: fv.values.clone(),
                source: Source::File {
                    file: fv.file.clone(),
                    line: fv.line,
                },
            }
        } else if !key.defaults.is_empty() {
            Setting {
                key: key.long.clone(),
                values: key.defaults.clone(),
                source: Source::Default,
            }
        } else {
            Setting {
                key: key.long.clone(),
                values: Vec::new(),
                source: Source::Unset,
            }
        };
        settings.push(setting);
    }

    // The effective command line, parsed by the one parser: every value
    // was checked above, so this only fails on a bug or a combination.
    let mut argv: Vec<String> = vec!["nwtrace".into(), "record".into()];
    for s in &settings {
        if matches!(s.source, Source::Default | Source::Unset) {
            continue;
        }
        let key = keys.iter().find(|k| k.long == s.key).expect("a key");
        for v in &s.values {
            if key.flag {
                if v == "true" {
                    argv.push(format!("--{}", key.long));
                }
            } else {
                argv.push(format!("--{}={v}", key.long));
            }
        }
    }
    // Hidden options pass through from the command line as given.
    if sub.get_flag("discard_rows") {
        argv.push("--discard-rows".into());
    }
    let parsed = Cli::try_parse_from(&argv).map_err(|e| usage(first_line(&e)))?;
    let Command::Record(mut args) = parsed.command else {
        unreachable!("parsed as record");
    };
    args.config = Some(config_path);
    Ok(Resolved {
        args: *args,
        files,
        settings,
    })
}

/// RecordArgs from the process's own command line and environment.
pub fn record_args() -> Result<RecordArgs, UsageError> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    Ok(resolve(&argv, &process_env)?.args)
}

/// For `nwtrace config`: the same resolution.
pub fn for_config(_args: &ConfigArgs) -> Result<Resolved, UsageError> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    resolve(&argv, &process_env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn dir(tag: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nwtrace-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join(DROP_IN_DIR)).unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        d
    }

    fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Resolved, UsageError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut argv: Vec<OsString> = ["nwtrace", "record", "--config"]
            .iter()
            .map(OsString::from)
            .collect();
        argv.push(config.into());
        argv.extend(args.iter().map(OsString::from));
        resolve(&argv, &|name: &str| env.get(name).cloned())
    }

    fn source_of(r: &Resolved, key: &str) -> Source {
        r.settings
            .iter()
            .find(|s| s.key == key)
            .unwrap()
            .source
            .clone()
    }

    #[test]
    fn flags_beat_env_beat_files_beat_defaults() {
        let d = dir(
            "precedence",
            &[(
                MAIN_FILE,
                "rotate-size = \"1M\"\nmax-files = 5\nmax-size = \"1G\"\npid = [1]\n",
            )],
        );
        let r = run(
            &d,
            &["--rotate-size", "3M"],
            &[("NWTRACE_ROTATE_SIZE", "2M"), ("NWTRACE_MAX_FILES", "6")],
        )
        .unwrap();
        assert_eq!(r.args.output.rotate_size, 3 << 20);
        assert_eq!(source_of(&r, "rotate-size"), Source::CommandLine);
        assert_eq!(r.args.output.max_files, Some(6));
        assert_eq!(
            source_of(&r, "max-files"),
            Source::Environment {
                variable: "NWTRACE_MAX_FILES".into()
            }
        );
        assert_eq!(r.args.output.max_size, Some(1 << 30));
        assert_eq!(
            source_of(&r, "max-size"),
            Source::File {
                file: d.join(MAIN_FILE),
                line: 3
            }
        );
        assert_eq!(r.args.capture.pids, [1]);
        assert_eq!(r.args.capture.ring_size, 16 << 20);
        assert_eq!(source_of(&r, "ring-size"), Source::Default);
        assert_eq!(source_of(&r, "timestamp"), Source::Unset);
        // A list is replaced whole by a higher layer, never merged.
        let r = run(&d, &["--pid", "7", "--pid", "8"], &[]).unwrap();
        assert_eq!(r.args.capture.pids, [7, 8]);
        let r = run(&d, &[], &[("NWTRACE_PID", "3, 4")]).unwrap();
        assert_eq!(r.args.capture.pids, [3, 4]);
    }

    #[test]
    fn drop_ins_apply_in_lexical_order_after_the_main_file() {
        let d = dir(
            "dropins",
            &[
                (MAIN_FILE, "rotate-size = \"1M\"\nbackend = \"kprobe\"\n"),
                ("conf.d/20-b.toml", "rotate-size = \"3M\"\n"),
                ("conf.d/10-a.toml", "rotate-size = \"2M\"\nmax-files = 2\n"),
                ("conf.d/30-c.conf", "this is not read"),
            ],
        );
        let r = run(&d, &[], &[]).unwrap();
        assert_eq!(r.args.output.rotate_size, 3 << 20);
        assert_eq!(r.args.output.max_files, Some(2));
        assert_eq!(r.args.capture.backend, "kprobe");
        let names: Vec<_> = r
            .files
            .iter()
            .map(|p| p.strip_prefix(&d).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                Path::new(MAIN_FILE),
                Path::new("conf.d/10-a.toml"),
                Path::new("conf.d/20-b.toml")
            ]
        );
        // One file named directly is the only one read.
        let r = run(&d.join("conf.d/10-a.toml"), &[], &[]).unwrap();
        assert_eq!(r.args.output.rotate_size, 2 << 20);
        assert_eq!(r.args.capture.backend, "auto");
    }

    fn error_of(r: Result<Resolved, UsageError>) -> String {
        let e = r.expect_err("an error").to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file_and_line() {
        let d = dir(
            "unknown",
            &[(MAIN_FILE, "# comment\n\nrotate-sise = \"1M\"\n")],
        );
        let e = error_of(run(&d, &[], &[]));
        let file = d.join(MAIN_FILE);
        assert!(
            e.starts_with(&format!(
                "{}:3: unknown key \"rotate-sise\"",
                file.display()
            )),
            "{e}"
        );
        std::fs::write(&file, "").unwrap();
        for (text, line, mentions) in [
            ("max-files = 1\nrotate-size = \"abc\"\n", 2, "not a size"),
            ("ring-size = \"3M\"\n", 1, "power of two"),
            ("max-files = 0\n", 1, "max-files"),
            ("pid = \"x\"\n", 1, "invalid value"),
            ("rotate-size = [\"1M\"]\n", 1, "not a list"),
            ("backend = \"uprobe\"\n", 1, "uprobe"),
            ("duration = 1.5\n", 1, "float"),
            ("rotate-size = \n", 1, ""),
        ] {
            std::fs::write(d.join("conf.d/50-x.toml"), text).unwrap();
            let e = error_of(run(&d, &[], &[]));
            let at = format!("{}:{line}: ", d.join("conf.d/50-x.toml").display());
            assert!(e.starts_with(&at) && e.contains(mentions), "{text:?}: {e}");
        }
        std::fs::remove_file(d.join("conf.d/50-x.toml")).unwrap();
        let e = error_of(run(&d, &[], &[("NWTRACE_ROTATE_SIZE", "lots")]));
        assert!(e.starts_with("NWTRACE_ROTATE_SIZE: "), "{e}");
        let e = error_of(run(&d.join("missing"), &[], &[]));
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn every_record_option_is_a_key() {
        let names: Vec<String> = keys().into_iter().map(|k| k.long).collect();
        for want in [
            "output-dir",
            "machine-id",
            "timestamp",
            "rotate-size",
            "max-files",
            "max-size",
            "duration",
            "pid",
            "comm",
            "backend",
            "ring-size",
            "port",
            "protocol",
            "ip-version",
            "direction",
            "cgroup",
            "container",
            "exclude-comm",
            "columns",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
    }

    #[test]
    fn columns_and_filters_from_a_file() {
        let d = dir(
            "attr",
            &[(
                MAIN_FILE,
                "columns = \"cookie,tid\"\nport = [6379, 443]\nprotocol = \"tcp\"\nip-version = \"6\"\nexclude-comm = [\"sshd\"]\ncontainer = [\"3f9c1b2a4d5e\"]\n",
            )],
        );
        let r = run(&d, &[], &[]).unwrap();
        let c = &r.args.capture;
        assert_eq!(c.columns.unwrap().to_string(), "tid,cookie");
        assert_eq!(c.filter.ports, [6379, 443]);
        assert_eq!(c.filter.protocol, Some(crate::schema::Protocol::Tcp));
        assert_eq!(c.filter.ip_version, Some(6));
        assert_eq!(c.filter.exclude_comms, ["sshd"]);
        assert_eq!(c.filter.containers, ["3f9c1b2a4d5e"]);
        assert!(matches!(source_of(&r, "columns"), Source::File { .. }));
        // A bad value in the file is one line naming it.
        let bad = dir("attr-bad", &[(MAIN_FILE, "columns = \"tid,pid\"\n")]);
        let e = error_of(run(&bad, &[], &[]));
        assert!(e.contains("pid") && !e.contains('\n'), "{e}");
    }
}

#[cfg(test)]
mod packaged_config_tests {
    use super::*;

    /// The packaged /etc/nwtrace/nwtrace.toml resolves as it is, and with
    /// every commented example switched on.
    #[test]
    fn packaged_config_and_its_examples_are_valid() {
        let text = include_str!("../packaging/nwtrace.toml");
        let dir = std::env::temp_dir().join(format!("nwtrace-pkgconf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        for (name, body) in [
            ("as-shipped.toml", text.to_string()),
            ("all.toml", uncommented),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, &body).unwrap();
            let argv: Vec<OsString> = ["nwtrace", "record", "--config"]
                .iter()
                .map(OsString::from)
                .chain([path.clone().into_os_string()])
                .collect();
            let r = resolve(&argv, &|_: &str| None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                r.args.output.output_dir.as_deref(),
                Some(Path::new("/var/lib/nwtrace"))
            );
            assert!(r.args.output.max_age.is_some() && r.args.output.max_size.is_some());
        }
    }
}
