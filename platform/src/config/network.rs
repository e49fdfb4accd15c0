//! Address settings: CIDR blocks (`trusted_proxies`) and the pool deployment subnets come from.

use std::net::IpAddr;

use super::ConfigError;
use super::parse::invalid;

/// An address block, `10.0.0.0/8` or `::1/128`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length {p:?} must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    /// True when `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

pub(super) const DEFAULT_NETWORK_POOL: &str = "10.213.0.0/16";
pub(super) const DEFAULT_NETWORK_SUBNET_PREFIX: u8 = 28;
/// A /29 holds the gateway and five containers; smaller would not fit a rollout of two.
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
