//! `carrierhub config`: the effective settings (secrets redacted), a settings file checked,
//! and the reference of every setting. The settings themselves are in [`crate::settings`].

use crate::serve::ServeFlags;
use crate::settings::{Settings, Sources};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the settings `serve` would run with: the defaults, then the settings file
    /// (`--config`), the environment (`CARRIERHUB_…`) and the flags given here, each over
    /// the one before. Passwords, tokens and secrets are redacted.
    Show(Box<ShowArgs>),
    /// Check a settings file: unknown keys and bad values are refused, naming the line and
    /// the key. The environment is not read.
    Check {
        /// The settings file (TOML).
        file: PathBuf,
    },
    /// Print the reference of every setting (Markdown): its key, default, environment
    /// variable, flag and meaning.
    Docs,
}

#[derive(Args)]
pub struct ShowArgs {
    /// `toml` (a settings file) or `json`.
    #[arg(long, value_enum, default_value_t = ShowFormat::Toml)]
    pub format: ShowFormat,
    /// `serve`'s flags: the ones given override the file and the environment.
    #[command(flatten)]
    pub serve: ServeFlags,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShowFormat {
    Toml,
    Json,
}

pub fn run(command: ConfigCommand, effective: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Show(args) => {
            let tree = effective.redacted()?;
            match args.format {
                ShowFormat::Toml => print!("{}", toml::to_string_pretty(&tree)?),
                ShowFormat::Json => println!("{}", serde_json::to_string_pretty(&tree)?),
            }
        }
        ConfigCommand::Check { file } => {
            Settings::load(&Sources {
                file: Some(&file),
                env: None,
            })?;
            println!("{}: valid", file.display());
        }
        ConfigCommand::Docs => print!("{}", crate::settings::reference_markdown()),
    }
    Ok(ExitCode::SUCCESS)
}
