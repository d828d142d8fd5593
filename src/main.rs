use std::process::ExitCode;

use clap::Parser;
use fusecap::cli::{Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    fusecap::allocator::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Caption(args) => fusecap::cli::caption::run(args),
        Command::Ask(args) => fusecap::cli::ask::run(args),
        Command::Init(args) => fusecap::cli::init::run(args),
        Command::Train(args) => fusecap::cli::train::run(args),
        Command::Data(args) => fusecap::cli::data::run(args),
        Command::Eval(args) => fusecap::cli::eval::run(args),
        Command::Compare(args) => fusecap::cli::compare::run(args),
        Command::Experiment(args) => fusecap::cli::experiment::run(args),
        Command::Explain(args) => fusecap::cli::explain::run(args),
        Command::Score(args) => fusecap::cli::score::run(args),
        Command::Encoders(args) => fusecap::cli::encoders::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(fusecap::cli::EXIT_FATAL)
        }
    }
}
