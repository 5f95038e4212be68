//! The seccomp filters installed last in every script process.
//!
//! Namespaces and Landlock already confine what a script can reach; seccomp removes the
//! kernel attack surface a sandboxed Python program never needs (ptrace, mounting,
//! namespaces, keyrings, BPF, io_uring, module loading ...), blocks x32 syscall aliases,
//! and narrows `socket()` to unix/IPv4/IPv6 stream and datagram sockets. The filters are
//! built once in the helper (before Python starts) and installed after every other layer.

use crate::config::Tier;
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Syscalls refused outright with EPERM.
pub(crate) const DENIED: &[(&str, i64)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("reboot", libc::SYS_reboot),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("kcmp", libc::SYS_kcmp),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("process_madvise", libc::SYS_process_madvise),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("quotactl", libc::SYS_quotactl),
    ("syslog", libc::SYS_syslog),
    ("vhangup", libc::SYS_vhangup),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    // x86 local descriptor tables: a classic kernel attack surface no script needs.
    #[cfg(target_arch = "x86_64")]
    ("modify_ldt", libc::SYS_modify_ldt),
    ("uselib", libc::SYS_uselib),
    ("ustat", libc::SYS_ustat),
    ("sysfs", libc::SYS_sysfs),
    ("_sysctl", libc::SYS__sysctl),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("move_pages", libc::SYS_move_pages),
    ("mbind", libc::SYS_mbind),
    ("set_mempolicy", libc::SYS_set_mempolicy),
];

/// Namespace flags that clone() may not carry.
const NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME
];

/// Building a filter fails only on a malformed rule (a bug here, caught by the unit
/// tests); the helper then refuses to start rather than run without the filter.
type Built<T> = Result<T, seccompiler::BackendError>;

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Built<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
}

fn rule(conds: Vec<SeccompCondition>) -> Built<SeccompRule> {
    SeccompRule::new(conds)
}

fn arch() -> TargetArch {
    #[cfg(target_arch = "x86_64")]
    {
        TargetArch::x86_64
    }
    #[cfg(target_arch = "aarch64")]
    {
        TargetArch::aarch64
    }
}

/// A filter that allows everything but the calls `rules` match, which fail with `errno`.
fn refuse_with(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: libc::c_int) -> Built<BpfProgram> {
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch(),
    )?
    .try_into()
}

/// The EPERM deny-list filter, with argument checks for clone, socket, personality, ioctl.
pub(crate) fn deny_filter() -> Built<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in DENIED {
        rules.insert(*nr, vec![]);
    }
    // clone(flags, ...) with any namespace flag.
    rules.insert(
        libc::SYS_clone,
        NS_FLAGS
            .iter()
            .map(|f| rule(vec![cond(0, SeccompCmpOp::MaskedEq(*f), *f)?]))
            .collect::<Built<_>>()?,
    );
    // socket(domain, type, proto): only AF_UNIX, AF_INET, AF_INET6; never SOCK_RAW/SOCK_PACKET.
    let bad_domain = rule(vec![
        cond(0, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?,
        cond(0, SeccompCmpOp::Ne, libc::AF_INET as u64)?,
        cond(0, SeccompCmpOp::Ne, libc::AF_INET6 as u64)?,
    ])?;
    let raw = rule(vec![cond(
        1,
        SeccompCmpOp::MaskedEq(0xf),
        libc::SOCK_RAW as u64,
    )?])?;
    let packet = rule(vec![cond(
        1,
        SeccompCmpOp::MaskedEq(0xf),
        10, /* SOCK_PACKET (obsolete) */
    )?])?;
    rules.insert(libc::SYS_socket, vec![bad_domain, raw, packet]);
    rules.insert(
        libc::SYS_socketpair,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )?])?],
    );
    // personality(): only queries (0xffffffff) and PER_LINUX (0).
    rules.insert(
        libc::SYS_personality,
        vec![rule(vec![
            cond(0, SeccompCmpOp::Ne, 0)?,
            cond(0, SeccompCmpOp::Ne, 0xffff_ffff)?,
        ])?],
    );
    // ioctl(TIOCSTI / TIOCLINUX): terminal input injection.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![cond(1, SeccompCmpOp::Eq, libc::TIOCSTI)?])?,
            rule(vec![cond(1, SeccompCmpOp::Eq, libc::TIOCLINUX)?])?,
        ],
    );
    // While the script waits in llm.complete its whole execution is stopped; no process
    // of it may undo that: SIGCONT is refused in every call that sends a signal, and so
    // are the calls that send a signal with a siginfo of the caller's choosing (which
    // is how the server tells the execution's PID 1 to stop or continue it).
    let sigcont = libc::SIGCONT as u64;
    for (nr, sig_arg) in [
        (libc::SYS_kill, 1u8),
        (libc::SYS_tkill, 1),
        (libc::SYS_tgkill, 2),
        (libc::SYS_pidfd_send_signal, 1),
    ] {
        let mut r = vec![rule(vec![cond(sig_arg, SeccompCmpOp::Eq, sigcont)?])?];
        if nr == libc::SYS_pidfd_send_signal {
            r.push(rule(vec![SeccompCondition::new(
                2,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::Ne,
                0,
            )?])?);
        }
        rules.insert(nr, r);
    }
    rules.insert(libc::SYS_rt_sigqueueinfo, vec![]);
    rules.insert(libc::SYS_rt_tgsigqueueinfo, vec![]);
    refuse_with(rules, libc::EPERM)
}

/// clone3() fails with ENOSYS so glibc falls back to clone(), whose flags we can inspect.
pub(crate) fn clone3_filter() -> Built<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(libc::SYS_clone3, vec![]);
    refuse_with(rules, libc::ENOSYS)
}

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

