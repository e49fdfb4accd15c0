//! Deployment network addresses. Docker's default address pools hold about 30 networks (15 ×
//! /16 and 16 × /20), so one network per deployment would run out early; Berth instead gives
//! each network a small subnet of its own pool. The choice is a pure function of the pool and
//! of every subnet in use on the engine (other installations' and hand-made networks too, since
//! Docker refuses overlaps).

use std::net::Ipv4Addr;

/// An IPv4 block `addr/prefix` (addr is the block's first address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Block {
    /// Parses `a.b.c.d/n`; None for IPv6 or anything malformed (such subnets cannot overlap a
    /// v4 pool). The address is masked to the block start.
    pub fn parse(text: &str) -> Option<Block> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Block {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    fn first(self) -> u64 {
        u64::from(u32::from(self.addr))
    }

    fn end(self) -> u64 {
        self.first() + (1u64 << (32 - u32::from(self.prefix)))
    }

    fn overlaps(self, other: Block) -> bool {
        self.first() < other.end() && other.first() < self.end()
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// Where deployment subnets come from: `pool` cut into blocks of `/subnet_prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub pool: Block,
    pub subnet_prefix: u8,
}

impl Pool {
    /// How many deployment networks fit.
    pub fn capacity(&self) -> u64 {
        1u64 << (self.subnet_prefix - self.pool.prefix)
    }

    /// The first block of the pool that overlaps nothing in `in_use`; None when the pool is
    /// full.
    pub fn allocate(&self, in_use: &[Block]) -> Option<Block> {
        self.allocate_from(in_use, 0)
    }

    /// The first free block at or after block number `start` (modulo the capacity), wrapping
    /// round to the pool's start; None when the pool is full. Installations sharing an engine
    /// start at different blocks (a hash of their id), so two of them creating networks at the
    /// same moment rarely pick the same block and lose a create to Docker's overlap check.
    pub fn allocate_from(&self, in_use: &[Block], start: u64) -> Option<Block> {
        let size = 1u64 << (32 - u32::from(self.subnet_prefix));
        let mut taken: Vec<Block> = in_use
            .iter()
            .copied()
            .filter(|b| b.overlaps(self.pool))
            .collect();
        taken.sort_by_key(|b| b.first());
        let from = self.pool.first() + (start % self.capacity()) * size;
        let found = self
            .first_free(&taken, from, size)
            .or_else(|| self.first_free(&taken, self.pool.first(), size));
        found.map(|next| Block {
            addr: Ipv4Addr::from(u32::try_from(next).unwrap_or(u32::MAX)),
            prefix: self.subnet_prefix,
        })
    }

    /// The first free block's address at or after `from` (a block boundary) within the pool.
    fn first_free(&self, taken: &[Block], from: u64, size: u64) -> Option<u64> {
        // Sweep in address order: the candidate moves past each block it overlaps, rounded
        // up to the next boundary; the first block starting after the candidate leaves a gap.
        let mut next = from;
        for b in taken.iter().filter(|b| b.end() > from) {
            if b.first() >= next + size {
                break;
            }
            if b.end() > next {
                next = b.end().div_ceil(size) * size;
            }
        }
        (next + size <= self.pool.end()).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> Block {
        Block::parse(text).unwrap()
    }

    #[test]
    fn allocates_the_first_free_block_of_the_pool() {
        let pool = Pool {
            pool: b("10.213.0.0/26"),
            subnet_prefix: 28,
        };
        // (in use, expected)
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], Some("10.213.0.0/28")),
            (&["10.213.0.0/28"], Some("10.213.0.16/28")),
            (&["10.213.0.16/28"], Some("10.213.0.0/28")),
            // Other networks elsewhere do not matter.
            (&["172.17.0.0/16", "192.168.0.0/20"], Some("10.213.0.0/28")),
            // A larger block covering part of the pool (another installation, a hand-made net).
            (&["10.213.0.0/27"], Some("10.213.0.32/28")),
            // A smaller block inside a candidate makes the whole candidate unusable.
            (&["10.213.0.4/30"], Some("10.213.0.16/28")),
            (&["10.213.0.0/28", "10.213.0.32/28"], Some("10.213.0.16/28")),
            (
                &["10.213.0.0/28", "10.213.0.16/28", "10.213.0.32/28"],
                Some("10.213.0.48/28"),
            ),
            // Full.
            (
                &[
                    "10.213.0.0/28",
                    "10.213.0.16/28",
                    "10.213.0.32/28",
                    "10.213.0.48/28",
                ],
                None,
            ),
            (&["10.0.0.0/8"], None),
        ];
        for (in_use, expected) in cases {
            let in_use: Vec<Block> = in_use.iter().map(|t| b(t)).collect();
            assert_eq!(
                pool.allocate(&in_use).map(|x| x.to_string()).as_deref(),
                *expected,
                "{in_use:?}"
            );
        }
        assert_eq!(pool.capacity(), 4);
    }

    #[test]
    fn allocation_from_a_start_block_wraps_round() {
        let pool = Pool {
            pool: b("10.213.0.0/26"),
            subnet_prefix: 28,
        };
        // (in use, start, expected)
        let cases: &[(&[&str], u64, Option<&str>)] = &[
            (&[], 0, Some("10.213.0.0/28")),
            (&[], 2, Some("10.213.0.32/28")),
            (&[], 6, Some("10.213.0.32/28")),
            (&["10.213.0.32/28"], 2, Some("10.213.0.48/28")),
            (&["10.213.0.32/27"], 2, Some("10.213.0.0/28")),
            (
                &["10.213.0.48/28", "10.213.0.0/28"],
                3,
                Some("10.213.0.16/28"),
            ),
            (&["10.213.0.0/26"], 1, None),
        ];
        for (in_use, start, expected) in cases {
            let in_use: Vec<Block> = in_use.iter().map(|t| b(t)).collect();
            assert_eq!(
                pool.allocate_from(&in_use, *start)
                    .map(|x| x.to_string())
                    .as_deref(),
                *expected,
                "{in_use:?} from {start}"
            );
        }
    }

    #[test]
    fn hundreds_of_deployments_fit_the_default_pool() {
        let pool = Pool {
            pool: b("10.213.0.0/16"),
            subnet_prefix: 28,
        };
        let mut in_use = Vec::new();
        for _ in 0..4096 {
            let next = pool.allocate(&in_use).unwrap();
            assert!(in_use.iter().all(|u: &Block| !u.overlaps(next)));
            in_use.push(next);
        }
        assert_eq!(pool.allocate(&in_use), None);
    }

    #[test]
    fn parses_only_ipv4_blocks() {
        let cases = [
            ("10.1.2.3/24", Some("10.1.2.0/24")),
            ("172.17.0.0/16", Some("172.17.0.0/16")),
            ("fd00::/64", None),
            ("10.0.0.0", None),
            ("10.0.0.0/33", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                Block::parse(text).map(|x| x.to_string()).as_deref(),
                expected,
                "{text}"
            );
        }
    }
}
