//! Address settings: CIDR blocks (`trusted_proxies`) and the pool deployment subnets come from.

use super::ConfigError;
use super::parse::invalid;

pub(super) const DEFAULT_NETWORK_POOL: &str = "10.213.0.0/16";
pub(super) const DEFAULT_NETWORK_SUBNET_PREFIX: u8 = 28;
/// A /29 holds the gateway and five containers (replicas' network holders and the spare, see
/// `runtime::docker::holders`); smaller would not fit a rollout of two.
const MAX_NETWORK_SUBNET_PREFIX: u8 = 29;

pub(super) fn network_pool(
    pool: Option<String>,
    prefix: Option<u8>,
) -> Result<crate::supervisor::subnets::Pool, ConfigError> {
    use crate::supervisor::subnets::{Block, Pool};
    let text = pool.unwrap_or_else(|| DEFAULT_NETWORK_POOL.to_owned());
    let block = Block::parse(&text)
        .filter(|b| text.trim().starts_with(&format!("{}/", b.addr)))
        .ok_or_else(|| {
            invalid(
                "network_pool",
                &text,
                "expected an IPv4 block starting at its first address, such as 10.213.0.0/16",
            )
        })?;
    let subnet_prefix = prefix.unwrap_or(DEFAULT_NETWORK_SUBNET_PREFIX);
    if subnet_prefix < block.prefix || subnet_prefix > MAX_NETWORK_SUBNET_PREFIX {
        return Err(invalid(
            "network_subnet_prefix",
            &subnet_prefix.to_string(),
            &format!(
                "must be from the pool's prefix length ({}) to {MAX_NETWORK_SUBNET_PREFIX}",
                block.prefix
            ),
        ));
    }
    Ok(Pool {
        pool: block,
        subnet_prefix,
    })
}
