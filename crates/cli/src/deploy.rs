pub async fn run(_c: &crate::client::Client, _a: DeployArgs) -> anyhow::Result<()> {
    Ok(())
}
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    dir: std::path::PathBuf,
}
