// placeholder: owned by the evaluation helper
#[derive(clap::Args, Debug)]
pub struct CompareArgs {}
pub fn run(_args: CompareArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not implemented yet")
}
