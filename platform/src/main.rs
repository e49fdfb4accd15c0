//! `berth`: the hosting server. Until the platform issue lands this binary only
//! reports that it is not implemented, so the workspace builds end to end.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("berth serve is not implemented yet (see issue 3)")
}
