// placeholder: owned by the evaluation helper
#[derive(clap::Args, Debug)]
pub struct EvalArgs {}
pub fn run(_args: EvalArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not implemented yet")
}
