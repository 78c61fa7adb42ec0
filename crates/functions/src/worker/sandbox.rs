//! The worker's confinement, applied by [`apply`] before any tenant code runs:
//!
//! 1. `PR_SET_NO_NEW_PRIVS` (required by the two below without privileges);
//! 2. rlimits: no core dumps (`RLIMIT_CORE` 0: a dump would hold tenant data),
//!    no file growth (`RLIMIT_FSIZE` 0), at most [`MAX_FDS`] descriptors;
//! 3. Landlock, best effort: every filesystem access right (and TCP
//!    bind/connect, abstract Unix sockets and signals out of the sandbox,
//!    where the kernel knows them) is handled and no rule is added, so no
//!    path can be opened. Kernels without Landlock report `NotEnforced`;
//! 4. seccomp (applied to every thread of the process): an allowlist of what
//!    tokio's current-thread runtime, QuickJS, the allocator (the system's or
//!    mimalloc) and thread creation need, on descriptors the worker already
//!    holds. Everything else fails with `EPERM`: `open`/`openat`, `socket`,
//!    `connect`, `execve`, `fork`, `clone` without `CLONE_THREAD`, `ptrace`,
//!    `kill`, `mmap`/`mprotect` asking for executable memory (QuickJS has no
//!    JIT), `prctl` other than `PR_SET_NO_NEW_PRIVS`... `clone3` fails with
//!    `ENOSYS` so that the C library falls back to `clone`, whose flags a
//!    filter can check (a second filter, installed after the allowlist, which
//!    therefore allows `seccomp(2)`: more filters can only restrict more).
//!
//! The filter covers threads that exist when it is applied and every thread
//! created afterwards; Landlock covers the calling thread and its later
//! threads. So apply it from the process's first thread before it starts
//! others (as [`crate::worker::worker_main`] does).

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

/// Descriptor limit of a worker: its socket, stdio, epoll and an eventfd.
pub const MAX_FDS: u64 = 16;

/// What [`apply`] managed to enforce.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxReport {
    pub no_new_privs: bool,
    /// rlimits set (core, file size, descriptors).
    pub rlimits: bool,
    /// Landlock fully or partially enforced.
    pub landlock: bool,
    /// Landlock's own account: `FullyEnforced`, `PartiallyEnforced`,
    /// `NotEnforced` (kernel without Landlock) or the error.
    pub landlock_status: String,
    /// The seccomp allowlist is in force.
    pub seccomp: bool,
    /// Why something failed, if it did.
    pub errors: Vec<String>,
}

impl SandboxReport {
    /// Whether the mandatory parts (no_new_privs, rlimits, seccomp) are on.
    /// Landlock is best effort.
    pub fn confined(&self) -> bool {
        self.no_new_privs && self.rlimits && self.seccomp
    }
}

/// Applies the sandbox to the calling process (see the module doc).
pub fn apply() -> SandboxReport {
    let mut errors = Vec::new();
    let no_new_privs = match set_no_new_privs() {
        Ok(()) => true,
        Err(e) => {
            errors.push(format!("no_new_privs: {e}"));
            false
        }
    };
    let rlimits = match set_rlimits() {
        Ok(()) => true,
        Err(e) => {
            errors.push(format!("rlimits: {e}"));
            false
        }
    };
    let (landlock, landlock_status) = match apply_landlock() {
        Ok((on, status)) => (on, status),
        Err(e) => {
            errors.push(format!("landlock: {e}"));
            (false, format!("error: {e}"))
        }
    };
    let seccomp = match apply_seccomp() {
        Ok(()) => true,
        Err(e) => {
            errors.push(format!("seccomp: {e}"));
            false
        }
    };
    SandboxReport {
        no_new_privs,
        rlimits,
        landlock,
        landlock_status,
        seccomp,
        errors,
    }
}

/// Ignores SIGTERM, SIGINT and SIGHUP. A service manager or a terminal
/// signals the whole process group; the node then drains its in-flight
/// requests, and its workers must keep answering them. A worker ends when
/// the node closes its socket (or kills it).
pub fn ignore_stop_signals() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs the SIG_IGN disposition for a standard signal; no
        // handler code of ours runs, and no memory is passed.
        let previous = unsafe { libc::signal(sig, libc::SIG_IGN) };
        if previous == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Puts the calling thread in the `SCHED_IDLE` class: it runs only on a CPU
