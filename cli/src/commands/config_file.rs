//! `--config FILE`: a TOML table per subcommand, keys named like the flags,
//! spliced into the command line before clap sees it. Splicing, rather than a
//! second source of settings, keeps one parser and one set of defaults, and
//! lets flags given on the command line win simply by coming later.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The command line with the `--config` file's flags for the subcommand
/// inserted right after the subcommand's name, so that the user's own
/// flags, coming later, win.
pub fn args_with_config() -> anyhow::Result<Vec<std::ffi::OsString>> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut file = None;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--config" && i + 1 < args.len() {
            file = Some(PathBuf::from(args.remove(i + 1)));
            args.remove(i);
        } else if let Some(path) = a.strip_prefix("--config=") {
            file = Some(PathBuf::from(path));
            args.remove(i);
        } else {
            i += 1;
        }
    }
    let Some(file) = file else { return Ok(args) };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read config file {}", file.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid TOML", file.display()))?;
    let Some(pos) = args.iter().position(|a| {
        let a = a.to_string_lossy();
        ["leader", "follower", "load", "status", "policy", "demo"].contains(&a.as_ref())
    }) else {
        return Ok(args);
    };
    let command = args[pos].to_string_lossy().into_owned();
    let Some(section) = table.get(&command) else {
        return Ok(args);
    };
    let section = section
        .as_table()
        .with_context(|| format!("[{command}] in {} is not a table", file.display()))?;
    let mut extra = Vec::new();
    for (key, value) in section {
        let flag = format!("--{key}");
        match value {
            toml::Value::Boolean(true) => extra.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => extra.extend([flag.into(), s.into()]),
            toml::Value::Integer(n) => extra.extend([flag.into(), n.to_string().into()]),
            // A list repeats the flag (e.g. policy-allow = ["<sha256>", ...]).
            toml::Value::Array(items) => {
                for item in items {
                    let Some(s) = item.as_str() else {
                        bail!(
                            "{key} in [{command}] of {}: {item} is not a string",
                            file.display()
                        );
                    };
                    extra.extend([flag.clone().into(), s.into()]);
                }
            }
            other => bail!(
                "{key} in [{command}] of {}: {other} is not a string, number, boolean or list",
                file.display()
            ),
        }
    }
    args.splice(pos + 1..pos + 1, extra);
    Ok(args)
}