/// Refuses every x32 syscall number (nr >= 0x40000000) on x86_64 with ENOSYS; the
/// seccompiler filters already kill foreign architectures.
pub(crate) fn x32_filter() -> BpfProgram {
    vec![
        // A = seccomp_data.nr
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A >= 0x40000000 goto deny else goto allow
        sock_filter {
            code: BPF_JGE_K,
            jt: 1,
            jf: 0,
            k: 0x4000_0000,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
    ]
}

/// Syscalls the container tier refuses on top of [`DENIED`]: with no namespaces of its
/// own, the execution shares the container's network, IPC objects and process table.
/// Listening and accepting (a listen() on an unbound socket would bind an ephemeral
/// port without Landlock's bind check), SysV IPC (objects outlive the execution and are
/// shared by uid), and leaving the execution's process group (the reaper ends the
/// execution by killing that group).
pub(crate) const CONTAINER_DENIED: &[(&str, i64)] = &[
    ("listen", libc::SYS_listen),
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
    ("setsid", libc::SYS_setsid),
    ("setpgid", libc::SYS_setpgid),
    ("shmget", libc::SYS_shmget),
    ("shmat", libc::SYS_shmat),
    ("shmctl", libc::SYS_shmctl),
    ("shmdt", libc::SYS_shmdt),
    ("msgget", libc::SYS_msgget),
    ("msgsnd", libc::SYS_msgsnd),
    ("msgrcv", libc::SYS_msgrcv),
    ("msgctl", libc::SYS_msgctl),
    ("semget", libc::SYS_semget),
    ("semop", libc::SYS_semop),
    ("semtimedop", libc::SYS_semtimedop),
    ("semctl", libc::SYS_semctl),
];

/// The container tier's filter: [`CONTAINER_DENIED`], and `socket()` only for TCP over
/// IPv4/IPv6 (no unix, UDP, ICMP, SCTP or MPTCP socket: Landlock's network rules cover
/// TCP alone, and there is no private network namespace). `socketpair()` stays (unix
/// pairs reach nothing), and so do the descriptors the script process inherits.
/// TCP Fast Open data (`MSG_FASTOPEN`), which connects inside sendto/sendmsg, is
/// refused too.
pub(crate) fn container_filter() -> Built<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in CONTAINER_DENIED {
        rules.insert(*nr, vec![]);
    }
    let not_inet = rule(vec![
        cond(0, SeccompCmpOp::Ne, libc::AF_INET as u64)?,
        cond(0, SeccompCmpOp::Ne, libc::AF_INET6 as u64)?,
    ])?;
    // The type argument carries SOCK_CLOEXEC / SOCK_NONBLOCK too: refuse every value
    // that is not SOCK_STREAM with some of those two flags.
    let stream = libc::SOCK_STREAM as u64;
    let (cloexec, nonblock) = (libc::SOCK_CLOEXEC as u64, libc::SOCK_NONBLOCK as u64);
    let not_stream = rule(
        [
            stream,
            stream | cloexec,
            stream | nonblock,
            stream | cloexec | nonblock,
        ]
        .into_iter()
        .map(|t| cond(1, SeccompCmpOp::Ne, t))
        .collect::<Built<_>>()?,
    )?;
    let not_tcp = rule(vec![
        cond(2, SeccompCmpOp::Ne, 0)?,
        cond(2, SeccompCmpOp::Ne, libc::IPPROTO_TCP as u64)?,
    ])?;
    rules.insert(libc::SYS_socket, vec![not_inet, not_stream, not_tcp]);
    let fastopen = libc::MSG_FASTOPEN as u64;
    for (nr, flags_arg) in [
        (libc::SYS_sendto, 3u8),
        (libc::SYS_sendmsg, 2),
        (libc::SYS_sendmmsg, 3),
    ] {
        rules.insert(
            nr,
            vec![rule(vec![cond(
                flags_arg,
                SeccompCmpOp::MaskedEq(fastopen),
                fastopen,
            )?])?],
        );
    }
    refuse_with(rules, libc::EPERM)
}

/// All filters of a tier, in installation order.
pub(crate) fn filters(tier: Tier) -> Built<Vec<BpfProgram>> {
    let mut out = vec![x32_filter(), clone3_filter()?, deny_filter()?];
    if tier == Tier::Container {
        out.push(container_filter()?);
    }
    Ok(out)
}

/// Installs the filters on the calling thread. Requires no_new_privs.
pub(crate) fn install(filters: &[BpfProgram]) -> std::io::Result<()> {
    for f in filters {
        seccompiler::apply_filter(f).map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_and_fit_the_kernel_limit() {
        for f in filters(Tier::Container).unwrap() {
            assert!(!f.is_empty());
            assert!(f.len() < 4096, "BPF program too long: {}", f.len());
        }
    }

    #[test]
    fn deny_list_names_the_dangerous_syscalls() {
        let names: Vec<&str> = DENIED.iter().map(|(n, _)| *n).collect();
        for must in [
            "ptrace",
            "process_vm_readv",
            "mount",
            "unshare",
            "setns",
            "bpf",
            "io_uring_setup",
            "keyctl",
            "userfaultfd",
            "perf_event_open",
            "open_by_handle_at",
            "kexec_load",
            "init_module",
        ] {
            assert!(names.contains(&must), "{must} missing");
        }
        assert!(
            !names.contains(&"clone3"),
            "clone3 must be ENOSYS, not EPERM"
        );
    }

    #[test]
    fn x32_filter_shape() {
        let f = x32_filter();
        assert_eq!(f.len(), 4);
        assert_eq!(f[1].k, 0x4000_0000);
        assert_eq!(f[3].k, SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
    }
}