/// that would otherwise be idle. For work that may wait (the engine's idle
/// work); the sandbox allows exactly this change, on the calling thread.
pub(crate) fn lower_to_idle_priority() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` that outlives the call, which
    // only reads it; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes integer arguments
    // only and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Caps this process's data (heap and private mappings, `RLIMIT_DATA`) at
/// `bytes` and turns off core dumps: for a child that parses tenant input
/// with a parser whose memory can grow without end (`ledge
/// function-build`). An allocation past the cap aborts the process.
pub fn limit_memory(bytes: u64) -> io::Result<()> {
    set_limits(&[(libc::RLIMIT_DATA, bytes), (libc::RLIMIT_CORE, 0)])
}

fn set_rlimits() -> io::Result<()> {
    set_limits(&[
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_FSIZE, 0),
        (libc::RLIMIT_NOFILE, MAX_FDS),
    ])
}

/// Sets each resource's soft and hard limit to its value.
fn set_limits(limits: &[(libc::__rlimit_resource_t, libc::rlim_t)]) -> io::Result<()> {
    for &(resource, value) in limits {
        let limit = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: setrlimit reads one `rlimit` through the pointer, which
        // points to a live local for the duration of the call.
        let rc = unsafe { libc::setrlimit(resource, &limit) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn apply_landlock() -> Result<(bool, String), landlock::RulesetError> {
    use landlock::{Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus, Scope, ABI};
    let abi = ABI::V6;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()?
        .restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => (true, "FullyEnforced".to_string()),
        RulesetStatus::PartiallyEnforced => (true, "PartiallyEnforced".to_string()),
        RulesetStatus::NotEnforced => (false, "NotEnforced".to_string()),
    })
}

/// The syscalls allowed unconditionally.
fn allowed() -> Vec<libc::c_long> {
    let mut v = vec![
        // I/O on descriptors the worker holds.
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_recvmsg,
        libc::SYS_sendmsg,
        libc::SYS_close,
        libc::SYS_fcntl,
        libc::SYS_lseek,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        // Memory.
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_brk,
        // Threads, waiting, time.
        libc::SYS_futex,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_epoll_create1,
        libc::SYS_eventfd2,
        libc::SYS_ppoll,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_getrandom,
        libc::SYS_gettid,
        libc::SYS_getpid,
        // Signals (own handlers and masks) and the end.
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigaction,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_epoll_wait, libc::SYS_poll, libc::SYS_arch_prctl]);
    v
}

fn apply_seccomp() -> Result<(), String> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let cond = |arg: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
    };
    let rule = |conds: Vec<SeccompCondition>| SeccompRule::new(conds).map_err(|e| e.to_string());

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in allowed() {
        rules.insert(nr, Vec::new());
    }
    // Threads, never processes.
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::MaskedEq(thread),
            thread,
        )?])?],
    );
    // Memory, never executable.
    let exec = libc::PROT_EXEC as u64;
    for nr in [libc::SYS_mmap, libc::SYS_mprotect] {
        rules.insert(
            nr,
            vec![rule(vec![cond(2, SeccompCmpOp::MaskedEq(exec), 0)?])?],
        );
    }
    // A thread may lower itself to SCHED_IDLE, and change nothing else.
    rules.insert(
        libc::SYS_sched_setscheduler,
        vec![rule(vec![
            cond(0, SeccompCmpOp::Eq, 0)?,
            cond(1, SeccompCmpOp::Eq, libc::SCHED_IDLE as u64)?,
        ])?],
    );
    // Installing the second filter below (only ever tightens).
    rules.insert(libc::SYS_seccomp, Vec::new());
    rules.insert(
        libc::SYS_prctl,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Eq,
            libc::PR_SET_NO_NEW_PRIVS as u64,
        )?])?],
    );
    // Signals to this process only (abort() raises SIGABRT with tgkill).
    let pid = u64::from(std::process::id());
    rules.insert(
        libc::SYS_tgkill,
        vec![rule(vec![cond(0, SeccompCmpOp::Eq, pid)?])?],
    );

    let allowlist = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| e.to_string())?;
    // Installed second, so its errno wins for clone3 (filters run newest first).
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    let no_clone3 = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;

    let allowlist: seccompiler::BpfProgram = allowlist.try_into().map_err(|e| format!("{e}"))?;
    let no_clone3: seccompiler::BpfProgram = no_clone3.try_into().map_err(|e| format!("{e}"))?;
    seccompiler::apply_filter_all_threads(&allowlist).map_err(|e| e.to_string())?;
    seccompiler::apply_filter_all_threads(&no_clone3).map_err(|e| e.to_string())?;
    Ok(())
}
