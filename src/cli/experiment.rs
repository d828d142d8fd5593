// placeholder: owned by the evaluation helper
#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {}
pub fn run(_args: ExperimentArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not implemented yet")
}
