//! Host isolation: deployment containers may reach the host only on the internal API port.
//!
//! Every deployment network's bridge is named `bt<installation hash><network hash>`, so one
//! `INPUT` rule matching the interface prefix covers every network of this installation, also
//! the ones created later, with nothing to add or remove per network. The rule jumps to this
//! installation's chain, which returns (lets the host's own rules decide) for replies to
//! connections the host opened (probes, the proxy) and for the internal API port, and rejects
//! everything else. Forwarded traffic (the internet, other containers) is left to Docker's
//! FORWARD rules but for one rule of ours: link-local destinations (169.254.0.0/16, where cloud
//! providers answer instance metadata and hand out the machine's credentials) are rejected,
//! from `DOCKER-USER`, the chain Docker evaluates before its own (plain `FORWARD` when Docker
//! does not manage iptables). The rules stay while Berth is stopped (its containers keep
//! running); `host_firewall = false` removes them at the next start, `berth firewall remove` at once.

use std::process::Command;

use sha2::{Digest, Sha256};

/// Linux interface names are at most 15 bytes.
const IFNAME_MAX: usize = 15;
const BRIDGE_PREFIX: &str = "bt";
/// Hex digits of the installation hash in bridge names: distinct installations on one engine
/// must not share a prefix, or one's rules would cover the other's bridges.
const INSTALLATION_DIGITS: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(
        "cannot install the host firewall: `{command}` failed: {message}. Berth needs root and iptables to keep containers off the host's services; to run without that isolation, set host_firewall = false (--host-firewall false, BERTH_HOST_FIREWALL=false)"
    )]
    Command { command: String, message: String },
}

fn hash_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The interface-name prefix of this installation's bridges.
pub fn bridge_prefix(installation: &str) -> String {
    format!(
        "{BRIDGE_PREFIX}{}",
        &hash_hex(installation)[..INSTALLATION_DIGITS]
    )
}

/// The bridge interface name of one deployment network.
pub fn bridge_name(installation: &str, network: &str) -> String {
    let mut name = bridge_prefix(installation);
    // Base 36 of the network name's hash: 7 characters, 36^7 ≈ 7.8e10 names.
    let digest = Sha256::digest(network.as_bytes());
    let mut n = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
    while name.len() < IFNAME_MAX {
        let digit = (n % 36) as u32;
        name.push(char::from_digit(digit, 36).unwrap_or('0'));
        n /= 36;
    }
    name
}

/// This installation's chain (iptables chain names are at most 28 characters).
pub fn chain_name(installation: &str) -> String {
    format!(
        "BERTH-HOST-{}",
        &hash_hex(installation)[..INSTALLATION_DIGITS]
    )
}

/// The comment on the INPUT jump, so an operator (and test cleanup) can tell whose it is.
fn comment(installation: &str) -> String {
    format!("berth installation {installation}")
}

/// The rules of the chain, in order, as iptables arguments.
pub fn chain_rules(internal_port: u16) -> Vec<Vec<String>> {
    let args = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
    vec![
        args("-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN"),
        args(&format!("-p tcp --dport {internal_port} -j RETURN")),
        args("-j REJECT"),
    ]
}

/// The INPUT jump into the chain.
pub fn jump_rule(installation: &str) -> Vec<String> {
    vec![
        "-i".to_owned(),
        format!("{}+", bridge_prefix(installation)),
        "-m".to_owned(),
        "comment".to_owned(),
        "--comment".to_owned(),
        comment(installation),
        "-j".to_owned(),
        chain_name(installation),
    ]
}

/// Link-local IPv4: the cloud metadata services (169.254.169.254 on AWS, GCP, Azure, …) and
/// nothing a container of a deployment network needs.
const LINK_LOCAL: &str = "169.254.0.0/16";

