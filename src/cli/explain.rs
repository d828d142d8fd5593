// placeholder: owned by the evaluation helper
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {}
pub fn run(_args: ExplainArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not implemented yet")
}
