//! Landlock rules for the script process.
//!
//! Landlock is applied in the script process itself, after its fresh /proc and /tmp are
//! mounted (rules bind to inodes, so a ruleset made earlier could not name them). It is
//! a second, independent wall behind the mount view: even if the view were wrong, the
//! script can only read the listed system paths and write its own scratch. On ABI >= 4
//! it also refuses every TCP bind and every TCP connect except to the egress proxy's
//! port and the ports of the job's TCP destinations (which exist only on the
//! execution's own loopback, and only when the job has egress), and on ABI >= 6 it
//! scopes abstract unix sockets and signals to the execution's own Landlock domain.
//! In the full tier those ports are known only with the job, after the spare isolated
//! itself: connect is then restricted by a second, stacked ruleset
//! ([`restrict_connect`]) before the script starts.

use crate::plan::LandlockPaths;
use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// What was enforced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LandlockOutcome {
    pub fs: bool,
    pub net: bool,
    pub scope: bool,
}

/// The ABI to target: the kernel's, capped at the newest one this code was reviewed for.
pub(crate) fn target_abi(kernel_abi: i32) -> ABI {
    ABI::from(kernel_abi.min(9))
}

pub(crate) fn read_exec_access(abi: ABI) -> BitFlags<AccessFs> {
    (AccessFs::from_read(abi) | AccessFs::Execute) & AccessFs::from_all(abi)
}

pub(crate) fn device_access(abi: ABI) -> BitFlags<AccessFs> {
    (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate) & AccessFs::from_all(abi)
}

pub(crate) fn read_only_access(abi: ABI) -> BitFlags<AccessFs> {
    (AccessFs::ReadFile | AccessFs::ReadDir) & AccessFs::from_all(abi)
}

/// The network rules: TCP connect to the proxy port only; no TCP bind at all (no rule
/// grants `BindTcp`).
pub(crate) fn net_rules(proxy_port: Option<u16>) -> Vec<NetPort> {
    proxy_port
        .into_iter()
        .map(|p| NetPort::new(p, AccessNet::ConnectTcp))
        .collect()
}

/// How the spare-time ruleset treats TCP connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connect {
    /// Handled now: to this port only (none: no connect at all).
    Only(Option<u16>),
    /// Left to a second ruleset made once the job is known ([`restrict_connect`]),
    /// before the script starts: the job's TCP destinations add ports.
    AtJob,
}

/// Creates and enforces the ruleset on the calling thread. `connect`: the one port a
/// TCP connect may go to (the egress proxy's listener on the execution's loopback), or
/// [`Connect::AtJob`].
pub(crate) fn apply(
    paths: &LandlockPaths,
    kernel_abi: i32,
    connect: Connect,
) -> Result<LandlockOutcome, String> {
    if kernel_abi < 1 {
        return Ok(LandlockOutcome::default());
    }
    let abi = target_abi(kernel_abi);
    let want_net = kernel_abi >= 4;
    let want_scope = kernel_abi >= 6;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| format!("landlock fs: {e}"))?;
    if want_net {
        let handled = match connect {
            Connect::Only(_) => AccessNet::BindTcp | AccessNet::ConnectTcp,
            Connect::AtJob => AccessNet::BindTcp.into(),
        };
        ruleset = ruleset
            .handle_access(handled)
            .map_err(|e| format!("landlock net: {e}"))?;
    }
    if want_scope {
        ruleset = ruleset
            .scope(Scope::from_all(abi))
            .map_err(|e| format!("landlock scope: {e}"))?;
    }
    let created = ruleset
        .create()
        .map_err(|e| format!("landlock create: {e}"))?
        .add_rules(path_beneath_rules(&paths.read_exec, read_exec_access(abi)))
        .map_err(|e| format!("landlock rules: {e}"))?
        .add_rules(path_beneath_rules(&paths.read, read_only_access(abi)))
        .map_err(|e| format!("landlock rules: {e}"))?
        .add_rules(path_beneath_rules(&paths.devices_rw, device_access(abi)))
        .map_err(|e| format!("landlock rules: {e}"))?
        .add_rules(path_beneath_rules(
            &paths.read_write,
            AccessFs::from_all(abi),
        ))
        .map_err(|e| format!("landlock rules: {e}"))?;
    let created = if let (true, Connect::Only(proxy_port)) = (want_net, connect) {
        created
            .add_rules(
                net_rules(proxy_port)
                    .into_iter()
                    .map(Ok::<_, landlock::RulesetError>),
            )
            .map_err(|e| format!("landlock net rules: {e}"))?
    } else {
        created
    };
    let status = created
        .restrict_self()
        .map_err(|e| format!("landlock restrict_self: {e}"))?;
    let full = status.ruleset == RulesetStatus::FullyEnforced;
    if !full {
        return Err(format!("landlock only {:?}", status.ruleset));
    }
    Ok(LandlockOutcome {
        fs: true,
        // With `AtJob`, the network rules are whole only once `restrict_connect` ran.
        net: want_net && connect != Connect::AtJob,
        scope: want_scope,
    })
}

/// The job-time half of [`Connect::AtJob`]: a second ruleset, stacked on the first,
/// that allows TCP connect to `ports` only (the proxy's and the job's TCP
/// destinations', which exist only on the execution's own loopback). `Ok(false)` when
/// the kernel has no network rules (ABI < 4).
pub(crate) fn restrict_connect(kernel_abi: i32, ports: &[u16]) -> Result<bool, String> {
    if kernel_abi < 4 {
        return Ok(false);
    }
    // A layer that handles no file access still refuses to move a file between
    // directories (EXDEV) unless it handles `Refer` and grants it: granted everywhere
    // here, so the first layer alone decides about files.
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessNet::ConnectTcp)
        .map_err(|e| format!("landlock net: {e}"))?
        .handle_access(AccessFs::Refer)
        .map_err(|e| format!("landlock fs: {e}"))?
        .create()
        .map_err(|e| format!("landlock create: {e}"))?
        .add_rules(path_beneath_rules(["/"], BitFlags::from(AccessFs::Refer)))
        .map_err(|e| format!("landlock rules: {e}"))?
        .add_rules(
            ports
                .iter()
                .map(|p| Ok::<_, landlock::RulesetError>(NetPort::new(*p, AccessNet::ConnectTcp))),
        )
        .map_err(|e| format!("landlock net rules: {e}"))?
        .restrict_self()
        .map_err(|e| format!("landlock restrict_self: {e}"))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("landlock only {:?}", status.ruleset));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_sets_never_include_write_for_read_paths() {
        for abi in [ABI::V1, ABI::V4, ABI::V6] {
            let ro = read_exec_access(abi);
            assert!(ro.contains(AccessFs::ReadFile));
            assert!(ro.contains(AccessFs::Execute));
            assert!(!ro.contains(AccessFs::WriteFile));
            assert!(!ro.contains(AccessFs::MakeReg));
            assert!(!read_only_access(abi).contains(AccessFs::Execute));
            assert!(!device_access(abi).contains(AccessFs::MakeReg));
        }
        assert_eq!(target_abi(42), ABI::V9);
        assert_eq!(net_rules(None).len(), 0);
        assert_eq!(net_rules(Some(3128)).len(), 1);
        assert_eq!(target_abi(7), ABI::V7);
    }
}