/// The forwarding rule keeping this installation's containers off link-local addresses.
pub fn metadata_rule(installation: &str) -> Vec<String> {
    vec![
        "-i".to_owned(),
        format!("{}+", bridge_prefix(installation)),
        "-d".to_owned(),
        LINK_LOCAL.to_owned(),
        "-m".to_owned(),
        "comment".to_owned(),
        "--comment".to_owned(),
        comment(installation),
        "-j".to_owned(),
        "REJECT".to_owned(),
    ]
}

/// Chains the metadata rule may be in: Docker's user chain, else FORWARD.
const FORWARD_CHAINS: [&str; 2] = ["DOCKER-USER", "FORWARD"];

/// The tools to configure: IPv4 always, IPv6 when the kernel has it.
fn tools() -> Vec<&'static str> {
    let mut tools = vec!["iptables"];
    if std::path::Path::new("/proc/net/if_inet6").exists() {
        tools.push("ip6tables");
    }
    tools
}

fn run(tool: &str, args: &[String]) -> Result<(), FirewallError> {
    // -w: wait for the xtables lock (Docker and other installations change rules too).
    let output = Command::new(tool).arg("-w").args(args).output();
    let fail = |message: String| FirewallError::Command {
        command: format!("{tool} -w {}", args.join(" ")),
        message,
    };
    match output {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(fail(String::from_utf8_lossy(&o.stderr).trim().to_owned())),
        Err(e) => Err(fail(e.to_string())),
    }
}

fn with(prefix: &[&str], rest: &[String]) -> Vec<String> {
    prefix
        .iter()
        .map(|s| (*s).to_owned())
        .chain(rest.iter().cloned())
        .collect()
}

/// The rules of `chain` now, as `iptables -S` prints them (`-A <chain> …`); None when the
/// chain does not exist.
fn listed_rules(tool: &str, chain: &str) -> Option<Vec<String>> {
    let output = Command::new(tool)
        .args(["-w", "-S", chain])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let prefix = format!("-A {chain} ");
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .map(str::to_owned)
            .collect(),
    )
}

/// The iptables commands that turn a chain of `existing` rules into `wanted` with no moment
/// in between when it rejects nothing: the wanted rules go in on top (each one complete, ending
/// in its REJECT), then the old ones, below them and so never reached, are deleted. A flush
/// and re-append left the chain empty for as long as the appends took (longer while Docker held
/// the xtables lock), and an empty chain lets containers reach every host port.
fn refresh_commands(chain: &str, existing: usize, wanted: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut commands: Vec<Vec<String>> = wanted
        .iter()
        .enumerate()
        .map(|(i, rule)| with(&["-I", chain, &(i + 1).to_string()], rule))
        .collect();
    let first_old = (wanted.len() + 1).to_string();
    commands.extend((0..existing).map(|_| with(&["-D", chain, &first_old], &[])));
    commands
}

/// Installs (or refreshes, e.g. after the internal port changed) this installation's rules.
pub fn install(installation: &str, internal_port: u16) -> Result<(), FirewallError> {
    let chain = chain_name(installation);
    let jump = jump_rule(installation);
    for tool in tools() {
        // The chain may exist from a previous run, guarding running containers: rewritten
        // without a gap (see `refresh_commands`).
        let existing = match listed_rules(tool, &chain) {
            Some(rules) => rules.len(),
            None => {
                run(tool, &["-N".into(), chain.clone()])?;
                0
            }
        };
        for command in refresh_commands(&chain, existing, &chain_rules(internal_port)) {
            run(tool, &command)?;
        }
        if run(tool, &with(&["-C", "INPUT"], &jump)).is_err() {
            run(tool, &with(&["-I", "INPUT", "1"], &jump))?;
        }
    }
    let metadata = metadata_rule(installation);
    let forward = if run(
        "iptables",
        &["-n".into(), "-L".into(), "DOCKER-USER".into()],
    )
    .is_ok()
    {
        FORWARD_CHAINS[0]
    } else {
        FORWARD_CHAINS[1]
    };
    if run("iptables", &with(&["-C", forward], &metadata)).is_err() {
        run("iptables", &with(&["-I", forward, "1"], &metadata))?;
    }
    Ok(())
}

/// Removes this installation's rules, if any (`host_firewall` turned off, `berth firewall
/// remove`, tests and benchmarks); returns how many rules and chains went.
pub fn remove(installation: &str) -> usize {
    let chain = chain_name(installation);
    let jump = jump_rule(installation);
    let mut removed = 0;
    for tool in tools() {
        while run(tool, &with(&["-D", "INPUT"], &jump)).is_ok() {
            removed += 1;
        }
        let _ = run(tool, &["-F".into(), chain.clone()]);
        if run(tool, &["-X".into(), chain.clone()]).is_ok() {
            removed += 1;
        }
    }
    let metadata = metadata_rule(installation);
    for forward in FORWARD_CHAINS {
        while run("iptables", &with(&["-D", forward], &metadata)).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_an_interface_and_share_the_installation_prefix() {
        let cases = [
            ("abc", "berth-abc-1-shared"),
            ("abc", "berth-abc-1-t1"),
            ("xyz", "berth-xyz-1-shared"),
        ];
        let mut seen = std::collections::HashSet::new();
        for (installation, network) in cases {
            let name = bridge_name(installation, network);
            assert_eq!(name.len(), IFNAME_MAX, "{name}");
            assert!(name.starts_with(&bridge_prefix(installation)));
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()));
            // Docker's default bridges are br-<id>: never under our prefix.
            assert!(!name.starts_with("br-"));
            assert!(seen.insert(name));
        }
        assert_ne!(bridge_prefix("abc"), bridge_prefix("xyz"));
        assert_eq!(
            bridge_name("abc", "berth-abc-1-shared"),
            bridge_name("abc", "berth-abc-1-shared")
        );
        assert!(chain_name("abc").len() <= 28);
    }

    #[test]
    fn the_chain_admits_replies_and_the_internal_port_only() {
        let rules: Vec<String> = chain_rules(8111).iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            rules,
            [
                "-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
                "-p tcp --dport 8111 -j RETURN",
                "-j REJECT",
            ]
        );
        let metadata = metadata_rule("abc").join(" ");
        assert!(metadata.starts_with(&format!("-i {}+ -d 169.254.0.0/16 ", bridge_prefix("abc"))));
        assert!(metadata.ends_with("-j REJECT"));
        let jump = jump_rule("abc").join(" ");
        assert!(jump.starts_with(&format!("-i {}+ ", bridge_prefix("abc"))));
        assert!(jump.ends_with(&format!("-j {}", chain_name("abc"))));
    }

    /// Applies `refresh_commands` to a simulated chain and checks every state in between: a new
    /// connection to another port is always rejected.
    #[test]
    fn a_refresh_never_leaves_the_chain_open() {
        let old: Vec<Vec<String>> = chain_rules(8111);
        let new: Vec<Vec<String>> = chain_rules(9000);
        // (existing rules, wanted rules)
        let cases = [
            (vec![], new.clone()),
            (old.clone(), new.clone()),
            (new.clone(), new.clone()),
        ];
        for (existing, wanted) in cases {
            let mut chain: Vec<String> = existing.iter().map(|r| r.join(" ")).collect();
            // The rules return only replies and one port, so a chain with a REJECT in it
            // rejects a new connection to any other port.
            let rejects_others = |chain: &[String]| chain.iter().any(|r| r.ends_with("-j REJECT"));
            for command in refresh_commands("C", existing.len(), &wanted) {
                let (verb, at) = (command[0].as_str(), command[2].parse::<usize>().unwrap());
                match verb {
                    "-I" => chain.insert(at - 1, command[3..].join(" ")),
                    "-D" => {
                        chain.remove(at - 1);
                    }
                    other => panic!("{other}"),
                }
                // A new chain is filled before the INPUT jump to it exists.
                assert!(
                    rejects_others(&chain) || existing.is_empty(),
                    "open after {command:?}: {chain:?}"
                );
            }
            let wanted: Vec<String> = wanted.iter().map(|r| r.join(" ")).collect();
            assert_eq!(chain, wanted);
        }
    }
}
